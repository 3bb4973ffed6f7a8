"""The Avro schemas in `schemas/*.avsc`: loading, inlining shared named types, parsing.

A schema file may name a type defined in another file (the decision embeds the request).
The registry needs each subject's schema self-contained, so loading inlines the first use of
each foreign named type; everything else in the files (docs, defaults) is kept as written.

Every function takes the directory of the files: callers pass `settings.schema_dir`
(`GUARDSTREAM_SCHEMA_DIR`), so registration, checks and the workers' codec read the same
files.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _fullname(node: dict[str, Any], namespace: str | None) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    ns = node.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _collect(node: Any, namespace: str | None, out: dict[str, dict[str, Any]]) -> None:
    """Record every named type (record, enum, fixed) defined in a schema."""
    if isinstance(node, list):
        for item in node:
            _collect(item, namespace, out)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _fullname(node, namespace)
            out[full] = node
            namespace = full.rsplit(".", 1)[0] if "." in full else namespace
        for key in ("fields", "items", "values"):
            if key in node:
                _collect(node[key], namespace, out)
        if "type" in node and isinstance(node["type"], (dict, list)):
            _collect(node["type"], namespace, out)


def _inline(
    node: Any, namespace: str | None, known: dict[str, dict[str, Any]], defined: set[str]
) -> Any:
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = node if "." in node else (f"{namespace}.{node}" if namespace else node)
        if full in defined or full not in known:
            return node
        defined.add(full)
        target = json.loads(json.dumps(known[full]))
        target["name"] = full.rsplit(".", 1)[-1]
        target["namespace"] = full.rsplit(".", 1)[0]
        return _inline(target, namespace, known, defined)
    if isinstance(node, list):
        return [_inline(x, namespace, known, defined) for x in node]
    if isinstance(node, dict):
        out = dict(node)
        if node.get("type") in ("record", "error", "enum", "fixed"):
            full = _fullname(node, namespace)
            defined.add(full)
            namespace = full.rsplit(".", 1)[0] if "." in full else namespace
        if "fields" in out:
            out["fields"] = [
                {**f, "type": _inline(f["type"], namespace, known, defined)} for f in out["fields"]
            ]
        for key in ("items", "values"):
            if key in out:
                out[key] = _inline(out[key], namespace, known, defined)
        if isinstance(out.get("type"), (dict, list)):
            out["type"] = _inline(out["type"], namespace, known, defined)
        return out
    return node


def load_all(directory: Path) -> dict[str, dict[str, Any]]:
    """Every schema file in `directory` by stem (e.g. ``"request"``), self-contained."""
    raw: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.avsc")):
        try:
            raw[path.stem] = json.loads(path.read_text())
        except ValueError as exc:
            from guardstream.errors import GuardstreamError

            raise GuardstreamError(f"{path} is not valid JSON: {exc}", "fix the file") from exc
    known: dict[str, dict[str, Any]] = {}
    for schema in raw.values():
        _collect(schema, None, known)
    return {stem: _inline(schema, None, known, set()) for stem, schema in raw.items()}


@cache
def reader_schema(stem: str, directory: Path) -> Any:
    """The current (reader) schema of a file in `directory`, parsed for fastavro."""
    return fastavro.parse_schema(load_all(directory)[stem])


def schema_text(stem: str, directory: Path) -> str:
    """The schema text registered for a file in `directory`.

    A self-contained file is registered as written (surrounding white space stripped): that
    is exactly what a stock client sends (confluent-kafka's `AvroSerializer` given
    `open(path).read()`), and the registry finds a schema by its text unless asked to
    normalise, so any other spelling would make the client's lookup fail with 40403. A file
    that names types from other files is registered inlined, in compact JSON.
    """
    raw = (directory / f"{stem}.avsc").read_text()
    inlined = load_all(directory)[stem]
    if json.loads(raw) == inlined:
        return raw.strip()
    return json.dumps(inlined, separators=(",", ":"))
