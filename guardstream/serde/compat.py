"""Naming the field that makes a schema change incompatible.

The registry is the judge of compatibility (its rule, its verdict); Apicurio's verdict names
no field, so when it says "incompatible", this walks the two schemas with Avro's resolution
rules to say which field and why.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}


def _kind(t: Any) -> str:
    if isinstance(t, list):
        return "union"
    if isinstance(t, dict):
        return str(t.get("type"))
    return str(t)


def _name(t: Any) -> str | None:
    return str(t.get("name")).rsplit(".", 1)[-1] if isinstance(t, dict) and "name" in t else None


def _index(t: Any, named: dict[str, Any]) -> Any:
    """Resolve a reference by name to its definition seen earlier in the same schema."""
    if isinstance(t, str) and t.rsplit(".", 1)[-1] in named:
        return named[t.rsplit(".", 1)[-1]]
    if isinstance(t, dict) and t.get("type") in ("record", "enum", "fixed"):
        named[str(t["name"]).rsplit(".", 1)[-1]] = t
    return t


def reader_problems(
    reader: Any,
    writer: Any,
    path: str = "",
    rn: dict[str, Any] | None = None,
    wn: dict[str, Any] | None = None,
) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (empty when it can)."""
    rn = {} if rn is None else rn
    wn = {} if wn is None else wn
    reader, writer = _index(reader, rn), _index(writer, wn)
    rk, wk = _kind(reader), _kind(writer)
    where = path or "<root>"
    if wk == "union":
        out: list[str] = []
        for branch in writer:
            out += reader_problems(reader, branch, path, rn, wn)
        return out
    if rk == "union":
        for branch in reader:
            if not reader_problems(branch, writer, path, dict(rn), dict(wn)):
                return []
        return [
            f"{where}: the new type {_short(reader)} has no branch for the old {_short(writer)}"
        ]
    if rk != wk:
        if (wk, rk) in _PROMOTIONS:
            return []
        return [f"{where}: type changed from {_short(writer)} to {_short(reader)}"]
    if rk == "record":
        problems: list[str] = []
        wfields = {f["name"]: f for f in writer.get("fields", [])}
        for f in reader.get("fields", []):
            names = [f["name"], *f.get("aliases", [])]
            old = next((wfields[n] for n in names if n in wfields), None)
            fpath = f"{path}.{f['name']}" if path else f["name"]
            if old is None:
                if "default" not in f:
                    problems.append(f"{fpath}: new field without a default")
                continue
            problems += reader_problems(f["type"], old["type"], fpath, rn, wn)
        return problems
    if rk == "enum":
        missing = set(writer.get("symbols", [])) - set(reader.get("symbols", []))
        if missing and "default" not in reader:
            return [f"{where}: enum symbols removed: {', '.join(sorted(missing))}"]
        return []
    if rk == "array":
        return reader_problems(reader["items"], writer["items"], f"{path}[]", rn, wn)
    if rk == "map":
        return reader_problems(reader["values"], writer["values"], f"{path}{{}}", rn, wn)
    if rk == "fixed" and reader.get("size") != writer.get("size"):
        return [f"{where}: fixed size changed from {writer.get('size')} to {reader.get('size')}"]
    return []


def explain(level: str, new: Any, old: Any) -> list[str]:
    """The problems a compatibility level finds between the new and the latest schema."""
    level = level.upper().removesuffix("_TRANSITIVE")
    out: list[str] = []
    if level in ("BACKWARD", "FULL"):
        out += [f"old data unreadable: {p}" for p in reader_problems(new, old)]
    if level in ("FORWARD", "FULL"):
        out += [f"new data unreadable by old readers: {p}" for p in reader_problems(old, new)]
    return out


def _short(t: Any) -> str:
    if isinstance(t, list):
        return "[" + ", ".join(_short(x) for x in t) + "]"
    if isinstance(t, dict):
        return _name(t) or str(t.get("type"))
    return str(t)
