"""Every error the product raises on purpose descends from :class:`OzpError`.

    OzpError
    ├── ConfigError             settings missing or out of range (exit 2)
    ├── BadInput                a job, file or argument we refuse (exit 2)
    ├── RedisUnavailable        cannot reach Redis (exit 3)
    │   └── RedisCredentialsRefused  Redis refused the user or password (exit 3)
    ├── AccountHalted           the account is halted; carries the reason (exit 4)
    ├── TokenUnavailable        no usable token right now (budget spent, refresh failing)
    │   └── TokenBudgetSpent    the 10-per-hour generation budget is used up
    ├── SendRefused             a request tried to leave without its own permit
    ├── PermitExpired           a request was about to leave after its permit's moment
    └── EmbeddedRedisError      no redis-server binary to start, or it would not start

Messages never contain the API key, a token or a Redis password: callers
format them from non-secret facts only (a URL through
:func:`worker.store.connection.redacted_url`).

Errors that redis-py raises are not wrapped: the CLI maps them to exit codes
(see :mod:`worker.cli.app`).
"""

from __future__ import annotations


class OzpError(Exception):
    """Root of the product's exceptions."""


class ConfigError(OzpError):
    """The settings are missing, malformed or contradict each other."""


class BadInput(OzpError):
    """A job, an input file or a command-line argument that we refuse."""


class RedisUnavailable(OzpError):
    """Redis cannot be reached."""


class RedisCredentialsRefused(RedisUnavailable):
    """Redis refused the user name or password (or wants one and got none).

    Not worth retrying: the answer will be the same until someone changes
    REDIS_URL or the server's ACL.
    """


class AccountHalted(OzpError):
    """The account is halted (a credential error); no request may be sent."""

    def __init__(self, account: str, reason: str) -> None:
        super().__init__(f"account {account!r} is halted: {reason}")
        self.account = account
        self.reason = reason


class TokenUnavailable(OzpError):
    """No usable token now; the caller should wait and try again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TokenBudgetSpent(TokenUnavailable):
    """Generating another token would exceed the vendor's per-hour budget."""


class SendRefused(OzpError):
    """aiohttp tried to resend a request that had already used its permit."""


class PermitExpired(OzpError):
    """A request was about to be written after its permit's moment had passed."""


class EmbeddedRedisError(OzpError):
    """No redis-server binary was found, or it failed to start."""
