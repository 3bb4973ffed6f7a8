"""Every registry client sends the basic auth of `GUARDSTREAM_REGISTRY_USERNAME`/`_PASSWORD`.

A tiny HTTP server on loopback records the `Authorization` header of each request, so what
is checked is what goes over the wire, for each kind of client guardstream has: the adapter
the workers and tools use, the serializer `guardstream produce` uses, and the stack's health
check (httpx).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from guardstream.config.settings import Settings
from guardstream.serde.registry import Registry
from guardstream.stack.services import registry_ready
from guardstream.streams.clients import registry_auth, registry_config

SCHEMA = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps({"schema": SCHEMA} if "/schemas/ids/" in self.path else []).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _Recorder.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/apis/ccompat/v7"
    server.shutdown()
    server.server_close()


def _settings(url: str, **kw: object) -> Settings:
    return Settings(_env_file=None, registry_url=url, **kw)  # type: ignore[arg-type,call-arg]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_every_registry_client_sends_the_configured_basic_auth(registry_url: str) -> None:
    settings = _settings(registry_url, registry_username="ops", registry_password="s3cr3t")
    registry = Registry(settings)
    registry.writer_schema(1)
    registry.close()
    SchemaRegistryClient(registry_config(settings)).get_schema(2)  # what `produce` builds
    assert registry_ready(settings)
    assert _Recorder.seen == [_basic("ops", "s3cr3t")] * 3


def test_no_credentials_no_header(registry_url: str) -> None:
    settings = _settings(registry_url)
    assert registry_auth(settings) is None
    Registry(settings).writer_schema(1)
    assert registry_ready(settings)
    assert _Recorder.seen == [None, None]


def test_the_password_is_masked_in_a_printed_config() -> None:
    conf = registry_config(
        _settings("http://r:8081", registry_username="ops", registry_password="s3cr3t")
    )
    assert "s3cr3t" not in repr(conf) and "s3cr3t" not in str(conf)


def test_username_and_password_go_together() -> None:
    with pytest.raises(ValueError, match="GUARDSTREAM_REGISTRY_PASSWORD"):
        _settings("http://r:8081", registry_username="ops")
