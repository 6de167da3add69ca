"""The router as a child process whose `[sinks.memory]` is an HttpPostSink.

`python -m tests.support.sinkproc serve --config FILE`; the destination URL comes from
the environment variable SPOOL_TEST_SINK_URL.
"""

from __future__ import annotations

import os
import sys

from router.cli import main
from router.config import Settings, SinkSettings
from router.dispatch.deadletter import DeadLetters
from router.sinks import FACTORIES, Sink

from .destinations import FlowPostSink


def _http(name: str, conf: SinkSettings, settings: Settings, deadletters: DeadLetters) -> Sink:
    return FlowPostSink(name, os.environ["SPOOL_TEST_SINK_URL"])


if __name__ == "__main__":
    sys.exit(main(sink_factories={**FACTORIES, "memory": _http}))
