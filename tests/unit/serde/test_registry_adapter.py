"""The registry adapter turns the client's answers into guardstream's errors.

A scripted HTTP server on a loopback port plays the registry, so the whole path runs:
confluent-kafka's `SchemaRegistryClient`, its HTTP transport, and the adapter's mapping.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.serde.registry import Registry, RegistryUnavailable, SchemaUnknown

AVRO = json.dumps({"type": "record", "name": "P", "fields": [{"name": "a", "type": "int"}]})


@dataclass
class Answer:
    status: int
    body: Any = None
    delay_s: float = 0.0


@dataclass
class Script:
    """Answers by (method, path); the last answer for a path repeats. Records every call."""

    answers: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    url: str = ""

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[(method, path)] = list(answers)

    def answer(self, method: str, path: str) -> Answer:
        queue = self.answers.get((method, path))
        if not queue:
            return Answer(404, {"error_code": 404, "message": f"HTTP 404 {path}"})
        return queue.pop(0) if len(queue) > 1 else queue[0]


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path.removeprefix("/apis/ccompat/v7")
            script.calls.append((self.command, path, json.loads(raw) if raw else None))
            a = script.answer(self.command, path)
            if a.delay_s:
                time.sleep(a.delay_s)
            payload = b"" if a.body is None else json.dumps(a.body).encode()
            self.send_response(a.status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def script() -> Iterator[Script]:
    s = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(s))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    s.url = f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7"
    try:
        yield s
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def registry(script: Script) -> Iterator[Registry]:
    r = Registry(Settings(registry_url=script.url, registry_timeout_s=0.5))
    try:
        yield r
    finally:
        r.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- writer schemas by id (the hot path) ---------------------------------------------------


def test_a_known_id_is_fetched_once_then_served_from_the_cache(
    script: Script, registry: Registry
) -> None:
    script.on("GET", "/schemas/ids/7", Answer(200, {"schema": AVRO}))
    first = registry.writer_schema(7)
    assert registry.writer_schema(7) is first
    assert registry.is_cached(7)
    assert (registry.misses, registry.hits) == (1, 1)
    assert [c[:2] for c in script.calls] == [("GET", "/schemas/ids/7")]


def test_an_unknown_id_is_schema_unknown_and_is_asked_again_next_time(
    script: Script, registry: Registry
) -> None:
    script.on(
        "GET",
        "/schemas/ids/7",
        Answer(404, {"error_code": 40403, "message": "No content with ID '7' was found."}),
        Answer(200, {"schema": AVRO}),
    )
    with pytest.raises(SchemaUnknown, match=r"^schema id 7 is not in the registry$"):
        registry.writer_schema(7)
    assert not registry.is_cached(7)
    registry.writer_schema(7)  # registered meanwhile: replayable
    assert registry.is_cached(7)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_unavailable_and_not_retried_inside_the_client(
    script: Script, registry: Registry, status: int
) -> None:
    script.on("GET", "/schemas/ids/7", Answer(status, {"error_code": status, "message": "down"}))
    with pytest.raises(RegistryUnavailable, match=rf"registry at .* answered {status}$"):
        registry.writer_schema(7)
    assert len(script.calls) == 1  # the worker's gate owns retries and backoff


def test_another_client_error_on_an_id_is_unavailable_not_unknown(
    script: Script, registry: Registry
) -> None:
    script.on("GET", "/schemas/ids/7", Answer(401, {"error_code": 401, "message": "no"}))
    with pytest.raises(RegistryUnavailable, match=r"^GET /schemas/ids/7 answered 401$"):
        registry.writer_schema(7)


def test_a_schema_that_is_not_avro_is_unknown(script: Script, registry: Registry) -> None:
    script.on("GET", "/schemas/ids/7", Answer(200, {"schema": "syntax = 1", "schemaType": "JSON"}))
    script.on("GET", "/schemas/ids/8", Answer(200, {"schema": '{"type": "nope"}'}))
    with pytest.raises(SchemaUnknown, match=r"^schema id 7 is JSON, not Avro$"):
        registry.writer_schema(7)
    with pytest.raises(SchemaUnknown, match=r"^schema id 8 does not parse as Avro"):
        registry.writer_schema(8)


def test_a_refused_connection_is_unavailable() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/apis/ccompat/v7"
    registry = Registry(Settings(registry_url=url))
    try:
        for call in (
            lambda: registry.writer_schema(1),
            lambda: registry.lookup("s", AVRO),
            lambda: registry.register("s", AVRO),
            lambda: registry.check("s", AVRO),
            lambda: registry.latest("s"),
            lambda: registry.set_compatibility("BACKWARD"),
        ):
            with pytest.raises(RegistryUnavailable, match=rf"^registry at {url} unreachable: "):
                call()
    finally:
        registry.close()


def test_a_registry_slower_than_the_timeout_is_unavailable(
    script: Script, registry: Registry
) -> None:
    script.on("GET", "/schemas/ids/7", Answer(200, {"schema": AVRO}, delay_s=2.0))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        registry.writer_schema(7)
    assert time.monotonic() - started < 1.5  # the 0.5 s timeout, once (no retries)


# --- tools: register, lookup, rules, checks ------------------------------------------------


def test_register_returns_the_id_and_words_a_refusal_for_people(
    script: Script, registry: Registry
) -> None:
    script.on("POST", "/subjects/ok/versions", Answer(200, {"id": 42}))
    assert registry.register("ok", AVRO) == 42
    assert script.calls[-1][2]["schema"] == AVRO

    script.on("POST", "/subjects/bad/versions", Answer(409, {"error_code": 409, "message": "b"}))
    with pytest.raises(GuardstreamError) as refused:
        registry.register("bad", AVRO)
    assert refused.value.cause == "the registry refused bad: b"
    assert "new fields need defaults" in refused.value.fix

    script.on("POST", "/subjects/odd/versions", Answer(422, {"error_code": 42201, "message": "x"}))
    with pytest.raises(GuardstreamError) as failed:
        registry.register("odd", AVRO)
    assert failed.value.cause == "registering odd failed (422): x"

    script.on("POST", "/subjects/down/versions", Answer(503, {"error_code": 503, "message": "x"}))
    with pytest.raises(RegistryUnavailable):
        registry.register("down", AVRO)


def test_lookup_is_none_for_a_missing_subject_or_schema(script: Script, registry: Registry) -> None:
    script.on("POST", "/subjects/nosubject", Answer(404, {"error_code": 40401, "message": "no"}))
    script.on("POST", "/subjects/noschema", Answer(404, {"error_code": 40403, "message": "no"}))
    script.on("POST", "/subjects/there", Answer(200, {"id": 5, "subject": "there", "version": 1}))
    script.on("POST", "/subjects/broken", Answer(400, {"error_code": 400, "message": "no"}))
    assert registry.lookup("nosubject", AVRO) is None
    assert registry.lookup("noschema", AVRO) is None
    assert registry.lookup("there", AVRO) == 5
    with pytest.raises(RegistryUnavailable, match=r"^lookup of broken answered 400$"):
        registry.lookup("broken", AVRO)


def test_set_compatibility_globally_and_per_subject(script: Script, registry: Registry) -> None:
    script.on("PUT", "/config", Answer(200, {"compatibility": "BACKWARD"}))
    script.on("PUT", "/config/s", Answer(200, {"compatibility": "FULL"}))
    registry.set_compatibility("BACKWARD")
    registry.set_compatibility("FULL", "s")
    assert [(m, p, b) for m, p, b in script.calls] == [
        ("PUT", "/config", {"compatibility": "BACKWARD"}),
        ("PUT", "/config/s", {"compatibility": "FULL"}),
    ]
    script.on("PUT", "/config", Answer(422, {"error_code": 42203, "message": "Invalid level"}))
    with pytest.raises(GuardstreamError) as bad:
        registry.set_compatibility("SIDEWAYS")
    assert bad.value.cause.startswith("setting compatibility SIDEWAYS failed (422): Invalid")


def test_check_keeps_the_registrys_messages_and_spots_a_new_subject(
    script: Script, registry: Registry
) -> None:
    path = "/compatibility/subjects/{}/versions/latest"
    script.on("POST", path.format("new"), Answer(404, {"error_code": 40401, "message": "no"}))
    script.on(
        "POST",
        path.format("old"),
        Answer(200, {"is_compatible": False, "messages": ["READER_FIELD_MISSING_DEFAULT_VALUE"]}),
    )
    script.on("POST", path.format("fine"), Answer(200, {"is_compatible": True}))
    script.on("POST", path.format("odd"), Answer(422, {"error_code": 42201, "message": "bad"}))

    new = registry.check("new", AVRO)
    assert (new.compatible, new.new_subject) == (True, True)
    old = registry.check("old", AVRO)
    assert (old.compatible, old.new_subject) == (False, False)
    assert old.messages == ("READER_FIELD_MISSING_DEFAULT_VALUE",)
    assert registry.check("fine", AVRO).compatible
    with pytest.raises(GuardstreamError) as failed:
        registry.check("odd", AVRO)
    assert failed.value.cause == "compatibility check of odd failed (422): bad"


def test_latest_is_none_for_a_new_subject_and_never_stale(
    script: Script, registry: Registry
) -> None:
    v2 = AVRO.replace('"P"', '"Q"')
    script.on("GET", "/subjects/new/versions/latest", Answer(404, {"error_code": 40401}))
    script.on(
        "GET",
        "/subjects/s/versions/latest",
        Answer(200, {"subject": "s", "version": 1, "id": 1, "schema": AVRO}),
        Answer(200, {"subject": "s", "version": 2, "id": 2, "schema": v2}),
    )
    assert registry.latest("new") is None
    assert registry.latest("s") == AVRO
    assert registry.latest("s") == v2  # a version registered meanwhile is seen
