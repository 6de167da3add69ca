"""`metrics-router tap`: print, live, what a running router does with each event."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import aiohttp

from ..watching.tap import (
    TapDropped,
    TapEvent,
    TapFilter,
    TapHello,
    TapLine,
    TapRecord,
    TapRejected,
    line_decoder,
    record_name,
)


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def format_line(line: TapLine) -> str | None:
    """One line of text for a tap line (None: nothing to print)."""
    match line:
        case TapEvent():
            head = f"{_clock(line.time)} w{line.worker} {line.endpoint:<15}"
            rule = line.rule or "no rule"
            text = f"{head} event {line.event}  ← {rule}"
            return f"{text}  (batch dropped: {line.dropped})" if line.dropped else text
        case TapRecord():
            head = f"{_clock(line.time)} w{line.worker} {line.endpoint:<15}"
            return f"{head}   → {line.sink:<10} {line.kind:<9} {record_name(line.record)}"
        case TapRejected():
            head = f"{_clock(line.time)} w{line.worker} {line.endpoint:<15}"
            where = f" at {line.path}" if line.path else ""
            return f"{head} rejected {line.status} {line.reason}{where}: {line.message}"
        case TapDropped():
            return f"dropped {line.count:,} records"
    return None


async def run_tap(
    url: str, token: str, filters: TapFilter, as_json: bool, out: TextIO, err: TextIO
) -> int:
    """Stream until the router closes the stream (exit status 0) or refuses it (1)."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{url}/__tap__", params=filters.query(), headers=headers) as resp,
        ):
            if resp.status != 200:
                print(f"tap: {url} answered {resp.status}: {await resp.text()}", file=err)
                return 1
            async for raw in resp.content:
                line = line_decoder.decode(raw)
                if isinstance(line, TapHello):
                    workers = ", ".join(map(str, line.workers))
                    print(f"tapping {url} (workers {workers})", file=err, flush=True)
                    continue
                text = raw.decode().rstrip("\n") if as_json else format_line(line)
                if text is not None:
                    print(text, file=out, flush=True)
    except aiohttp.ClientError as exc:
        print(f"tap: {url}: {exc}", file=err)
        return 1
    print("tap: the router closed the stream", file=err)
    return 0


def tap(url: str, token: str, filters: TapFilter, as_json: bool) -> int:
    if not token:
        print(
            "tap: no token: set [admin] token in the config or METRICS_ROUTER_ADMIN_TOKEN",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(run_tap(url, token, filters, as_json, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return 130
