"""`metrics-router forward` with the test HTTP destination behind the name "memory".

Run as a child process: `python -m tests.support.forward_http --config FILE` with
FORWARD_TEST_URL set. It goes through the real CLI; only the factory differs.
"""

from __future__ import annotations

import os
import sys

from router.cli import main
from router.config import Settings, SinkSettings
from router.dispatch.deadletter import DeadLetters
from router.sinks import FACTORIES, Sink

from .destinations import HttpPostSink


def _factory(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    return HttpPostSink(name, os.environ["FORWARD_TEST_URL"])


if __name__ == "__main__":
    argv = ["forward", "--destination", "memory", *sys.argv[1:]]
    sys.exit(main(argv, sink_factories={**FACTORIES, "memory": _factory}))
