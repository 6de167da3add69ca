"""Scenario 7: the mixed load generator against a local router, reporting statuses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..loadgen import run_load
from ..procs import free_port, placement, router_server
from ..results import ScenarioResult
from . import TITLES, scenario_main
from ._http import router_config

RATE = 2000


def run(duration: float, smoke: bool) -> ScenarioResult:
    server_cpu, load_cpu = placement()
    rate = 200 if smoke else RATE
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        directory = Path(tmp)
        config = router_config(directory, directory / "router.log")
        port = free_port()
        with router_server(config, port, server_cpu):
            if load_cpu is not None:
                os.sched_setaffinity(0, {load_cpu})
            fig = run_load(f"http://127.0.0.1:{port}", rate, duration)
    return ScenarioResult(
        scenario="load",
        title=TITLES["load"],
        rows=[fig],
        notes=[
            f"asked for {rate} req/s for {duration} s; statuses {fig.statuses}",
            "the generator (aiohttp client, one process) is pinned to the CPU the router"
            " does not use",
        ],
    )


if __name__ == "__main__":
    scenario_main(run)
