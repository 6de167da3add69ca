"""The compose test's checks, against a running topology (scripts/compose-test.sh).

    python -m tests.compose.check ROUTER_URL FAKES_URL -- COMPOSE_COMMAND...

README's first example through the published router port; a burst of flows; the
amplitude forwarder SIGKILLed while it holds messages and started again; every
Amplitude event at the fake exactly once (by insert_id) and every service healthy.
Standard library only, so any python3 on the host runs it. Prints the figures that
docs/scaling.md quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

FLOWS = 150  # after the README's example; 2 Amplitude events each
DEADLINE = 180.0


def http(method: str, url: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "compose-test/1.0 (X11; Linux x86_64; rv:120.0) Firefox/120.0")
    with urllib.request.urlopen(request, timeout=10) as resp:
        text = resp.read().decode()
    return json.loads(text) if text else None


FLOW_QUERY = "entrypoint=firstrun&utm_source=blog"


def readme_body(flow: dict[str, Any]) -> dict[str, Any]:
    """The body README "First example" posts for a flow from `GET /metrics-flow`."""
    begin, now = flow["flowBeginTime"], int(time.time() * 1000)
    return {
        "flowId": flow["flowId"],
        "flowBeginTime": begin,
        "deviceId": flow["deviceId"],
        "startTime": begin,
        "flushTime": now,
        "duration": now - begin,
        "service": "sync",
        "lang": "en-US",
        "uid": "none",
        "entrypoint": "firstrun",
        "utm_source": "blog",
        "events": [
            {"type": "screen.signin", "offset": 0},
            {"type": "flow.signin.submit", "offset": now - begin},
        ],
    }


def readme_example(router: str) -> str:
    """README "First example": a flow, then its two events; returns the flow id."""
    flow = http("GET", f"{router}/metrics-flow?{FLOW_QUERY}")
    answer = http("POST", f"{router}/metrics", readme_body(flow))
    assert answer == {"success": True}, answer
    return str(flow["flowId"])


def wait(what: str, ready: Callable[[], bool], timeout: float = DEADLINE) -> float:
    """Poll `ready` (a remote state: nothing here to wait on) until true; seconds taken."""
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def compose(command: Sequence[str], *args: str) -> str:
    """A docker-compose command's standard output (its progress lines go to stderr)."""
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=True)
    return done.stdout


def health(command: Sequence[str]) -> dict[str, str]:
    """Every service's container health, by service name."""
    ids = compose(command, "ps", "-q").split()
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{index .Config.Labels "com.docker.compose.service"}} '
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
            *ids,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def main(argv: Sequence[str]) -> int:
    router, fakes, sep, *command = argv
    assert sep == "--" and command, __doc__

    def state() -> dict[str, Any]:
        answer: dict[str, Any] = http("GET", f"{fakes}/_state")
        return answer

    figures: dict[str, Any] = {}

    # The image's /app/version.json, written from the VERSION_COMMIT build argument.
    version = http("GET", f"{router}/__version__")
    assert version["commit"] == os.environ.get("EXPECT_COMMIT", version["commit"]), version
    figures["version"] = version

    flow_id = readme_example(router)
    figures["readme_example_delivered_s"] = round(
        wait(
            "the README example at the fake Amplitude",
            lambda: {"fxa_login - view", "fxa_login - submit"} <= set(state()["event_types"]),
        ),
        1,
    )
    logs = compose(command, "logs", "--no-color", "router")
    lines = [line for line in logs.splitlines() if flow_id in line]
    assert any('"Type":"flowEvent"' in x for x in lines), "no flowEvent line for the flow"
    assert any('"Type":"amplitudeEvent"' in x for x in lines), "no amplitudeEvent line"

    expected = 2 * (FLOWS + 1)
    for _ in range(FLOWS):
        readme_example(router)
    # Kill the forwarder while it delivers: some of the burst arrived, not all of it,
    # and a batch of it is at the fake, unanswered, so unacknowledged.
    (forwarder,) = compose(command, "ps", "-q", "forward-amplitude").split()
    wait(
        "a delivery under way",
        lambda: len((now := state())["ingested"]) > 10 and now["in_flight"] > 0,
    )
    before = len(state()["ingested"])
    # docker, not docker-compose: it takes a fraction of the time to start.
    subprocess.run(
        ["docker", "kill", "--signal", "KILL", forwarder], check=True, capture_output=True
    )
    at_kill = len(state()["ingested"])
    assert at_kill < expected, f"the burst was over ({at_kill}) before the kill"
    figures["delivered_when_killed"] = f"{before}..{at_kill} of {expected}"
    compose(command, "up", "-d", "--no-deps", "forward-amplitude")
    figures["all_delivered_after_restart_s"] = round(
        wait("every event at the fake", lambda: len(state()["ingested"]) >= expected), 1
    )
    final = state()
    assert len(final["ingested"]) == expected, final
    assert all(s == 200 for s in final["statuses"]), final["statuses"]
    figures["amplitude_events"] = expected
    figures["redelivered_duplicates"] = final["received"] - expected

    figures["all_healthy_s"] = round(
        wait("every service healthy", lambda: set(health(command).values()) == {"healthy"}), 1
    )
    figures["services"] = sorted(health(command))
    stats = compose(
        command,
        "exec",
        "-T",
        "forward-amplitude",
        "python",
        "-c",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8081/__stats__').read().decode())",
    )
    delivered = [x for x in stats.splitlines() if x.startswith("metrics_router_forward_delivered")]
    assert delivered, stats
    figures["restarted_forwarder_stats"] = delivered
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
