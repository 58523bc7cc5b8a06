"""Secrets read from files: ``X_FILE`` beside each secret variable ``X``, and
``*_file`` settings in TOML. A file that cannot serve is one line naming the
setting and the path, never what the file holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.config.settings import Settings
from worker.config.sources import MAX_SECRET_FILE_BYTES, SECRET_FILE_ENV, load_settings
from worker.errors import ConfigError

API_KEY = "sk-live-4d2f9a0c77e1b3aa"
OPS_KEY = "ops-key-7c1e5a9b3d2f"
PRODUCER_KEY = "producer-key-5b7e91c2d4"
OPERATOR_KEY = "operator-key-0a9b8c7d6e"
REDIS_URL = "redis://:redis-pass-51f0e2@127.0.0.1:1/0"


def _secret(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return str(path)


def test_every_secret_variable_may_be_read_from_a_file(tmp_path: Path) -> None:
    environ = {
        # As echo and editors write them: a line break at the end.
        "OZONETEL_API_KEY_FILE": _secret(tmp_path, "api-key", f"{API_KEY}\n"),
        "OZP_OPS_KEY_FILE": _secret(tmp_path, "ops-key", f"{OPS_KEY}\r\n"),
        # Lists: one entry a line, or by commas, or both.
        "OZP_PRODUCER_KEYS_FILE": _secret(
            tmp_path, "producers", f"crm:{PRODUCER_KEY}\n\nbilling:{PRODUCER_KEY}x,\n"
        ),
        "OZP_OPERATOR_KEYS_FILE": _secret(
            tmp_path, "operators", f"alice:{OPERATOR_KEY}\nrita:{OPERATOR_KEY}r:read\n"
        ),
        "REDIS_URL_FILE": _secret(tmp_path, "redis-url", REDIS_URL),
    }
    assert set(environ) == set(SECRET_FILE_ENV.values())
    loaded = load_settings(environ)
    assert loaded.account().api_key.reveal() == API_KEY
    assert loaded.ops_key.reveal() == OPS_KEY
    assert {n: k.reveal() for n, k in loaded.producer_keys.items()} == {
        "crm": PRODUCER_KEY,
        "billing": f"{PRODUCER_KEY}x",
    }
    assert {n: k.reveal() for n, k in loaded.operator_keys.items()} == {
        "alice": OPERATOR_KEY,
        "rita": f"{OPERATOR_KEY}r",
    }
    assert loaded.operator_roles == {"alice": "operate", "rita": "read"}
    assert loaded.redis_url == REDIS_URL
    for secret in (API_KEY, OPS_KEY, PRODUCER_KEY, OPERATOR_KEY, "redis-pass-51f0e2"):
        assert secret not in repr(loaded)


def test_an_empty_file_variable_counts_as_unset() -> None:
    loaded = load_settings({"OZONETEL_API_KEY": API_KEY, "OZONETEL_API_KEY_FILE": ""})
    assert loaded.account().api_key.reveal() == API_KEY


@pytest.mark.parametrize(("var", "file_var"), sorted(SECRET_FILE_ENV.items()))
def test_a_variable_and_its_file_are_not_both_taken(
    tmp_path: Path, var: str, file_var: str
) -> None:
    environ = {var: "one-value-0123456789", file_var: _secret(tmp_path, "s", "other-0123456789")}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert f"{var} and {file_var} are both set" in message and "\n" not in message
    assert "0123456789" not in message


BAD_FILES: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "no such file"),
    "empty": (b"", "the file is empty"),
    "a line break only": (b"\n", "the file is empty"),
    "blanks only": (b"  \t \r\n", "the file is empty"),
    "a byte-order mark only": (b"\xef\xbb\xbf\n", "the file is empty"),
    "too large": (API_KEY.encode() * (MAX_SECRET_FILE_BYTES // len(API_KEY) + 1), "64 KiB"),
    "not UTF-8": (API_KEY.encode() + b"\xff\xfe", "not UTF-8 text"),
    "two lines": (f"{API_KEY}\n{API_KEY}\n".encode(), "second line"),
    "a NUL": (f"{API_KEY}\x00".encode(), "not printable"),
    "an escape": (f"{API_KEY}\x1b[2J".encode(), "not printable"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_file_that_cannot_serve_is_one_line_naming_the_variable_and_path(
    tmp_path: Path, case: str
) -> None:
    content, reason = BAD_FILES[case]
    path = tmp_path / "api-key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings({"OZONETEL_API_KEY_FILE": str(path)})
    message = str(caught.value)
    assert message.startswith(f"OZONETEL_API_KEY_FILE: {str(path)!r}: "), message
    assert reason in message and "\n" not in message
    assert API_KEY not in message


def test_a_directory_an_unreadable_file_and_a_bad_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OZP_OPS_KEY_FILE: .*: cannot read it: Is a directory"):
        load_settings({"OZP_OPS_KEY_FILE": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"REDIS_URL_FILE: .*cannot read it: bad path"):
        load_settings({"REDIS_URL_FILE": "a\x00b"})
    if os.geteuid() == 0:
        return  # root reads any file: there is no unreadable one to make
    locked = Path(_secret(tmp_path, "locked", API_KEY))
    locked.chmod(0)
    with pytest.raises(ConfigError, match="cannot read it: Permission denied") as caught:
        load_settings({"OZONETEL_API_KEY_FILE": str(locked)})
    assert API_KEY not in str(caught.value)


def test_a_file_at_the_size_limit_is_read_and_a_long_path_keeps_its_end(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:1/0#"
    at_limit = _secret(tmp_path, "url", url + "x" * (MAX_SECRET_FILE_BYTES - len(url)))
    assert len(load_settings({"REDIS_URL_FILE": at_limit}).redis_url or "") == MAX_SECRET_FILE_BYTES
    deep = tmp_path.joinpath(*["nested-directory"] * 8)
    deep.mkdir(parents=True)
    with pytest.raises(ConfigError, match="acct-bangalore-07'") as caught:
        load_settings({"OZONETEL_API_KEY_FILE": str(deep / "acct-bangalore-07")})
    assert len(str(caught.value)) < 200


def test_toml_reads_keys_from_files_beside_or_instead_of_the_keys(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acct-a").write_text(f"{API_KEY}\n")
    (secrets / "crm").write_text(f"{PRODUCER_KEY}\n")
    (secrets / "alice").write_text(f"{OPERATOR_KEY}\n")
    (secrets / "ops").write_text(f"{OPS_KEY}\n")
    (secrets / "redis").write_text(f"{REDIS_URL}\n")
    config = tmp_path / "ozp.toml"
    # Relative paths are the TOML file's neighbours, wherever the process runs.
    config.write_text(
        'redis_url_file = "secrets/redis"\n'
        f'ops_key_file = "{secrets / "ops"}"\n'
        '[producers.crm]\nkey_file = "secrets/crm"\naccounts = ["a"]\n'
        '[operators.alice]\nkey_file = "secrets/alice"\nrole = "read"\n'
        '[accounts.a]\nusername = "ua"\napi_key_file = "secrets/acct-a"\n'
        '[accounts.b]\nusername = "ub"\napi_key = "inline-key"\n'
    )
    loaded = load_settings({"OZP_CONFIG": str(config)})
    assert loaded.account("a").api_key.reveal() == API_KEY
    assert loaded.account("b").api_key.reveal() == "inline-key"
    assert loaded.producer_keys["crm"].reveal() == PRODUCER_KEY
    assert loaded.producer_may_use("crm", "a") and not loaded.producer_may_use("crm", "b")
    assert loaded.operator_keys["alice"].reveal() == OPERATOR_KEY
    assert loaded.operator_roles == {"alice": "read"}
    assert loaded.ops_key.reveal() == OPS_KEY and loaded.redis_url == REDIS_URL


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[accounts.a]\napi_key = "k"\napi_key_file = "f"',
            "account 'a': api_key and api_key_file are both set",
        ),
        ('[producers.crm]\nkey = "k"\nkey_file = "f"', "producer 'crm': key and key_file are both"),
        ('[operators.al]\nkey = "k"\nkey_file = "f"', "operator 'al': key and key_file are both"),
        ('redis_url = "redis://x"\nredis_url_file = "f"', "redis_url and redis_url_file are both"),
        ('ops_key = "k"\nops_key_file = "f"', "ops_key and ops_key_file are both"),
        ("[accounts.a]\napi_key_file = 3", "accounts.a.api_key_file: expected the path of a file"),
        ('[accounts.a]\napi_key_file = ""', "accounts.a.api_key_file: expected the path of a file"),
        ('[accounts.a]\napi_key_file = "nope"', "accounts.a.api_key_file: '.*nope': no such file"),
        ('[producers.crm]\nkey_file = "nope"', "producers.crm.key_file: '.*nope': no such file"),
        ('[operators.al]\nkey_file = "nope"', "operators.al.key_file: '.*nope': no such file"),
        ('ops_key_file = "nope"', "ops_key_file: '.*nope': no such file"),
    ],
)
def test_toml_key_files_fail_in_one_line(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "ozp.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings({"OZP_CONFIG": str(config)})
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secret-files")


# The file's text, when at least this long, must not appear in a message;
# a shorter one may be part of the message's own words ("x" is in "expected").
SHOWN_IF_SHORTER = 12


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    file_var=st.sampled_from(sorted(SECRET_FILE_ENV.values())),
    content=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda text: text.encode("utf-8")),
        st.text(alphabet=":,@+*\n abcdefghijklmnop0123456789", max_size=200).map(str.encode),
        st.sampled_from([b"\xef\xbb\xbf", b"\n", b"\r\n"]).flatmap(
            lambda edge: st.text(max_size=80).map(lambda text: edge + text.encode() + edge)
        ),
        st.integers(MAX_SECRET_FILE_BYTES - 2, MAX_SECRET_FILE_BYTES + 2).map(lambda n: b"k" * n),
    ),
)
def test_any_file_gives_settings_or_one_config_error_without_its_content(
    secret_dir: Path, file_var: str, content: bytes
) -> None:
    path = secret_dir / "secret"
    path.write_bytes(content)
    try:
        loaded = load_settings({file_var: str(path)})
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 400
        text = content.decode("utf-8", errors="replace").strip()
        if len(text) >= SHOWN_IF_SHORTER:
            assert text not in message
        return
    assert isinstance(loaded, Settings)
    loaded.validate()
