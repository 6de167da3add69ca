"""Scenario 1: `POST /metrics` with one event a request, through the whole pipeline."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from router.enrich.flow import FlowSigner

from ..results import ScenarioResult
from ..traffic import FLOW_KEY, HEADERS, body_bytes
from . import TITLES, scenario_main
from ._http import records_for, run_http


@contextmanager
def hung_destination() -> Iterator[str]:
    """A TCP server on loopback that takes connections and requests and never answers."""
    ready = threading.Event()
    stop = threading.Event()
    port: list[int] = []

    def serve() -> None:
        async def main() -> None:
            async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while await reader.read(65536):
                    pass

            server = await asyncio.start_server(swallow, "127.0.0.1", 0)
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            server.close()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        stop.set()
        thread.join(5)


def run(duration: float, smoke: bool) -> ScenarioResult:
    # The flow began a minute ago and expires after two hours: no refresh is needed.
    data = body_bytes(FlowSigner(FLOW_KEY), 1)
    with hung_destination() as hung:
        amplitude = (
            "[sinks.amplitude]\n"
            'api_key = "bench-api-key"\n'
            'hmac_key = "bench-hmac-key"\n'
            f'url = "{hung}/batch"\n'
            f'identify_url = "{hung}/identify"\n'
        )
        return run_http(
            "single",
            TITLES["single"],
            method="POST",
            path="/metrics",
            body=data,
            events_per_request=1,
            records_per_request=records_for(data),
            duration=duration,
            smoke=smoke,
            headers=HEADERS,
            variants=[("router + hung Amplitude", amplitude)],
        )


if __name__ == "__main__":
    scenario_main(run)
