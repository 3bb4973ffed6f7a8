"""A minimal stateful Faust agent: what any Faust pipeline costs, for `guardstream bench compare`.

Configured like guardstream's worker (same broker options, RocksDB store, raw serializers,
partitions, linger and fetch sizes); its one agent, per request: decodes the Confluent-framed
Avro value (fastavro, schemaless), adds one to a per-tenant counter in a RocksDB table, and
sends one small record to the output topic. Nothing else: no guardrails, no registry, no
metering.

``python -m guardstream.ops.minimal_agent OUTPUT_TOPIC WEB_PORT`` runs it until killed, with
`Settings` from the environment (topic prefix, app id, state directory).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import faust

from guardstream.app import faust_options
from guardstream.config.settings import Settings, get_settings
from guardstream.serde.avro import decode_body, split_frame
from guardstream.serde.schemas import reader_schema
from guardstream.streams.topics import Topic


def create_app(settings: Settings, output: str, web_port: int) -> faust.App:
    """The minimal app: one agent from the requests topic to `output`, one table."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **faust_options(settings),
        web_port=web_port,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
    )
    schema = reader_schema("request", settings.schema_dir)
    source = app.topic(settings.topic(Topic.REQUESTS), key_type=bytes, value_type=bytes)
    sink = app.topic(output, key_type=bytes, value_type=bytes)
    counts = app.Table(
        "tenant-counts",
        partitions=settings.default_partitions,
        key_type=bytes,
        value_type=bytes,
    )

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            _, body = split_frame(event.value)
            request = decode_body(body, schema, schema)
            tenant = request["tenant_id"] or ""
            key = tenant.encode()
            n = int.from_bytes(counts.get(key, b"")) + 1
            counts[key] = n.to_bytes(8)
            headers = dict(event.headers or {})
            ce_id = headers.get("ce_id", b"")
            value = json.dumps({"id": bytes(ce_id).decode(), "tenant": tenant, "count": n}).encode()
            await sink.send(key=key, value=value)

    return app


def main(argv: list[str]) -> None:
    """Run the minimal agent's worker until killed."""
    output, web_port = argv
    app = create_app(get_settings(), output, int(web_port))
    faust.Worker(app, loglevel="warning").execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
