"""The baseline: a bare aiohttp + uvloop app whose handler reads the body and answers 204."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvloop
from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda _: print("baseline listening", file=sys.stderr, flush=True),
        loop=loop,
    )


if __name__ == "__main__":
    main()
