"""Schema files, inlining of shared types, and naming incompatible fields."""

from __future__ import annotations

import copy
import json
from typing import Any

import fastavro

from guardstream.serde import compat, schemas
from guardstream.streams.topics import Topic
from tests import SCHEMA_DIR


def test_every_topic_schema_exists_and_parses() -> None:
    loaded = schemas.load_all(SCHEMA_DIR)
    for topic in Topic:
        if topic.schema is not None:
            fastavro.parse_schema(loaded[topic.schema])


def test_decision_inlines_the_request_type_once() -> None:
    text = schemas.schema_text("decision", SCHEMA_DIR)
    assert text.count('"name":"Request"') == 1
    # Self-contained: parses with no other schema known.
    fastavro.parse_schema(json.loads(text), named_schemas={})


def _request() -> dict[str, Any]:
    return copy.deepcopy(schemas.load_all(SCHEMA_DIR)["request"])


def test_new_field_without_default_is_named() -> None:
    new = _request()
    new["fields"].append({"name": "region", "type": "string"})
    problems = compat.explain("BACKWARD", new, _request())
    assert problems == ["old data unreadable: region: new field without a default"]


def test_new_field_with_default_is_fine() -> None:
    new = _request()
    new["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    assert compat.explain("BACKWARD", new, _request()) == []


def test_type_change_is_named_and_promotion_allowed() -> None:
    new = _request()
    for f in new["fields"]:
        if f["name"] == "max_tokens":
            f["type"] = "boolean"
    assert compat.explain("BACKWARD", new, _request()) == [
        "old data unreadable: max_tokens: type changed from int to boolean"
    ]
    for f in new["fields"]:
        if f["name"] == "max_tokens":
            f["type"] = "long"
    assert compat.explain("BACKWARD", new, _request()) == []


def test_nested_field_path_and_forward_rule() -> None:
    new = _request()
    new["fields"][2]["type"]["items"]["fields"].append({"name": "name", "type": "string"})
    assert compat.explain("BACKWARD", new, _request()) == [
        "old data unreadable: messages[].name: new field without a default"
    ]
    # Removing a field without default breaks old readers (FORWARD), not new ones.
    removed = _request()
    removed["fields"] = [f for f in removed["fields"] if f["name"] != "model"]
    assert compat.explain("BACKWARD", removed, _request()) == []
    assert compat.explain("FORWARD", removed, _request()) == [
        "new data unreadable by old readers: model: new field without a default"
    ]
