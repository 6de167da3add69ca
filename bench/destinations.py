"""The fake destinations as a process of their own, for the delivery bench.

`python -m bench.destinations --cpu N` serves FakeAmplitude and FakeVwo on loopback ports,
prints `ready <amplitude url> <vwo url>` and runs until stdin closes. Each fake keeps only
counts (`keep=False`): seconds of traffic at 100,000+ events/s must not fill its memory.
Running them in their own process on the other CPU measures the sink, not the fake.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import uvloop
from aiohttp import web

from fakes.amplitude import FakeAmplitude
from fakes.vwo import FakeVwo

API_KEY = "bench-api-key"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def main() -> None:
    amplitude = FakeAmplitude(api_key=API_KEY, keep=False)
    vwo = FakeVwo()
    runners = []
    urls = []
    for app in (amplitude.app, vwo.app):
        runner, url = await _serve(app)
        runners.append(runner)
        urls.append(url)
    print("ready", *urls, vwo.account_id, vwo.sdk_key, flush=True)
    # Until the bench closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.destinations")
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    uvloop.run(main())
