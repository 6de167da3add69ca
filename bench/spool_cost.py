"""The cost of the spool: POST /metrics throughput with no spool, the default and strict modes.

The router runs in a child process behind a healthy durable sink that takes every
batch at once (so in the default mode almost nothing reaches the disk: chunks are
delivered before their commit); this process posts 10-event batches over loopback
from 32 concurrent connections. `run(duration_s)` returns requests/s and events/s
per mode. Run alone with `python -m bench.spool_cost [seconds]`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from router.app import make_app
from router.config import load_settings, override
from router.enrich.flow import FlowSigner, now_ms
from router.records import Record
from router.sinks.base import Kind, Sink

KEY = "bench-flow-key"
EVENTS = 10
CONNECTIONS = 32
MODES: dict[str, dict[str, Any]] = {
    "no_spool": {"durable": False},
    "default": {"durable": True},
    "strict": {"durable": True, "strict": True},
    "strict_fsync": {"durable": True, "strict": True, "fsync": True},
}


class NullSink(Sink):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"amplitude", "flow", "vwo"})

    async def send(self, records: Sequence[Record]) -> None:
        pass


class DurableNullSink(NullSink):
    durable: ClassVar[bool] = True


def _serve(port: int, spool_dir: str, mode: dict[str, Any]) -> None:
    import uvloop

    settings = override(
        load_settings(environ={}),
        flow={"key": KEY},
        spool={
            "path": spool_dir,
            "strict": mode.get("strict", False),
            "fsync": mode.get("fsync", False),
        },
    )
    sink = DurableNullSink("bench") if mode["durable"] else NullSink("bench")
    app = make_app(settings, sinks=[sink])
    web.run_app(
        app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _body(signer: FlowSigner) -> dict[str, Any]:
    flow_id, begin = signer.create(now_ms() - 10_000)
    start = begin + 1000
    return {
        "flowId": flow_id,
        "flowBeginTime": begin,
        "deviceId": "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c",
        "startTime": start,
        "flushTime": start + 5000,
        "duration": 5000,
        "service": "sync",
        "uid": "none",
        "events": [{"type": "flow.signin.engage", "offset": i} for i in range(1, EVENTS + 1)],
    }


async def _load(url: str, duration_s: float) -> int:
    signer = FlowSigner(KEY)
    bodies = [_body(signer) for _ in range(256)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:
        for _ in range(100):  # the child is still starting: bounded retries
            try:
                async with session.get(f"{url}/__lbheartbeat__") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + duration_s
        done = 0

        async def post(worker: int) -> None:
            nonlocal done
            i = worker
            while time.monotonic() < deadline:
                async with session.post(f"{url}/metrics", json=bodies[i % len(bodies)]) as resp:
                    assert resp.status == 200, resp.status
                done += 1
                i += CONNECTIONS

        await asyncio.gather(*(post(w) for w in range(CONNECTIONS)))
        return done


def run(duration_s: float = 5.0) -> dict[str, Any]:
    """{mode: {requests_per_s, events_per_s}} for each spool mode."""
    results: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")
    for name, mode in MODES.items():
        port = _free_port()
        with tempfile.TemporaryDirectory() as spool_dir:
            child = context.Process(target=_serve, args=(port, spool_dir, mode), daemon=True)
            child.start()
            try:
                count = asyncio.run(_load(f"http://127.0.0.1:{port}", duration_s))
            finally:
                child.terminate()
                child.join(30)
        results[name] = {
            "requests_per_s": round(count / duration_s),
            "events_per_s": round(count * EVENTS / duration_s),
        }
    return results


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    for mode, figures in run(seconds).items():
        print(
            f"{mode:14} {figures['requests_per_s']:>8} req/s {figures['events_per_s']:>9} events/s"
        )
