"""What every handler needs from a request: client address, locale, errors as JSON."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterable

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ..dispatch import Dispatcher
from ..dispatch.admission import WAITABLE
from ..enrich.flow import now_ms
from ..enrich.geo import is_ip
from ..errors import DiskFull, HttpError, RouterError, SpoolError, Unauthorized, Unavailable
from ..mapping import RequestInfo
from ..records import RecordBatch
from ..state import DISPATCHER, SETTINGS, STATS
from ..stats import Counter, Stats
from ..watching.tap import Tap

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json.encode(data), status=status, content_type="application/json", headers=headers
    )


async def read_body(request: web.Request) -> bytes:
    """The whole body, as `request.read()` gives it (413 past `client_max_size`).

    A small body usually arrives with its headers: then it is taken from the buffer at
    once, without `read()`'s loop of waits and copies (a sixth of a 1-event `POST`'s
    instructions in the handler).
    """
    content = request.content
    if content.is_eof():
        data = content.read_nowait()
        limit = request.client_max_size
        if limit and len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
        return data
    return await request.read()


def client_ip(request: web.Request, trusted_proxies: int) -> str | None:
    """The client address: `trusted_proxies` hops from the right of X-Forwarded-For.

    FxA's remote-address (fxa-shared/express/remote-address.ts) with
    clientAddressDepth = trusted_proxies + 1: the X-Forwarded-For entries and the peer,
    invalid addresses skipped, the one `depth` from the right (the leftmost if fewer).
    """
    remote = request.remote
    if trusted_proxies <= 0:
        return remote if remote and is_ip(remote) else None
    chain = [
        a for p in request.headers.get("X-Forwarded-For", "").split(",") if is_ip(a := p.strip())
    ]
    if remote and is_ip(remote):
        chain.append(remote)
    if not chain:
        return None
    return chain[max(len(chain) - (trusted_proxies + 1), 0)]


def request_info(request: web.Request, trusted_proxies: int) -> RequestInfo:
    headers = request.headers
    return RequestInfo(
        received=now_ms(),
        user_agent=headers.get("User-Agent", ""),
        ip=client_ip(request, trusted_proxies),
        dnt=headers.get("DNT") == "1",
        accept_language=headers.get("Accept-Language", ""),
    )


def require_bearer(request: web.Request, token: str) -> None:
    """Constant-time bearer token check; an unset token refuses everyone."""
    expected = token.encode()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest runs in time independent of where the strings differ.
    ok = hmac.compare_digest(given.strip().encode(), expected)
    if not expected or scheme.lower() != "bearer" or not ok:
        raise Unauthorized("missing or wrong bearer token", "$.headers.authorization", "bad_token")


# Why ingest refuses work (503 with Retry-After; for a full disk too, not 507: one status
# for every "cannot keep it now", docs/durability.md "Disk full").
_REFUSALS = {
    "spool_full": "spool full",
    "disk_full": "disk full",
    "spool_error": "spool unavailable",
}


async def check_capacity(app: web.Application) -> None:
    """Before accepting work: wait for room in a busy sink's queue (bounded), refuse
    at once when a spool or the disk is full."""
    dispatcher = app[DISPATCHER]
    admission = dispatcher.admission
    if admission.ready():
        return
    settings = app[SETTINGS]
    if admission.waiting or dispatcher.refusal in WAITABLE:
        app[STATS].incr("ingest.waited")  # not a full spool or disk: refused at once
    reason = await admission.enter(settings.server.backpressure_wait_ms / 1000)
    if reason is not None:
        what = _REFUSALS.get(reason, "a sink is behind")
        raise Unavailable(f"{what}: try again later", reason, settings.spool.retry_after_seconds)


async def accept(app: web.Application, batch: RecordBatch) -> None:
    """Queue a batch; in strict mode, return only once it is on disk."""
    waiters = app[DISPATCHER].submit(batch)
    if not waiters:
        return
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, SpoolError):
            reason = "disk_full" if isinstance(outcome, DiskFull) else "spool_error"
            raise Unavailable(
                f"{_REFUSALS[reason]}: try again later",
                reason,
                app[SETTINGS].spool.retry_after_seconds,
            ) from outcome
        if isinstance(outcome, BaseException):
            raise outcome


Route = tuple[str, str, Handler]  # method, path, handler
UNMATCHED = "unmatched"  # the name of the route that takes what matches no other


def add_routes(
    app: web.Application,
    routes: Iterable[Route],
    stats: Stats,
    tap: Tap,
    dispatcher: Dispatcher | None = None,
) -> None:
    """Every route inside the error boundary (`guarded`), then one for all other requests.

    The last route matches any method and path, so a 404 or 405 is answered inside the
    boundary too: as JSON, and counted. (A middleware would do the same for every request
    at the cost of two more coroutine frames and a handler-chain lookup each.)
    """
    for method, path, handler in routes:
        wrapped = guarded(handler, path, stats, tap, dispatcher)
        if method == "GET":
            app.router.add_get(path, wrapped)  # and HEAD, as aiohttp does
        else:
            app.router.add_route(method, path, wrapped)
    app.router.add_route(
        "*", "/{tail:.*}", guarded(_unmatched, "other", stats, tap, dispatcher), name=UNMATCHED
    )


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """404, or 405 with the methods the path does take (what aiohttp's router answers)."""
    allowed: set[str] = set()
    own = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not own:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def guarded(
    handler: Handler,
    endpoint: str,
    stats: Stats,
    tap: Tap,
    dispatcher: Dispatcher | None = None,
) -> Handler:
    """`handler` inside the one translation boundary: RouterError and HTTP errors become
    JSON bodies, and every answer is counted (`requests{endpoint,status}`, what
    `metrics-router top` shows)."""
    # One handle per status: no tag dict built or sorted per request. Bounded: HTTP's.
    counters: dict[int, Counter] = {}

    async def guard(request: web.Request) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except RouterError as exc:
            status = exc.status
            return _router_error(exc, endpoint, stats, tap)
        except web.HTTPException as exc:
            status = exc.status
            if exc.status < 400:
                raise
            return _http_error(exc, endpoint, stats, tap)
        finally:
            counter = counters.get(status)
            if counter is None:
                counter = counters[status] = stats.counter(
                    "requests", {"endpoint": endpoint, "status": str(status)}
                )
            counter.incr()
            # A request let in by the admission gate that queued nothing (refused,
            # dropped) must still let the next waiter in: a submit would have.
            if dispatcher is not None and dispatcher.admission.waiting:
                dispatcher.admission.poke()

    guard.__name__ = getattr(handler, "__name__", "guard")
    guard.__doc__ = handler.__doc__
    return guard


def _router_error(exc: RouterError, endpoint: str, stats: Stats, tap: Tap) -> web.Response:
    reason = exc.reason if isinstance(exc, HttpError) else "error"
    stats.incr(
        "request.rejected", 1, {"endpoint": endpoint, "reason": reason, "status": str(exc.status)}
    )
    if tap.subscribers:
        path = exc.path if isinstance(exc, HttpError) else None
        tap.rejected(endpoint, exc.status, reason, path, str(exc))
    headers = exc.headers if isinstance(exc, HttpError) else None
    return json_response(exc.body(), status=exc.status, headers=headers)


def _http_error(exc: web.HTTPException, endpoint: str, stats: Stats, tap: Tap) -> web.Response:
    reason = exc.reason.lower()
    stats.incr(
        "request.rejected",
        1,
        # Not the path: every stranger's 404 must not add a counter.
        {"endpoint": endpoint, "reason": reason, "status": str(exc.status)},
    )
    if tap.subscribers:
        tap.rejected(endpoint, exc.status, reason, None, exc.text or exc.reason)
    answer: dict[str, object] = {
        "error": exc.reason,
        "message": exc.text or exc.reason,
        "statusCode": exc.status,
    }
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        answer["validation"] = {"keys": ["$"]}  # the body as a whole
    return json_response(
        answer,
        status=exc.status,
        headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
    )
