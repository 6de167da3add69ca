"""What every handler needs from a request: client address, locale, errors as JSON."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import BadRequest, DiskFull, RouterError, SpoolError, Unavailable
from ..flow import now_ms
from ..mapping import RequestInfo
from ..records import RecordBatch
from ..state import STATE, RouterState

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json.encode(data), status=status, content_type="application/json", headers=headers
    )


def client_ip(request: web.Request, trusted_proxies: int) -> str | None:
    """The client address: `trusted_proxies` hops from the right of X-Forwarded-For."""
    remote = request.remote
    if trusted_proxies <= 0:
        return remote
    chain = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
    if remote:
        chain.append(remote)
    if not chain:
        return None
    return chain[-(trusted_proxies + 1)] if len(chain) > trusted_proxies else chain[0]


def request_info(request: web.Request, trusted_proxies: int) -> RequestInfo:
    headers = request.headers
    language = headers.get("Accept-Language", "")
    locale = language.split(",", 1)[0].split(";", 1)[0].strip() or None
    return RequestInfo(
        received=now_ms(),
        user_agent=headers.get("User-Agent", ""),
        ip=client_ip(request, trusted_proxies),
        dnt=headers.get("DNT") == "1",
        locale=locale,
    )


# Why ingest refuses work (503 with Retry-After; for a full disk too, not 507: one status
# for every "cannot keep it now", docs/durability.md "Disk full").
_REFUSALS = {
    "spool_full": "spool full",
    "disk_full": "disk full",
    "spool_error": "spool unavailable",
}


def check_capacity(state: RouterState) -> None:
    """Refuse work before accepting it when a sink cannot keep it (full spool or queue)."""
    reason = state.dispatcher.refusal
    if reason is not None:
        what = _REFUSALS.get(reason, "a sink is behind")
        raise Unavailable(
            f"{what}: try again later", reason, state.settings.spool.retry_after_seconds
        )


async def accept(state: RouterState, batch: RecordBatch) -> None:
    """Queue a batch; in strict mode, return only once it is on disk."""
    waiters = state.dispatcher.submit(batch)
    if not waiters:
        return
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, SpoolError):
            reason = "disk_full" if isinstance(outcome, DiskFull) else "spool_error"
            raise Unavailable(
                f"{_REFUSALS[reason]}: try again later",
                reason,
                state.settings.spool.retry_after_seconds,
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
        reason = exc.reason if isinstance(exc, BadRequest | Unavailable) else "error"
        request.app[STATE].stats.incr(
            "request.rejected", 1, {"endpoint": name, "reason": reason, "status": str(exc.status)}
        )
        body = exc.body()
        headers = exc.headers if isinstance(exc, Unavailable) else None
        return json_response(body, status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        request.app[STATE].stats.incr(
            "request.rejected",
            1,
            {"endpoint": request.path, "reason": exc.reason.lower(), "status": str(exc.status)},
        )
        return json_response(
            {"error": exc.reason, "message": exc.text or exc.reason, "statusCode": exc.status},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
