"""The fake Amplitude and VWO of the compose test, as one container's process.

`python -m tests.compose.fakes` serves FakeAmplitude on :8000 and FakeVwo on :8001 (the
tests' own fakes, fakes/), plus, on each, `GET /_state` (what arrived, for the
check script) and `/__lbheartbeat__` (the service's healthcheck). FAKE_DELAY_MS slows
every delivery down, so that the check can kill a forwarder while it holds messages.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from fakes.amplitude import FakeAmplitude
from fakes.vwo import FakeVwo

DELAY = int(os.environ.get("FAKE_DELAY_MS", "0")) / 1000


class Slow:
    """Delays every POST by DELAY and counts those under way (`in_flight` in /_state)."""

    def __init__(self) -> None:
        self.in_flight = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST":
            return await handler(request)
        self.in_flight += 1
        try:
            await asyncio.sleep(DELAY)
            return await handler(request)
        finally:
            self.in_flight -= 1


async def lbheartbeat(request: web.Request) -> web.Response:
    return web.Response()


def amplitude_state(fake: FakeAmplitude, slow: Slow) -> dict[str, Any]:
    return {
        "in_flight": slow.in_flight,
        "requests": len(fake.requests),
        "received": len(fake.received),
        "ingested": sorted(fake.ingested),
        "event_types": sorted({e["event_type"] for e in fake.ingested.values()}),
        "statuses": fake.statuses,
    }


async def main() -> None:
    amplitude = FakeAmplitude(api_key=os.environ.get("FAKE_AMPLITUDE_API_KEY", "test-api-key"))
    vwo = FakeVwo()
    slow = {"amplitude": Slow(), "vwo": Slow()}

    async def amplitude_get(request: web.Request) -> web.Response:
        return web.json_response(amplitude_state(amplitude, slow["amplitude"]))

    async def vwo_get(request: web.Request) -> web.Response:
        return web.json_response({"events": len(vwo.events), "statuses": vwo.statuses})

    runners = []
    services = ((amplitude, amplitude_get, 8000, "amplitude"), (vwo, vwo_get, 8001, "vwo"))
    for fake, state, port, name in services:
        fake.app.middlewares.append(slow[name].middleware)
        fake.app.router.add_get("/_state", state)
        fake.app.router.add_get("/__lbheartbeat__", lbheartbeat)
        runner = web.AppRunner(fake.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
        runners.append(runner)
    print("fakes listening on :8000 (amplitude) and :8001 (vwo)", flush=True)
    # PID 1 in its container: SIGTERM is ignored unless handled, and `down` would wait.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
