"""Settings from the environment and TOML: defaults, overrides, loud errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.config.settings import (
    ACCOUNT_ENV,
    DEFAULT_BASE_URL,
    GLOBAL_ENV,
    Secret,
    Settings,
)
from worker.config.sources import load_settings
from worker.errors import ConfigError

API_KEY = "sk-live-4d2f9a0c77e1b3aa"
PRODUCER_KEY = "producer-key-5b7e91c2d4"


def test_defaults_are_the_vendors_numbers() -> None:
    settings = load_settings({})
    account = settings.account()
    assert (account.rate_limit, account.rate_window_s) == (100, 60.0)
    assert (account.token_ttl_s, account.token_budget, account.token_budget_window_s) == (
        3600.0, 10, 3600.0,
    )  # fmt: skip
    assert account.base_url == DEFAULT_BASE_URL and account.auth_mode == "token"
    assert settings.redis_url is None and settings.key_prefix == "ozp"
    assert not account.has_credentials


def test_the_environment_describes_one_account_and_overrides_toml(tmp_path: Path) -> None:
    config = tmp_path / "ozp.toml"
    config.write_text(
        'concurrency = 8\n[producers.crm]\nkey = "0123456789abcdef0123"\naccounts = ["eu"]\n'
        '[accounts.default]\nusername = "file-user"\nrate_limit = 50\n'
        '[accounts.eu]\nbase_url = "https://api.ccaas.ozonetel.com"\napi_key = "eu-key"\n'
        'username = "eu-user"\nauth_mode = "apikey"\nrate_cap_per_day = 5000\n'
    )
    settings = load_settings(
        {
            "OZP_CONFIG": str(config),
            "OZONETEL_API_KEY": "env-key",
            "OZP_RATE_LIMIT": "90",
            "OZP_CONCURRENCY": "3",
            "REDIS_URL": "redis://127.0.0.1:1/0",
        }
    )
    default = settings.account("default")
    assert default.username == "file-user" and default.api_key == Secret("env-key")
    assert default.rate_limit == 90
    assert settings.concurrency == 3 and settings.redis_url == "redis://127.0.0.1:1/0"
    eu = settings.account("eu")
    assert eu.auth_mode == "apikey" and [c.limit for c in eu.rate_caps] == [100, 5000]
    assert settings.producer_keys["crm"].reveal() == "0123456789abcdef0123"
    assert settings.producer_may_use("crm", "eu") and not settings.producer_may_use(
        "crm", "default"
    )


def test_secrets_do_not_print_themselves() -> None:
    settings = load_settings({"OZONETEL_API_KEY": "very-secret-key"})
    assert "very-secret-key" not in repr(settings)
    assert settings.account().api_key.reveal() == "very-secret-key"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OZP_RATE_LIMIT": "many"}, "OZP_RATE_LIMIT: expected a whole number"),
        ({"OZP_RATE_LIMIT": "0"}, "OZP_RATE_LIMIT must be a whole number above 0"),
        ({"OZP_RATE_LIMIT": "99.9"}, "OZP_RATE_LIMIT: expected a whole number"),
        ({"OZP_CONCURRENCY": "2.9"}, "OZP_CONCURRENCY: expected a whole number"),
        ({"OZP_CONCURRENCY": "1_000"}, "OZP_CONCURRENCY: expected a whole number"),
        ({"OZP_CONCURRENCY": "9" * 5000}, "OZP_CONCURRENCY: expected a whole number"),
        ({"OZP_CONCURRENCY": "100000000"}, "OZP_CONCURRENCY must be a whole number"),
        ({"OZP_RATE_WINDOW_S": "inf"}, "OZP_RATE_WINDOW_S: expected a finite number"),
        ({"OZP_RATE_WINDOW_S": "nan"}, "OZP_RATE_WINDOW_S: expected a finite number"),
        ({"OZP_RATE_WINDOW_S": "-60"}, "OZP_RATE_WINDOW_S must be a number above 0"),
        ({"OZP_RATE_WINDOW_S": "1e300"}, "OZP_RATE_WINDOW_S must be a number above 0"),
        ({"OZP_REQUEST_TIMEOUT_S": "1e400"}, "OZP_REQUEST_TIMEOUT_S: expected a finite"),
        ({"OZP_ALLOW_INSECURE_VENDOR_URL": "maybe"}, "OZP_ALLOW_INSECURE_VENDOR_URL"),
        ({"OZONETEL_BASE_URL": "http://"}, "OZONETEL_BASE_URL must be an http"),
        ({"OZONETEL_BASE_URL": "http://[::1"}, "OZONETEL_BASE_URL must be an http"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://"),
        ({"OZP_OPS_KEY": "short"}, "OZP_OPS_KEY must be at least 16"),
        ({"OZP_CONFIG": "/"}, "OZP_CONFIG: cannot read '/'"),
        ({"OZP_CONFIG": "a\x00b"}, "OZP_CONFIG: cannot read"),
        ({"OZP_RATE_MARGIN_S": "61"}, "OZP_RATE_MARGIN_S"),
        ({"OZONETEL_AUTH_MODE": "oauth"}, "OZONETEL_AUTH_MODE"),
        ({"OZONETEL_BASE_URL": "ftp://x"}, "OZONETEL_BASE_URL"),
        ({"OZP_VISIBILITY_TIMEOUT_S": "10"}, "OZP_VISIBILITY_TIMEOUT_S"),
        ({"OZP_KEY_PREFIX": "a{b}"}, "OZP_KEY_PREFIX"),
        ({"OZP_CONFIG": "/nonexistent/ozp.toml"}, "no such file"),
        ({"OZP_PRODUCER_KEYS": "crm"}, "name:key"),
        ({"OZP_PRODUCER_KEYS": "crm:short"}, "at least 16"),
    ],
)
def test_bad_settings_fail_loudly_in_one_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(environ)
    assert "\n" not in str(caught.value)


def test_unknown_account_and_unknown_toml_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "ozp.toml"
    config.write_text("[accounts.x]\nrate_limt = 5\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings({"OZP_CONFIG": str(config)})
    with pytest.raises(ConfigError, match="unknown account 'nope'"):
        load_settings({}).account("nope")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("concurrency = 2.9", "concurrency: expected a whole number, got 2.9"),
        ("max_attempts = true", "max_attempts: expected a whole number, got True"),
        ("retry_share = false", "retry_share: expected a finite number, got False"),
        ("request_timeout_s = inf", "request_timeout_s: expected a finite number"),
        ("request_timeout_s = nan", "request_timeout_s: expected a finite number"),
        ("stream_maxlen = -5", "OZP_STREAM_MAXLEN must be a whole number above 0"),
        ("key_prefix = 5", "key_prefix: expected text"),
        ("allow_insecure_vendor_url = 1", "allow_insecure_vendor_url: expected true or false"),
        ("[accounts.x]\nrate_limit = 99.9", "accounts.x.rate_limit: expected a whole number"),
        ("[accounts.x]\nrate_window_s = true", "accounts.x.rate_window_s: expected a finite"),
        ("accounts = 3", "[accounts] must be a table"),
        ("[accounts]\nx = 3", "[accounts.x] must be a table"),
        ("[producers]\ncrm = 12", "producer 'crm': the key must be text"),
    ],
)
def test_toml_types_are_not_coerced(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "ozp.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", "\\[")) as caught:
        load_settings({"OZP_CONFIG": str(config)})
    assert "\n" not in str(caught.value)


def test_settings_built_in_code_are_held_to_the_same_types() -> None:
    base = load_settings({})
    for changes in ({"concurrency": 2.9}, {"max_attempts": True}, {"retry_share": float("nan")},
                    {"http_max_items": 0}, {"producer_items_per_s": float("inf")}):  # fmt: skip
        with pytest.raises(ConfigError, match="must be"):
            base.with_overrides(**changes)


def test_an_http_vendor_url_off_loopback_needs_an_explicit_opt_in() -> None:
    for url in ("http://127.0.0.1:8089", "http://127.3.4.5", "http://[::1]:9", "http://localhost"):
        assert load_settings({"OZONETEL_BASE_URL": url}).account().base_url == url
    insecure = {"OZONETEL_BASE_URL": "http://simulator:8089", "OZONETEL_API_KEY": API_KEY}
    with pytest.raises(ConfigError, match="clear text") as caught:
        load_settings(insecure)
    assert API_KEY not in str(caught.value)
    for url in ("http://10.0.0.5", "http://127.0.0.1.example.com", "http://0.0.0.0"):
        with pytest.raises(ConfigError, match="OZP_ALLOW_INSECURE_VENDOR_URL"):
            load_settings({"OZONETEL_BASE_URL": url})
    allowed = load_settings({**insecure, "OZP_ALLOW_INSECURE_VENDOR_URL": "1"})
    assert allowed.allow_insecure_vendor_url is True
    assert load_settings({"OZONETEL_BASE_URL": "https://api.example.com"}).account()


def test_producer_keys_name_their_accounts_and_an_unlisted_key_needs_a_single_account(
    tmp_path: Path,
) -> None:
    one = load_settings({"OZP_PRODUCER_KEYS": f"crm:{PRODUCER_KEY}:with:colons"})
    assert one.producer_keys["crm"].reveal() == f"{PRODUCER_KEY}:with:colons"
    assert one.producer_may_use("crm", "default") and not one.producer_may_use("crm", "x")
    config = tmp_path / "ozp.toml"
    config.write_text('[accounts.in]\nusername = "u"\n[accounts.eu]\nusername = "v"\n')
    two = {"OZP_CONFIG": str(config)}
    with pytest.raises(ConfigError, match="several accounts are configured"):
        load_settings({**two, "OZP_PRODUCER_KEYS": f"crm:{PRODUCER_KEY}"})
    listed = load_settings(
        {**two, "OZP_PRODUCER_KEYS": f"crm@in:{PRODUCER_KEY}, ops@*:{PRODUCER_KEY}x"}
    )
    assert listed.producer_may_use("crm", "in") and not listed.producer_may_use("crm", "eu")
    assert listed.producer_may_use("ops", "eu") and listed.producer_may_use("ops", "in")
    assert not listed.producer_may_use("ops", "nowhere")
    with pytest.raises(ConfigError, match="unknown account 'us'"):
        load_settings({**two, "OZP_PRODUCER_KEYS": f"crm@in+us:{PRODUCER_KEY}"})
    with pytest.raises(ConfigError, match="list of accounts is empty"):
        load_settings({**two, "OZP_PRODUCER_KEYS": f"crm@:{PRODUCER_KEY}"})


ENV_SETTINGS = sorted(
    {
        *GLOBAL_ENV,
        *ACCOUNT_ENV,
        "OZP_CONFIG",
        "OZP_PRODUCER_KEYS",
        "OZP_OPERATOR_KEYS",
        "OZP_ACCOUNT",
        "REDIS_URL",
    }
)
OPERATOR_KEY = "operator-key-0123456789"


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    environ=st.dictionaries(
        st.sampled_from(ENV_SETTINGS),
        st.one_of(
            st.text(max_size=30), st.from_regex(r"-?[0-9.e+]{1,8}|inf|nan|true|0", fullmatch=True)
        ),
    ),
)
def test_any_environment_gives_settings_or_one_config_error_without_a_secret(
    environ: dict[str, str],
) -> None:
    environ = {**environ, "OZONETEL_API_KEY": API_KEY}
    if "OZP_PRODUCER_KEYS" in environ:
        environ["OZP_PRODUCER_KEYS"] += f",crm:{PRODUCER_KEY}"
    if "OZP_OPERATOR_KEYS" in environ:
        environ["OZP_OPERATOR_KEYS"] += f",ops:{OPERATOR_KEY}"
    try:
        loaded = load_settings(environ)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400
        assert API_KEY not in message and PRODUCER_KEY not in message
        assert OPERATOR_KEY not in message
        return
    assert isinstance(loaded, Settings)
    loaded.validate()
    assert API_KEY not in repr(loaded) and PRODUCER_KEY not in repr(loaded)
    assert OPERATOR_KEY not in repr(loaded)


def test_operator_keys_name_their_role_and_are_held_to_the_key_rules(tmp_path: Path) -> None:
    env = {"OZP_OPERATOR_KEYS": "alice:alice-key-0123456789, rita:rita-key-0123456789:read"}
    settings_ = load_settings(env)
    assert {n: k.reveal() for n, k in settings_.operator_keys.items()} == {
        "alice": "alice-key-0123456789",
        "rita": "rita-key-0123456789",
    }
    assert settings_.operator_roles == {"alice": "operate", "rita": "read"}
    # A key that holds a colon keeps it when no role follows.
    colon = load_settings({"OZP_OPERATOR_KEYS": "bo:abc:defghijklmnopqrst"})
    assert colon.operator_keys["bo"].reveal() == "abc:defghijklmnopqrst"
    toml = tmp_path / "c.toml"
    toml.write_text('[operators.sam]\nkey = "sam-key-0123456789ab"\nrole = "read"\n')
    assert load_settings({"OZP_CONFIG": str(toml)}).operator_roles == {"sam": "read"}
    refused = {
        "bo:short": "at least 16 characters",
        "b o:long-enough-key-0000": "names are 1-64",
        "alice:same-key-0123456789,bob:same-key-0123456789": "share a key",
        "alice": "expected name:key",
    }
    for value, message in refused.items():
        with pytest.raises(ConfigError, match=message) as raised:
            load_settings({"OZP_OPERATOR_KEYS": value})
        assert "0123456789" not in str(raised.value)
    bad_role = tmp_path / "r.toml"
    bad_role.write_text('[operators.sam]\nkey = "sam-key-0123456789ab"\nrole = "admin"\n')
    with pytest.raises(ConfigError, match="role must be one of operate, read"):
        load_settings({"OZP_CONFIG": str(bad_role)})
    with pytest.raises(ConfigError, match="must differ from every other key"):
        load_settings(
            {"OZP_OPERATOR_KEYS": "a:shared-key-01234567", "OZP_OPS_KEY": "shared-key-01234567"}
        )


TWO_ACCOUNTS = (
    '[accounts.in]\nusername = "u-in"\napi_key = "key-in-0123456789"\nrate_limit = 80\n'
    '[accounts.eu]\nusername = "u-eu"\napi_key = "key-eu-0123456789"\n'
)


def _two_accounts(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "ozp.toml"
    config.write_text(TWO_ACCOUNTS)
    return {"OZP_CONFIG": str(config)}


@pytest.mark.parametrize(
    "environ",
    [
        {"OZP_RATE_LIMIT": "90"},
        {"OZP_RATE_CAP_PER_DAY": "5000", "OZP_TOKEN_BUDGET": "5"},
        {"OZONETEL_API_KEY": API_KEY},
        {"OZONETEL_BASE_URL": "https://api.ccaas.ozonetel.com"},
    ],
)
def test_account_variables_beside_toml_accounts_need_ozp_account(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**_two_accounts(tmp_path), **environ})
    message = str(caught.value)
    assert "set OZP_ACCOUNT to the account it is for" in message and "\n" not in message
    assert all(var in message for var in environ) and "'eu', 'in'" in message
    assert API_KEY not in message


def test_account_variables_adjust_the_toml_account_ozp_account_names(tmp_path: Path) -> None:
    loaded = load_settings({**_two_accounts(tmp_path), "OZP_ACCOUNT": "eu", "OZP_RATE_LIMIT": "90"})
    assert sorted(loaded.accounts) == ["eu", "in"]
    assert loaded.account("eu").rate_limit == 90 and loaded.account("in").rate_limit == 80
    assert loaded.account("eu").api_key.reveal() == "key-eu-0123456789"
    # OZP_ACCOUNT alone adjusts nothing, wherever it points (a deployment's
    # config map may always set it).
    for name in ("in", "default", "elsewhere"):
        alone = load_settings({**_two_accounts(tmp_path), "OZP_ACCOUNT": name})
        assert {n: a.rate_limit for n, a in alone.accounts.items()} == {"in": 80, "eu": 100}


def test_account_variables_never_add_an_account_the_toml_does_not_define(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "api-key"
    secret.write_text(API_KEY)
    environ = {
        **_two_accounts(tmp_path),
        "OZP_ACCOUNT": "us",
        "OZONETEL_API_KEY_FILE": str(secret),
        "OZONETEL_USERNAME": "u-us",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert message.startswith("OZP_ACCOUNT: 'us' is not an account of OZP_CONFIG")
    assert "OZONETEL_API_KEY_FILE" in message and "\n" not in message
    assert API_KEY not in message


def test_the_message_stays_one_short_line_for_hundreds_of_accounts(tmp_path: Path) -> None:
    config = tmp_path / "ozp.toml"
    config.write_text("".join(f'[accounts.acct-{i:03}]\nusername = "u{i}"\n' for i in range(300)))
    environ = {"OZP_CONFIG": str(config), **{var: "1" for var in ACCOUNT_ENV}}
    with pytest.raises(ConfigError, match="and 297 more") as caught:
        load_settings(environ)
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)


def test_without_toml_accounts_the_environment_still_describes_its_one_account() -> None:
    loaded = load_settings({"OZP_ACCOUNT": "in", "OZP_RATE_LIMIT": "90"})
    assert list(loaded.accounts) == ["in"] and loaded.account().rate_limit == 90


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    # The file tmp_path holds is the same for every example.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    account=st.sampled_from([None, "", "in", "eu", "default", "us"]),
    variables=st.dictionaries(
        st.sampled_from(sorted(ACCOUNT_ENV)), st.sampled_from(["", "7", "90", "0.5"])
    ),
)
def test_toml_accounts_are_the_accounts_whatever_the_environment_says(
    tmp_path: Path, account: str | None, variables: dict[str, str]
) -> None:
    environ = {**_two_accounts(tmp_path), **variables}
    if account is not None:
        environ["OZP_ACCOUNT"] = account
    try:
        loaded = load_settings(environ)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert sorted(loaded.accounts) == ["eu", "in"]
