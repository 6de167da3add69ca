"""What every handler needs from a request: client address, locale, errors as JSON."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ..dispatch import SpoolError
from ..errors import HttpError, RouterError, Unavailable
from ..flow import now_ms
from ..geo import is_ip
from ..mapping import RequestInfo
from ..records import RecordBatch
from ..state import DISPATCHER, SETTINGS, STATS

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json.encode(data), status=status, content_type="application/json", headers=headers
    )


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


def check_capacity(app: web.Application) -> None:
    """Refuse work before accepting it when a sink cannot keep it (full spool or queue)."""
    reason = app[DISPATCHER].refusal
    if reason is not None:
        what = "spool full" if reason == "spool_full" else "a sink is behind"
        raise Unavailable(
            f"{what}: try again later", reason, app[SETTINGS].spool.retry_after_seconds
        )


async def accept(app: web.Application, batch: RecordBatch) -> None:
    """Queue a batch; in strict mode, return only once it is on disk."""
    waiters = app[DISPATCHER].submit(batch)
    if not waiters:
        return
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, SpoolError):
            raise Unavailable(
                "spool unavailable: try again later",
                "spool_error",
                app[SETTINGS].spool.retry_after_seconds,
            ) from outcome
        if isinstance(outcome, BaseException):
            raise outcome


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one translation boundary: RouterError and HTTP errors become JSON bodies."""
    try:
        return await handler(request)
    except RouterError as exc:
        endpoint = request.match_info.route.resource
        name = endpoint.canonical if endpoint is not None else request.path
        reason = exc.reason if isinstance(exc, HttpError) else "error"
        request.app[STATS].incr(
            "request.rejected", 1, {"endpoint": name, "reason": reason, "status": str(exc.status)}
        )
        headers = exc.headers if isinstance(exc, HttpError) else None
        return json_response(exc.body(), status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        request.app[STATS].incr(
            "request.rejected",
            1,
            {"endpoint": request.path, "reason": exc.reason.lower(), "status": str(exc.status)},
        )
        return json_response(
            {"error": exc.reason, "message": exc.text or exc.reason, "statusCode": exc.status},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
