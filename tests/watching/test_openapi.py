"""The OpenAPI document: generated from the Structs, served, written to docs/ without drift."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import msgspec
import pytest

from router.cli import main
from router.events import EVENT_TYPE, FlowQuery, MetricsBody, _checked_fields
from router.handlers.common import UNMATCHED
from router.watching.openapi import document, document_bytes, ecma_pattern

from ..conftest import Client

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_docs_openapi_json_is_the_generated_document() -> None:
    # Fails when a Struct or an endpoint changed and `metrics-router openapi -o
    # docs/openapi.json` was not run.
    assert DOCS.read_bytes() == document_bytes()


def test_the_command_writes_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "openapi.json"
    assert main(["openapi", "--output", str(out)]) == 0
    assert out.read_bytes() == document_bytes()
    assert main(["openapi"]) == 0
    assert capsys.readouterr().out.encode() == document_bytes()


async def test_the_router_serves_the_document(client: Client) -> None:
    resp = await client.get("/__openapi__")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.read() == await asyncio.to_thread(DOCS.read_bytes)


def test_every_route_is_documented(client: Client) -> None:
    routes = {
        (r.resource.canonical, r.method.lower())
        for r in client.app.router.routes()
        if r.resource is not None and r.method != "HEAD" and r.name != UNMATCHED
    }
    documented = {(path, method) for path, ops in document()["paths"].items() for method in ops}
    assert routes == documented


def test_request_schemas_carry_every_validated_pattern() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    for name, checked in _checked_fields(MetricsBody):
        branches = schemas["MetricsBody"]["properties"][name]["anyOf"]
        assert {"type": "string"} | {"pattern": ecma_pattern(checked.pattern)} in [
            {k: v for k, v in b.items() if k in ("type", "pattern")} for b in branches
        ], name
    assert schemas["Event"]["properties"]["type"]["pattern"] == ecma_pattern(EVENT_TYPE.pattern)
    params = {p["name"] for p in doc["paths"]["/metrics-flow"]["get"]["parameters"]}
    assert set(FlowQuery.__struct_fields__) <= params


@pytest.mark.parametrize(
    ("value", "ok"), [("firstrun", True), ("fïrstrun", False), ("firstrun\n", False)]
)
def test_patterns_mean_what_fxa_javascript_regexes_mean(value: str, ok: bool) -> None:
    # FxA's validation (fxa-content-server server/lib/validation.js) uses JavaScript
    # regexes: ASCII \w, and `$` only at the very end. The document's pattern (ECMA) and
    # the router's (Python) must agree on what they accept.
    entrypoint = document()["paths"]["/metrics-flow"]["get"]["parameters"][0]
    assert entrypoint["name"] == "entrypoint"
    js = entrypoint["schema"]["pattern"]
    assert bool(re.fullmatch(js.removeprefix("^").removesuffix("$"), value, re.ASCII)) is ok
    try:
        msgspec.convert({"entrypoint": value}, FlowQuery)
    except msgspec.ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted is ok
    assert json.loads(document_bytes())["openapi"] == "3.1.0"
