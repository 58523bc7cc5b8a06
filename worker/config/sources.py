"""Reading the settings from the environment and an optional TOML file.

A TOML file named by ``OZP_CONFIG`` may hold the global settings at its top
level and any number of accounts under ``[accounts.NAME]``; environment
variables override the file, and the account-level ones (``OZONETEL_*``,
``OZP_RATE_*``, ``OZP_TOKEN_*``) describe the account named by ``OZP_ACCOUNT``
(default ``default``): the only account when the file defines none, else one
of the file's, which they adjust (they never add one). Every value is
parsed strictly (:func:`_parse`) and the result validated by
:meth:`worker.config.settings.Settings.validate`.

Every secret may instead be read from a file: ``X_FILE`` in the environment
for each variable ``X`` of :data:`SECRET_FILE_ENV`, ``api_key_file`` and
``key_file`` (and ``redis_url_file``, ``ops_key_file``) in the TOML file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from worker.config.settings import (
    ACCOUNT_ENV,
    ACCOUNT_FIELDS,
    ALL_ACCOUNTS,
    DEFAULT_ACCOUNT,
    GLOBAL_ENV,
    GLOBAL_FIELDS,
    OPERATOR_ROLES,
    AccountSettings,
    Parser,
    Secret,
    Settings,
    shown_value,
)
from worker.errors import ConfigError

# Plain decimal digits only: int() would also take "1_000" and Unicode digits,
# and a few thousand digits would make it raise something else than ValueError.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,18}")
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}

# Each secret environment variable, and the one naming a file to read it from
# instead (the convention of Docker and Kubernetes secrets): hundreds of
# accounts' keys need not sit in one file or in every process's environment.
SECRET_FILE_ENV = {
    "OZONETEL_API_KEY": "OZONETEL_API_KEY_FILE",
    "OZP_OPS_KEY": "OZP_OPS_KEY_FILE",
    "OZP_PRODUCER_KEYS": "OZP_PRODUCER_KEYS_FILE",
    "OZP_OPERATOR_KEYS": "OZP_OPERATOR_KEYS_FILE",
    "REDIS_URL": "REDIS_URL_FILE",
}
# Lists of name:key entries, whose files may hold one entry per line.
_LIST_SECRETS = ("OZP_PRODUCER_KEYS", "OZP_OPERATOR_KEYS")
# The same for the secrets at the TOML file's top level.
_TOML_SECRET_FILES = {"redis_url_file": "redis_url", "ops_key_file": "ops_key"}
# A key or a URL is a few hundred bytes, a list of 300 producer keys some
# 20 KiB: a larger file is the wrong one, and is not read into memory.
MAX_SECRET_FILE_BYTES = 64 * 1024


def _parse(name: str, parser: Parser, raw: Any) -> Any:
    """``raw`` (text from the environment, or a TOML value) as ``parser``'s type.

    TOML's own types are taken as they are, but never widened or narrowed: a
    boolean is not a number, and 2.9 is not a whole number.
    """
    if parser is Secret:
        return raw if isinstance(raw, Secret) else Secret(str(raw))
    if parser is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _BOOLEANS:
            return _BOOLEANS[raw.strip().lower()]
        raise ConfigError(f"{name}: expected true or false (1 or 0), got {shown_value(raw)}")
    if parser is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and _WHOLE_NUMBER.fullmatch(raw.strip()):
            return int(raw.strip())
        raise ConfigError(f"{name}: expected a whole number, got {shown_value(raw)}")
    if parser is float:
        value: float | None = None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            raise ConfigError(f"{name}: expected a finite number, got {shown_value(raw)}")
        return value
    if not isinstance(raw, str):
        raise ConfigError(f"{name}: expected text, got {shown_value(raw)}")
    return raw


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"OZP_CONFIG: no such file: {shown_value(path)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"OZP_CONFIG: {shown_value(path)} is not valid TOML: {exc}") from None
    except (OSError, ValueError) as exc:  # a directory, no permission, a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad path"
        raise ConfigError(f"OZP_CONFIG: cannot read {shown_value(path)}: {reason}") from None


def _shown_path(path: str | Path) -> str:
    """A path as a message shows it: quoted, on one line, its end kept, since
    the file's name is what tells one account's secret from another's."""
    text = repr(str(path))
    return text if len(text) <= 100 else f"...{text[-97:]}"


def _read_secret_file(setting: str, path: str | Path, *, entries: bool = False) -> str:
    """The secret held in the file at ``path``, for ``setting``.

    UTF-8 text (a leading byte-order mark dropped), its trailing line break
    dropped; with ``entries``, its lines are entries as if separated by
    commas. Every failure is one line naming ``setting`` and the path, never
    anything the file holds.
    """
    where = f"{setting}: {_shown_path(path)}"
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, ValueError) as exc:  # a directory, no permission, a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad path"
        raise ConfigError(f"{where}: cannot read it: {reason}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(
            f"{where}: larger than {MAX_SECRET_FILE_BYTES // 1024} KiB, so not a secret"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    # echo and most editors end a file with a line break; no key ends with one.
    text = text.rstrip("\r\n")
    if entries:
        text = ",".join(text.splitlines())
    if not text.strip():
        raise ConfigError(f"{where}: the file is empty")
    if not text.isprintable():
        # A key goes into an HTTP header and a URL onto one line: a second
        # line or a control character is a mistake that would surface later,
        # and less clearly, at the vendor or at Redis.
        raise ConfigError(f"{where}: holds a second line or a character that is not printable")
    return text


def _secret_from_toml_file(setting: str, raw: Any, config_dir: Path) -> str:
    """The secret in the file a TOML ``*_file`` setting names; a relative path
    is taken from the TOML file's own directory, wherever the process runs."""
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{setting}: expected the path of a file, got {shown_value(raw)}")
    return _read_secret_file(setting, config_dir / raw)


def _with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with each secret named by an ``X_FILE`` variable read into ``X``."""
    read: dict[str, str] = {}
    for var, file_var in SECRET_FILE_ENV.items():
        path = env.get(file_var)
        if not path:
            continue
        if env.get(var):
            # Which of two values wins is not something to guess about a secret.
            raise ConfigError(f"{var} and {file_var} are both set: set only one of them")
        read[var] = _read_secret_file(file_var, path, entries=var in _LIST_SECRETS)
    return {**env, **read} if read else env


def _table_key(kind: str, name: str, entry: dict[str, Any], config_dir: Path) -> Secret | None:
    """A producer's or operator's ``key``, or the one in the file ``key_file``
    names; None when the table has neither as it should."""
    if "key_file" in entry:
        if "key" in entry:
            raise ConfigError(f"{kind} {name!r}: key and key_file are both set: set only one")
        return Secret(
            _secret_from_toml_file(f"{kind}s.{name}.key_file", entry["key_file"], config_dir)
        )
    return Secret(entry["key"]) if isinstance(entry.get("key"), str) else None


def _account_from_table(name: str, table: Any, config_dir: Path) -> AccountSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"OZP_CONFIG: [accounts.{name}] must be a table")
    if "api_key_file" in table:
        if "api_key" in table:
            raise ConfigError(
                f"account {name!r}: api_key and api_key_file are both set: set only one"
            )
        table = dict(table)
        table["api_key"] = Secret(
            _secret_from_toml_file(
                f"accounts.{name}.api_key_file", table.pop("api_key_file"), config_dir
            )
        )
    unknown = set(table) - ACCOUNT_FIELDS
    if unknown:
        raise ConfigError(f"account {name!r}: unknown settings {sorted(unknown)}")
    by_field = {f: p for f, p, _ in ACCOUNT_ENV.values()}
    values = {
        key: _parse(f"accounts.{name}.{key}", by_field[key], raw) for key, raw in table.items()
    }
    return AccountSettings(name=name, **values)


Producers = tuple[dict[str, Secret], dict[str, tuple[str, ...]]]


def _producers(table: Any, from_env: str, config_dir: Path) -> Producers:
    """Producer keys and the accounts each may use.

    TOML: ``[producers]`` with ``name = "key"``, or ``[producers.name]`` with
    ``key = "..."`` (or ``key_file = "path"``) and ``accounts = ["a", "b"]``
    (or ``"*"``). Environment:
    ``name:key`` or ``name@a+b:key`` pairs separated by commas; the key is
    everything after the first colon.
    """
    if not isinstance(table, dict):
        raise ConfigError("OZP_CONFIG: [producers] must be a table of name = key")
    keys: dict[str, Secret] = {}
    accounts: dict[str, tuple[str, ...]] = {}
    for name, entry in table.items():
        if isinstance(entry, dict):
            given = _table_key("producer", name, entry, config_dir)
            if set(entry) - {"key", "key_file", "accounts"} or given is None:
                raise ConfigError(f'producer {name!r}: expected key = "..." and accounts')
            listed = entry.get("accounts", ALL_ACCOUNTS)
            listed = [listed] if isinstance(listed, str) else listed
            if not isinstance(listed, list) or not all(isinstance(a, str) for a in listed):
                raise ConfigError(f"producer {name!r}: accounts must be a list of names")
            keys[name], accounts[name] = given, tuple(listed)
        elif isinstance(entry, str):
            keys[name] = Secret(entry)
        else:
            raise ConfigError(f"producer {name!r}: the key must be text")
    for pair in filter(None, (p.strip() for p in from_env.split(","))):
        who, sep, key = pair.partition(":")
        if not sep:
            raise ConfigError("OZP_PRODUCER_KEYS: expected name:key pairs separated by commas")
        name, at, listed_text = who.partition("@")
        name = name.strip()
        keys[name] = Secret(key.strip())
        accounts.pop(name, None)
        if at:
            accounts[name] = tuple(filter(None, (a.strip() for a in listed_text.split("+"))))
    return keys, accounts


def _operators(
    table: Any, from_env: str, config_dir: Path
) -> tuple[dict[str, Secret], dict[str, str]]:
    """Operator keys and roles of the console.

    TOML: ``[operators]`` with ``name = "key"``, or ``[operators.name]`` with
    ``key = "..."`` (or ``key_file = "path"``) and ``role = "operate" |
    "read"``. Environment
    (``OZP_OPERATOR_KEYS``): ``name:key`` or ``name:key:read`` separated by
    commas; the role, if any, is after the last colon.
    """
    if not isinstance(table, dict):
        raise ConfigError("OZP_CONFIG: [operators] must be a table of name = key")
    keys: dict[str, Secret] = {}
    roles: dict[str, str] = {}
    for name, entry in table.items():
        if isinstance(entry, dict):
            given = _table_key("operator", name, entry, config_dir)
            if set(entry) - {"key", "key_file", "role"} or given is None:
                raise ConfigError(f'operator {name!r}: expected key = "..." and role')
            keys[name] = given
            roles[name] = str(entry.get("role", "operate"))
        elif isinstance(entry, str):
            keys[name], roles[name] = Secret(entry), "operate"
        else:
            raise ConfigError(f"operator {name!r}: the key must be text")
    for item in filter(None, (p.strip() for p in from_env.split(","))):
        name, sep, rest = item.partition(":")
        if not sep or not rest:
            raise ConfigError("OZP_OPERATOR_KEYS: expected name:key or name:key:read, by commas")
        key, colon, role = rest.rpartition(":")
        if not colon or role not in OPERATOR_ROLES:
            key, role = rest, "operate"
        keys[name.strip()], roles[name.strip()] = Secret(key.strip()), role
    return keys, roles


def _no_env_account(variables: list[str], named: str | None, defined: Mapping[str, Any]) -> str:
    """Why the environment's account-level variables have no account to go to,
    on one line however many accounts the file defines."""
    names = sorted(defined)
    listed = ", ".join(shown_value(name) for name in names[:3])
    if len(names) > 3:
        listed += f" and {len(names) - 3} more"
    what = ", ".join(variables[:3]) + (" and more" if len(variables) > 3 else "")
    if named is None:
        return (
            f"{what} set, but OZP_CONFIG defines no account {DEFAULT_ACCOUNT!r} (it defines "
            f"{listed}): set OZP_ACCOUNT to the account it is for, or move it into that "
            "account's [accounts.NAME]"
        )
    return (
        f"OZP_ACCOUNT: {shown_value(named)} is not an account of OZP_CONFIG (it defines "
        f"{listed}), and {what} can only adjust one of those, not add one; add the account "
        "to the file or name one it defines"
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise :class:`ConfigError` with one line."""
    given = os.environ if environ is None else environ
    env = _with_secret_files(given)
    document = _read_toml(env["OZP_CONFIG"]) if env.get("OZP_CONFIG") else {}
    config_dir = Path(env.get("OZP_CONFIG") or ".").parent

    global_values: dict[str, Any] = {}
    keys, producer_accounts = _producers(
        document.get("producers", {}), env.get("OZP_PRODUCER_KEYS", ""), config_dir
    )
    if keys:
        global_values["producer_keys"] = keys
        global_values["producer_accounts"] = producer_accounts
    operators, roles = _operators(
        document.get("operators", {}), env.get("OZP_OPERATOR_KEYS", ""), config_dir
    )
    if operators:
        global_values["operator_keys"] = operators
        global_values["operator_roles"] = roles
    for key, raw in document.items():
        if key in ("accounts", "producers", "operators"):
            continue
        if key in _TOML_SECRET_FILES:
            if _TOML_SECRET_FILES[key] in document:
                raise ConfigError(
                    f"OZP_CONFIG: {_TOML_SECRET_FILES[key]} and {key} are both set: set only one"
                )
            key, raw = _TOML_SECRET_FILES[key], _secret_from_toml_file(key, raw, config_dir)
        if key not in GLOBAL_FIELDS:
            raise ConfigError(f"OZP_CONFIG: unknown setting {key!r}")
        parser = next((p for f, p, _ in GLOBAL_ENV.values() if f == key), str)
        global_values[key] = _parse(key, parser, raw)
    for var, (name, parser, _) in GLOBAL_ENV.items():
        if env.get(var):
            global_values[name] = _parse(var, parser, env[var])
    if env.get("REDIS_URL"):
        global_values["redis_url"] = env["REDIS_URL"]

    tables = document.get("accounts", {})
    if not isinstance(tables, dict):
        raise ConfigError("OZP_CONFIG: [accounts] must be a table of [accounts.NAME]")
    accounts = {
        name: _account_from_table(name, table, config_dir) for name, table in tables.items()
    }
    env_account = env.get("OZP_ACCOUNT") or DEFAULT_ACCOUNT
    account_vars = [var for var in ACCOUNT_ENV if env.get(var)]
    if accounts and account_vars and env_account not in accounts:
        # Adding an account here would make one the file does not define,
        # most often without credentials: the account-level variables only
        # ever adjust one of the file's accounts. Named as they were set.
        shown = [
            file_var if (file_var := SECRET_FILE_ENV.get(var)) and given.get(file_var) else var
            for var in account_vars
        ]
        raise ConfigError(_no_env_account(shown, env.get("OZP_ACCOUNT") or None, accounts))
    overrides = {
        name: _parse(var, parser, env[var])
        for var, (name, parser, _) in ACCOUNT_ENV.items()
        if var in account_vars
    }
    if overrides or not accounts:
        base = accounts.get(env_account, AccountSettings(name=env_account))
        accounts[env_account] = replace(base, **overrides)

    settings = Settings(accounts=accounts, **global_values)
    settings.validate()
    return settings


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


def log_options(environ: Mapping[str, str] | None = None) -> tuple[str | None, bool | None]:
    """``OZP_LOG_LEVEL`` and ``OZP_LOG_FORMAT`` (json or console), each None when
    unset; read before the other settings, since logging starts first."""
    env = os.environ if environ is None else environ
    level = env.get("OZP_LOG_LEVEL", "").strip().lower() or None
    if level is not None and level not in LOG_LEVELS:
        raise ConfigError(f"OZP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    fmt = env.get("OZP_LOG_FORMAT", "").strip().lower() or None
    if fmt is not None and fmt not in LOG_FORMATS:
        raise ConfigError(f"OZP_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    return level, None if fmt is None else fmt == "json"
