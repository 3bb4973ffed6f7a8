"""The ingest stage: every request and usage report ends on metering, rejected or deadletter.

Stateless and partition-parallel: it reads `requests` and `usage` in whatever partitioning
their producers chose and re-keys what passes by tenant into `metering`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from guardstream.agents.context import (
    Context,
    Outputs,
    await_tenant_directory,
    header_text,
    hold_if_stopping,
)
from guardstream.ingest.judge import STAGE
from guardstream.reasons import Reason
from guardstream.records import Ingress, Outcome, RawRecord, dead_letter
from guardstream.runtime.continuity import InputWatch
from guardstream.runtime.logs import log_context
from guardstream.runtime.metrics import record_outcome
from guardstream.serde.registry import RegistryUnavailable
from guardstream.streams.topics import Topic

log = logging.getLogger(__name__)


def register(app: faust.App, ctx: Context) -> None:
    """Define the ingest agent on the app."""
    settings = ctx.settings
    inputs = {settings.topic(Topic.REQUESTS), settings.topic(Topic.USAGE)}
    sources = app.topic(*sorted(inputs))
    outputs = Outputs(app, ctx)

    watch = InputWatch(app, STAGE, inputs, settings)

    @app.timer(interval=1.0)
    async def check_input_continuity() -> None:
        await watch.check_idle()

    @app.agent(sources, name="guardstream.ingest")
    async def ingest(stream: Any) -> None:
        await await_tenant_directory(ctx)
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
                request_id=header_text(rec.headers, "ce_id"),
                traceparent=header_text(rec.headers, "ce_traceparent"),
            ):
                out, value = await _judge(rec)
            await outputs.send(out, value)
            record_outcome(STAGE, out.topic, out.code, started, rec.ingress.timestamp_ms)

    async def _judge(rec: RawRecord) -> tuple[Outcome, bytes]:
        while True:
            await ctx.registry_gate.warm(rec.value)
            try:
                out = ctx.judge.judge(rec)
                return out, outputs.encode(out)
            except RegistryUnavailable:
                continue  # the gate backs off; never reject for the registry's fault
            except Exception as exc:  # a bug must not stop the partition
                i = rec.ingress
                log.exception("ingest failed on %s[%d]@%d", i.topic, i.partition, i.offset)
                out = dead_letter(rec, Reason.INTERNAL_ERROR, repr(exc)[:500], STAGE)
                return out, outputs.encode(out)
