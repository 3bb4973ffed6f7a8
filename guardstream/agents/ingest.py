"""The ingest stage: every request and usage report ends on metering, rejected or deadletter.

Stateless and partition-parallel: it reads `requests` and `usage` in whatever partitioning
their producers chose and re-keys what passes by tenant into `metering`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from guardstream.agents import Outputs, hold_if_stopping
from guardstream.app import Context
from guardstream.ingest.judge import STAGE, Outcome, RawRecord, dead_letter
from guardstream.reasons import Reason
from guardstream.records import Ingress
from guardstream.runtime.continuity import InputWatch
from guardstream.runtime.logs import log_context
from guardstream.runtime.metrics import record_outcome
from guardstream.serde.registry import RegistryUnavailable

log = logging.getLogger(__name__)


def register(app: faust.App, ctx: Context) -> None:
    """Define the ingest agent on the app."""
    settings = ctx.settings
    sources = app.topic(settings.topic("requests"), settings.topic("usage"))
    outputs = Outputs(
        app,
        {name: settings.topic(name) for name in ("metering", "rejected", "deadletter", "admitted")},
    )

    watch = InputWatch(
        app, STAGE, {settings.topic("requests"), settings.topic("usage")}, settings.kafka_bootstrap
    )

    @app.timer(interval=1.0)
    async def check_input_continuity() -> None:
        await watch.check_idle()

    @app.agent(sources, name="guardstream.ingest")
    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            started = time.perf_counter()
            await hold_if_stopping(app)
            watch.see(msg)
            rec = RawRecord(
                ingress=Ingress(msg.topic, msg.partition, msg.offset, round(msg.timestamp * 1000)),
                key=msg.key,
                value=msg.value,
                headers=list(msg.headers or []),
            )
            with log_context(
                request_id=_header(rec.headers, "ce_id"),
                traceparent=_header(rec.headers, "ce_traceparent"),
            ):
                out = await _judge(rec)
            await outputs.send(out.topic, out.key, out.value, out.headers)
            record_outcome(STAGE, out.topic, out.code, started, rec.ingress.timestamp_ms)

    async def _judge(rec: RawRecord) -> Outcome:
        while True:
            await ctx.registry_gate.warm(rec.value)
            try:
                return ctx.judge.judge(rec)
            except RegistryUnavailable:
                continue  # the gate backs off; never reject for the registry's fault
            except Exception as exc:  # a bug must not stop the partition
                i = rec.ingress
                log.exception("ingest failed on %s[%d]@%d", i.topic, i.partition, i.offset)
                return dead_letter(ctx.codec, rec, Reason.INTERNAL_ERROR, repr(exc)[:500], STAGE)


def _header(headers: list[tuple[str, bytes | None]], name: str) -> str | None:
    """A header's value as text, for log context only (never raises)."""
    for key, value in headers:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")[:200]
    return None
