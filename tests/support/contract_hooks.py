"""Schemathesis checks of our own, loaded by `tests/handlers/test_contract.py`."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.check
def errors_name_the_field(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is a JSON error; a refusal of what was sent names the field path."""
    if not 400 <= response.status_code < 500:
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict), f"4xx body is not a JSON object: {body!r}"
    assert body.get("statusCode") == response.status_code, f"statusCode mismatch: {body!r}"
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    if response.status_code in (400, 401, 403, 413):
        keys = (body.get("validation") or {}).get("keys")
        assert keys and all(k.startswith("$") for k in keys), f"no field path named: {body!r}"
    return True
