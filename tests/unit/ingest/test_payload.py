"""Payload rules name the offending field."""

from __future__ import annotations

from typing import Any

import pytest

from guardstream.ingest.payload import PayloadProblem, validate_request
from guardstream.records import request_data


def _req(**changes: Any) -> dict[str, Any]:
    base = request_data("acme", [{"role": "user", "content": "hello"}], max_tokens=64)
    return {**base, **changes}


def test_valid_request_passes() -> None:
    assert validate_request(_req()).tenant_id == "acme"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tenant_id": "Not Valid!"}, "tenant_id"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3.5}, "temperature"),
        ({"metadata": {f"k{i}": "v" for i in range(100)}}, "metadata"),
    ],
)
def test_violations_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadProblem) as info:
        validate_request(_req(**changes))
    assert field in [f for f, _ in info.value.problems]
