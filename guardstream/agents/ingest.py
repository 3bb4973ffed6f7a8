"""The ingest stage: every ingress request ends on admitted, rejected or deadletter."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from guardstream.admission import STAGE, RawRecord, judge
from guardstream.app import Context
from guardstream.decisions import Ingress
from guardstream.metrics import record_outcome
from guardstream.streams.avro import FramingError, split_frame
from guardstream.streams.registry import RegistryUnavailable, SchemaUnknown

log = logging.getLogger(__name__)
_MAX_BACKOFF_S = 10.0


async def _warm_writer_schema(ctx: Context, value: bytes | None) -> None:
    """Fetch the record's writer schema off the event loop, retrying while the registry is
    unreachable: records are never rejected for the registry's fault, the lag grows instead."""
    try:
        schema_id, _ = split_frame(value)
    except FramingError:
        return  # judge() will route it
    if ctx.codec.cached(schema_id):
        return
    loop = asyncio.get_running_loop()
    delay = 0.2
    while True:
        try:
            await loop.run_in_executor(None, ctx.codec.registry.writer_schema, schema_id)
            return
        except SchemaUnknown:
            return  # judge() will route it
        except RegistryUnavailable as exc:
            log.warning("registry unavailable, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)


def register(app: faust.App, ctx: Context) -> None:
    """Define the ingest agent on the app."""
    settings = ctx.settings
    source = app.topic(settings.topic("requests"))
    outputs = {
        name: app.topic(settings.topic(name)) for name in ("admitted", "rejected", "deadletter")
    }

    @app.agent(source, name="guardstream.ingest")
    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            started = time.perf_counter()
            rec = RawRecord(
                ingress=Ingress(msg.topic, msg.partition, msg.offset, round(msg.timestamp * 1000)),
                key=msg.key,
                value=msg.value,
                headers=list(msg.headers or []),
            )
            await _warm_writer_schema(ctx, rec.value)
            while True:
                try:
                    out = judge(ctx.codec, rec, settings.max_record_bytes)
                    break
                except RegistryUnavailable:  # evicted between warm-up and use: retry
                    await _warm_writer_schema(ctx, rec.value)
            await outputs[out.topic].send(key=out.key, value=out.value, headers=out.headers)
            record_outcome(STAGE, out.topic, out.code, started, rec.ingress.timestamp_ms)
