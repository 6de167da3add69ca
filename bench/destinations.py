"""The fake destinations as a process of their own, for the delivery bench.

`python -m bench.destinations` serves FakeAmplitude and FakeVwo on loopback ports, prints
`ready <amplitude url> <vwo url> <account id> <sdk key>` on stderr and serves until it is
signalled (`bench.procs.Server` starts, pins and stops it). Each fake keeps only
counts (`keep=False`): seconds of traffic at 100,000+ events/s must not fill its memory.
Running them in their own process on the other CPU measures the sink, not the fake.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

from fakes.amplitude import FakeAmplitude
from fakes.vwo import FakeVwo

API_KEY = "bench-api-key"


async def _serve(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def main() -> None:
    amplitude = FakeAmplitude(api_key=API_KEY, keep=False)
    vwo = FakeVwo()
    runners = [await _serve(app) for app in (amplitude.app, vwo.app)]
    urls = [f"http://127.0.0.1:{runner.addresses[0][1]}" for runner in runners]
    print("ready", *urls, vwo.account_id, vwo.sdk_key, file=sys.stderr, flush=True)
    await asyncio.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    uvloop.run(main())
