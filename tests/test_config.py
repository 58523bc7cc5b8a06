"""Settings from the environment and TOML: defaults, overrides, loud errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.config import DEFAULT_BASE_URL, Secret, load_settings
from worker.errors import ConfigError


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
        'concurrency = 8\n[producers]\ncrm = "0123456789abcdef0123"\n'
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


def test_secrets_do_not_print_themselves() -> None:
    settings = load_settings({"OZONETEL_API_KEY": "very-secret-key"})
    assert "very-secret-key" not in repr(settings)
    assert settings.account().api_key.reveal() == "very-secret-key"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OZP_RATE_LIMIT": "many"}, "OZP_RATE_LIMIT: expected int"),
        ({"OZP_RATE_LIMIT": "0"}, "OZP_RATE_LIMIT must be positive"),
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
