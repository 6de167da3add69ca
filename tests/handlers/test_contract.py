"""schemathesis holds a live router to its OpenAPI document (`/__openapi__`).

Loopback only, a bounded number of examples per operation and a fixed seed. Every
response must match the document (status, content type, headers, schema), no 5xx,
schema-violating input must be refused, and every 4xx must be a JSON error naming
the field (`tests/support/contract_hooks.py`). Not checked: that every schema-valid request
is accepted (positive_data_acceptance): `POST /metrics` also checks ranges across
fields, and the sidecar checks event names against the registry, neither of which a
JSON Schema can say.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from router.watching.openapi import document

from ..conftest import FLOW_KEY
from ..support.process import RouterProcess

HERE = Path(__file__).resolve().parent
EXAMPLES = 30
SEED = 20261201


@pytest.mark.slow
async def test_the_router_keeps_its_openapi_contract(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text(
        f'[flow]\nkey = "{FLOW_KEY}"\nallowed_origins = ["https://accounts.example.com"]\n'
        f'[sidecar]\ntoken = "sidecar-token"\n[admin]\ntoken = "admin-token"\n'
        f'[sinks.log]\npath = "{tmp_path / "events.log"}"\n'
        f'[spool]\npath = "{tmp_path / "spool"}"\n'
    )
    async with RouterProcess(config) as router:
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.support.contract_hooks",
            "PYTHONPATH": str(HERE.parents[1]),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from schemathesis.cli import schemathesis; schemathesis()",
            "--no-color",
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{router.url}/__openapi__",
            "--url",
            router.url,
            # The sidecar's token; /__tap__ (a stream without end) then answers 401.
            "--header",
            "Authorization: Bearer sidecar-token",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report-dir",
            str(tmp_path / "report"),
            cwd=tmp_path,  # its cache directory goes there
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(600):
            out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text
        # Every documented operation was exercised but the document's own, which
        # schemathesis leaves out of a document it loads from a URL.
        operations = sum(len(ops) for ops in document()["paths"].values()) - 1
        tested = re.search(r"Tested: (\d+)", text)
        assert tested is not None and int(tested[1]) == operations, text
        assert router.proc is not None and router.proc.returncode is None, "router died"
