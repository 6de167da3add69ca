"""The baselines: bare aiohttp + uvloop, and the same with msgspec decoding the body schema.

`bare` reads the body and answers 204: the framework's floor. `decode` also decodes what the
router decodes (the `POST /metrics` body as `MetricsBody`, the `/metrics-flow` query as
`FlowQuery`) with msgspec and answers 204 (or 400 when it does not decode): the floor for any
aiohttp + msgspec service doing this job.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec
import uvloop
from aiohttp import web

from router.events import FlowQuery, MetricsBody

_body = msgspec.json.Decoder(MetricsBody)


async def bare(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


async def decode(request: web.Request) -> web.Response:
    try:
        if request.method == "GET":
            msgspec.convert(dict(request.query), FlowQuery)
        else:
            _body.decode(await request.read())
    except msgspec.MsgspecError:
        return web.Response(status=400)
    return web.Response(status=204)


def make_app(mode: str = "bare") -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", decode if mode == "decode" else bare)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("bare", "decode"), default="bare")
    args = parser.parse_args()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        make_app(args.mode),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda _: print("baseline listening", file=sys.stderr, flush=True),
        loop=loop,
    )


if __name__ == "__main__":
    main()
