"""Scale-out figures: 1 vs 2 router workers (HTTP requests/s), JetStream publish and forward.

Standalone: `python -m bench.scale [DURATION_S]` prints a table and JSON. Each `run_*`
returns `dict[str, float]` so the bench runner can take them over.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOW_KEY = "bench-flow-key"
ID_KEY = "bench-id-key"
NATS = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _body() -> str:
    sys.path.insert(0, str(ROOT))
    from router.enrich.flow import FlowSigner, now_ms

    flow_id, begin = FlowSigner(FLOW_KEY).create(now_ms() - 10_000)
    start = begin + 1000
    events = [("flow.signin.engage", 100), ("flow.signin.submit", 200), ("screen.signin", 300)]
    return json.dumps(
        {
            "flowId": flow_id,
            "flowBeginTime": begin,
            "deviceId": "0f3a6c1e9b7d4e2a8c5b1d0e7f6a9b3c",
            "startTime": start,
            "flushTime": start + 5000,
            "duration": 5000,
            "service": "sync",
            "lang": "en-US",
            "uid": "none",
            "context": "web",
            "entrypoint": "firstrun",
            "events": [{"type": t, "offset": o} for t, o in events],
        }
    )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("router exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("router did not start")


def run_workers(duration_s: float, workers: int, connections: int = 64) -> dict[str, float]:
    """Requests/s of `POST /metrics` (3 events) with `workers` processes, measured by wrk.

    wrk runs one thread on the same 2 cores (no pinning: there is no spare core).
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (scripts/install-system-deps.sh wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "router.toml"
        config.write_text(
            f'[server]\nworker_dir = "{tmp}/workers"\n[flow]\nkey = "{FLOW_KEY}"\n'
            '[sinks.log]\npath = "/dev/null"\n'
        )
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [[{_body()}]]\n"
        )
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "router", "serve", "--config", str(config)]
        args += ["--port", str(port), "--workers", str(workers)]
        proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port, proc)
            time.sleep(1.0)  # let every worker finish booting
            out = subprocess.run(
                [wrk, "-t1", f"-c{connections}", f"-d{max(1, int(duration_s))}s", "-s", str(script)]
                + [f"http://127.0.0.1:{port}/metrics"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        f"workers{workers}.requests_per_s": rps,
        f"workers{workers}.events_per_s": rps * 3,
        f"workers{workers}.errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


async def _jetstream(duration_s: float) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from router.bus.forward import Forwarder
    from router.config import JetStreamSinkSettings
    from router.dispatch.deadletter import DeadLetters
    from router.records import AmplitudeEvent
    from router.sinks.jetstream import JetStreamSink
    from router.sinks.memory import MemorySink

    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = await asyncio.create_subprocess_exec(
            NATS, "-js", "-sd", tmp, "-a", "127.0.0.1", "-p", str(port),
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            conf = JetStreamSinkSettings(servers=[f"nats://127.0.0.1:{port}"], id_key=ID_KEY)
            for _ in range(100):
                try:
                    sink = JetStreamSink("jetstream", conf)
                    await sink.start()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("nats-server did not start")
            batch = 1000
            props = {"entrypoint": "firstrun", "service": "sync"}
            published = 0
            start = time.perf_counter()
            while time.perf_counter() - start < duration_s:
                records = [
                    AmplitudeEvent(
                        event_type="fxa_login - engage",
                        time=1_700_000_000_000 + published + i,
                        user_id=f"{published + i:032x}",
                        event_properties=props,
                    )
                    for i in range(batch)
                ]
                await sink.send(records)
                published += batch
            publish_s = time.perf_counter() - start
            await sink.aclose()

            memory = MemorySink("memory", keep=False)
            stop = asyncio.Event()
            deadletters = DeadLetters(os.path.join(tmp, "dead.jsonl"))
            forwarder = Forwarder(conf, "memory", memory, deadletters=deadletters)
            start = time.perf_counter()
            task = asyncio.create_task(forwarder.run(stop))
            await memory.wait_for(published, timeout=max(60.0, 10 * duration_s))
            forward_s = time.perf_counter() - start
            stop.set()
            await task
        finally:
            server.terminate()
            await server.wait()
    return {
        "jetstream.publish_events_per_s": published / publish_s,
        "jetstream.forward_events_per_s": published / forward_s,
        "jetstream.events": float(published),
    }


def run_jetstream(duration_s: float) -> dict[str, float]:
    """Events/s published by one JetStreamSink (batches of 1000), then drained by one forwarder."""
    return asyncio.run(_jetstream(duration_s))


def run(duration_s: float) -> dict[str, float]:
    results: dict[str, float] = {}
    results |= run_workers(duration_s, 1)
    results |= run_workers(duration_s, 2)
    results["workers2_over_1"] = (
        results["workers2.requests_per_s"] / results["workers1.requests_per_s"]
    )
    results |= run_jetstream(duration_s)
    return results


if __name__ == "__main__":
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    figures = run(duration)
    for name, value in figures.items():
        print(f"{name:36} {value:12.1f}")
    print(json.dumps(figures))
