"""The console's routes: its pages, its sign-in, and its JSON API.

Served beside the producers' API by ``run --http``, or alone by the
``console`` command. Without operator keys every console URL answers 404
with a page that says how to turn it on.

Defences, in order: the session cookie (HttpOnly, SameSite=Strict, Secure
over TLS, signed per operator: :mod:`worker.console.sessions`); a CSRF
token on every POST (a header, which a cross-site form cannot send, and
which must match the session); the operator's role before any action; a
strict Content-Security-Policy on every answer, so the pages run only the
package's own scripts and talk only to this origin; numbers masked unless an
operator asks to reveal one, and every reveal and action logged with the
operator's name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from worker.accounts import control
from worker.accounts.status import select_accounts
from worker.config.settings import Settings
from worker.console import data
from worker.console.sessions import (
    COOKIE,
    Session,
    csrf_matches,
    new_session,
    operator_for_key,
    session_from_cookie,
)
from worker.drain.progress import drains
from worker.errors import BadInput, ConfigError
from worker.http.limits import TokenBucket
from worker.http.requests import Refused, read_json
from worker.logs import WarningSampler, get_logger, register_secret
from worker.results import dead_letters
from worker.store.keys import AccountKeys

log = get_logger(__name__)

CONSOLE_SETTINGS = web.AppKey("console_settings", Settings)
CONSOLE_REDIS = web.AppKey("console_redis", Redis)
LOGIN_BUCKETS = web.AppKey("console_login_buckets", dict[str, TokenBucket])
LOGIN_REFUSED_LOG = web.AppKey("console_login_refused_log", WarningSampler)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {
    "css": "text/css",
    "js": "text/javascript",
    "svg": "image/svg+xml",
    "png": "image/png",
    "html": "text/html",
}
STATIC_NAME = re.compile(r"[a-z0-9-]{1,64}\.(css|js|svg|png)")
PAGES = {
    "/console": "overview.html",
    "/console/dead-letters": "dead-letters.html",
    "/console/results": "results.html",
}
# Wrong keys: a few tries a minute per address, so a key cannot be guessed
# online; and one log line per period, however many.
LOGIN_TRIES_PER_S = 10 / 60
LOGIN_BURST = 10
LOGIN_BUCKETS_MAX = 10_000
LOGIN_REFUSED_LOG_PERIOD_S = 10.0
OFF_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>Console off - ozonetel-purge</title></head><body><main><h1>The console is off</h1>"
    "<p>Set <code>OZP_OPERATOR_KEYS=name:key</code> (keys of 16 characters or more; "
    "<code>name:key:read</code> for a read-only operator) and restart to turn it on.</p>"
    "</main></body></html>"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_console_routes(app: web.Application, settings: Settings, redis: Redis) -> None:
    """The console's routes on ``app`` (whose middlewares answer errors as JSON)."""
    app[CONSOLE_SETTINGS] = settings
    app[CONSOLE_REDIS] = redis
    app[LOGIN_BUCKETS] = {}
    app[LOGIN_REFUSED_LOG] = WarningSampler(LOGIN_REFUSED_LOG_PERIOD_S)
    for key in settings.operator_keys.values():
        register_secret(key.reveal())
    app.on_response_prepare.append(_security_headers)
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/console/login", login_page)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)
    app.router.add_get("/console/static/{name}", static_file)
    api: dict[str, Handler] = {
        "session": get_session,
        "overview": get_overview,
        "rate": get_rate,
        "dead-letters": get_dead_letters,
        "drains": get_drains,
    }
    for name, handler in api.items():
        app.router.add_get(f"/console/api/{name}", handler)
    actions: dict[str, Handler] = {
        "pause": post_pause,
        "resume": post_resume,
        "replay": post_replay,
        "purge": post_purge,
        "lookup": post_lookup,
        "reveal": post_reveal,
    }
    for name, handler in actions.items():
        app.router.add_post(f"/console/api/{name}", handler)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/console" or request.path.startswith("/console/"):
        response.headers.update(SECURITY_HEADERS)


def create_console_app(settings: Settings, redis: Redis) -> web.Application:
    """The ``console`` command's server: the console alone, with /healthz and /readyz."""
    from worker.http.api import GUARD, json_errors
    from worker.http.limits import ConnectionGuard
    from worker.http.ops import REDIS, SETTINGS, add_ops_routes
    from worker.metrics.process import exposition

    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[GUARD] = ConnectionGuard(settings.http_max_connections, settings.http_header_timeout_s)

    async def own_metrics() -> bytes:
        return exposition()

    add_ops_routes(app, settings, own_metrics)
    add_console_routes(app, settings, redis)
    return app


def _settings(request: web.Request) -> Settings:
    return request.app[CONSOLE_SETTINGS]


def _static(name: str) -> bytes:
    return resources.files("worker.console").joinpath("static", name).read_bytes()


def _console_off(request: web.Request) -> web.Response | None:
    if _settings(request).operator_keys:
        return None
    return web.Response(status=404, text=OFF_PAGE, content_type="text/html")


def _session(request: web.Request) -> Session | None:
    cookie = request.cookies.get(COOKIE, "")
    return session_from_cookie(_settings(request), cookie) if cookie else None


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _html(name: str) -> web.Response:
    return web.Response(body=_static(name), content_type="text/html", charset="utf-8")


async def page(request: web.Request) -> web.StreamResponse:
    off = _console_off(request)
    if off is not None:
        return off
    if _session(request) is None:
        return _see_other("/console/login")
    return _html(PAGES[request.path])


async def login_page(request: web.Request) -> web.StreamResponse:
    off = _console_off(request)
    if off is not None:
        return off
    if _session(request) is not None:
        return _see_other("/console")
    return _html("login.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    match = STATIC_NAME.fullmatch(name)
    if match is None:
        raise web.HTTPNotFound()
    try:
        body = _static(name)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(body=body, content_type=STATIC_TYPES[match.group(1)])


def _same_origin(request: web.Request) -> bool:
    """A form post from this origin, as far as the browser tells.

    ``Sec-Fetch-Site`` says it outright in current browsers. ``Origin`` is
    ``null`` on our own form's post, since the pages send no referrer
    (``Referrer-Policy: no-referrer``), so a null origin is taken only with
    ``same-origin`` beside it; a client that sends neither (not a browser)
    has no cookies to be tricked with.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return site == "same-origin"
    return origin == f"{request.scheme}://{request.host}"


async def login(request: web.Request) -> web.StreamResponse:
    off = _console_off(request)
    if off is not None:
        return off
    if not _same_origin(request):
        raise web.HTTPForbidden(reason="sign in from the console's own page")
    settings = _settings(request)
    remote = request.remote or "?"
    now = asyncio.get_running_loop().time()
    buckets = request.app[LOGIN_BUCKETS]
    if len(buckets) > LOGIN_BUCKETS_MAX:
        buckets.clear()  # bounded memory; a flood of addresses only resets the count
    bucket = buckets.setdefault(remote, TokenBucket(LOGIN_TRIES_PER_S, LOGIN_BURST, now))
    form = await request.post()
    key = form.get("key")
    operator = operator_for_key(settings, key) if isinstance(key, str) else None
    if operator is None:
        wait_s = bucket.take(1, now)
        held = request.app[LOGIN_REFUSED_LOG].admit(now)
        if held is not None:
            log.warning("console.login_refused", remote=remote, also_since_last=held)
        if wait_s > 0:
            raise web.HTTPTooManyRequests(
                reason="too many wrong keys; try again later",
                headers={"Retry-After": str(max(1, round(wait_s)))},
            )
        return _see_other("/console/login?failed=1")
    log.info("console.login", operator=operator.name, role=operator.role, remote=remote)
    response = _see_other("/console")
    response.set_cookie(
        COOKIE,
        new_session(settings, operator),
        max_age=settings.console_session_s,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    if session is not None:
        form = await request.post()
        presented = request.headers.get("X-CSRF-Token") or form.get("csrf")
        if not isinstance(presented, str) or not csrf_matches(session, presented):
            raise web.HTTPForbidden(reason="missing or wrong CSRF token")
        log.info("console.logout", operator=session.operator.name)
    response = _see_other("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


def _api_session(request: web.Request) -> Session:
    if not _settings(request).operator_keys:
        raise web.HTTPNotFound(reason="the console is off: set OZP_OPERATOR_KEYS")
    session = _session(request)
    if session is None:
        raise web.HTTPUnauthorized(reason="sign in at /console/login")
    return session


async def _post_body(request: web.Request, *, act: bool) -> tuple[Session, dict[str, Any]]:
    """The session of a POST that carries its CSRF token, and its JSON object."""
    session = _api_session(request)
    if not csrf_matches(session, request.headers.get("X-CSRF-Token", "")):
        raise web.HTTPForbidden(reason="missing or wrong CSRF token")
    if act and not session.operator.may_act:
        raise web.HTTPForbidden(reason="read-only operator")
    body = await read_json(request, _settings(request))
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return session, body


def _text(body: dict[str, Any], name: str, *, required: bool = True, limit: int = 200) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise Refused(400, f"{name!r} must be text of 1-{limit} characters")
    return value


async def _account(request: web.Request, name: str) -> AccountKeys:
    settings = _settings(request)
    try:
        await select_accounts(request.app[CONSOLE_REDIS], settings, [name])
    except ConfigError as exc:
        raise Refused(400, str(exc)) from None
    return AccountKeys(settings.key_prefix, name)


async def _act(request: web.Request, session: Session, keys: AccountKeys, action: str,
               detail: str) -> None:  # fmt: skip
    log.info("console.action", operator=session.operator.name, action=action,
             account=keys.account, detail=detail)  # fmt: skip
    await control.record_action(
        request.app[CONSOLE_REDIS], keys, session.operator.name, action, detail
    )


async def get_session(request: web.Request) -> web.StreamResponse:
    session = _api_session(request)
    operator = session.operator
    return web.json_response({"operator": operator.name, "role": operator.role,
                              "csrf": session.csrf})  # fmt: skip


async def get_overview(request: web.Request) -> web.StreamResponse:
    _api_session(request)
    return web.json_response(await data.overview(request.app[CONSOLE_REDIS], _settings(request)))


async def get_rate(request: web.Request) -> web.StreamResponse:
    _api_session(request)
    keys = await _account(request, request.query.get("account", ""))
    redis = request.app[CONSOLE_REDIS]
    return web.json_response(await data.rate(redis, _settings(request), keys.account))


async def get_dead_letters(request: web.Request) -> web.StreamResponse:
    _api_session(request)
    keys = await _account(request, request.query.get("account", ""))
    limit_text = request.query.get("limit", "50")
    if not limit_text.isascii() or not limit_text.isdigit():
        raise Refused(400, "limit must be a whole number")
    limit = min(max(int(limit_text[:4]), 1), data.LETTERS_PAGE_MAX)
    after = request.query.get("after") or None
    if after is not None and not re.fullmatch(r"\d{1,20}-\d{1,20}", after):
        raise Refused(400, "after must be a stream entry id")
    page_data = await data.letters_page(
        request.app[CONSOLE_REDIS], keys, request.query.get("reason") or None, after, limit
    )
    return web.json_response(page_data)


async def get_drains(request: web.Request) -> web.StreamResponse:
    _api_session(request)
    return web.json_response(
        {"drains": await drains(request.app[CONSOLE_REDIS], _settings(request))}
    )


async def post_pause(request: web.Request) -> web.StreamResponse:
    session, body = await _post_body(request, act=True)
    keys = await _account(request, _text(body, "account"))
    reason = _text(body, "reason", required=False) or "paused from the console"
    await control.pause_account(request.app[CONSOLE_REDIS], keys, reason, by=session.operator.name)
    log.info("console.action", operator=session.operator.name, action="pause",
             account=keys.account, detail=reason)  # fmt: skip
    return web.json_response({"ok": True})


async def post_resume(request: web.Request) -> web.StreamResponse:
    session, body = await _post_body(request, act=True)
    keys = await _account(request, _text(body, "account"))
    cleared = await control.resume_account(
        request.app[CONSOLE_REDIS], keys, by=session.operator.name
    )
    log.info("console.action", operator=session.operator.name, action="resume",
             account=keys.account)  # fmt: skip
    return web.json_response({"ok": True, "was_paused": cleared})


async def post_replay(request: web.Request) -> web.StreamResponse:
    session, body = await _post_body(request, act=True)
    keys = await _account(request, _text(body, "account"))
    redis = request.app[CONSOLE_REDIS]
    if body.get("id") is not None:
        letter_id = _text(body, "id", limit=45)
        counts = await dead_letters.replay_one(redis, keys, letter_id)
        detail = f"dead letter {letter_id}"
    elif body.get("reason") is not None:
        reason = _text(body, "reason", limit=64)
        counts = await dead_letters.replay(redis, keys, reason=reason)
        detail = f"reason {reason}"
    elif body.get("all") is True:
        counts = await dead_letters.replay(redis, keys)
        detail = "all dead letters"
    else:
        raise Refused(400, 'say which: "id", "reason" or "all": true')
    await _act(request, session, keys, "replay", f"{detail}: {counts.summary()}")
    return web.json_response(dataclasses.asdict(counts))


async def post_purge(request: web.Request) -> web.StreamResponse:
    session, body = await _post_body(request, act=True)
    keys = await _account(request, _text(body, "account"))
    if body.get("confirm") != "purge":
        raise Refused(400, 'a purge needs "confirm": "purge"')
    if body.get("reason") is not None:
        reason: str | None = _text(body, "reason", limit=64)
    elif body.get("all") is True:
        reason = None
    else:
        raise Refused(400, 'say which: "reason" or "all": true')
    purged = await dead_letters.purge(request.app[CONSOLE_REDIS], keys, reason)
    what = f"reason {reason}" if reason else "all dead letters"
    await _act(request, session, keys, "purge", f"{what}: {purged} deleted")
    return web.json_response({"purged": purged})


async def post_lookup(request: web.Request) -> web.StreamResponse:
    _, body = await _post_body(request, act=False)
    keys = await _account(request, _text(body, "account"))
    try:
        found = await data.lookup(
            request.app[CONSOLE_REDIS],
            keys,
            _text(body, "job_id", required=False, limit=64) or None,
            _text(body, "campaign", required=False) or None,
            _text(body, "phone", required=False, limit=32) or None,
        )
    except BadInput as exc:
        raise Refused(400, str(exc)) from None
    return web.json_response(found)


async def post_reveal(request: web.Request) -> web.StreamResponse:
    session, body = await _post_body(request, act=False)
    keys = await _account(request, _text(body, "account"))
    job_id = _text(body, "job_id", required=False, limit=64) or None
    letter_id = _text(body, "letter_id", required=False, limit=45) or None
    try:
        phone = await data.reveal(request.app[CONSOLE_REDIS], keys, job_id, letter_id)
    except BadInput as exc:
        raise Refused(400, str(exc)) from None
    if phone is None:
        raise web.HTTPNotFound(reason="no such job or dead letter")
    what = f"job {job_id}" if job_id else f"dead letter {letter_id}"
    log.info("console.reveal", operator=session.operator.name, account=keys.account, of=what)
    await control.record_action(request.app[CONSOLE_REDIS], keys, session.operator.name,
                                "reveal", what)  # fmt: skip
    return web.json_response({"phone": phone})
