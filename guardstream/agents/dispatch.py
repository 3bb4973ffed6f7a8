"""The dispatch stage (optional, `GUARDSTREAM_DISPATCH=true`): call the model for every
admitted request, write its guarded completion and settle its usage.

Decode → look up the request's dispatch entry → call (through the router: retries,
failover, breakers) → guard the answer → send the completion and the usage record →
acknowledge. A call takes seconds, so each record is handled in a task of its own, up to
`GUARDSTREAM_DISPATCH_MAX_IN_FLIGHT` at once; offsets are acknowledged strictly in order
(`guardstream.dispatch.inflight`), so a commit never passes a record still being answered.

A model call is never repeated silently: the entry `calling` is written (to the table, and
so to its changelog) before the first call, and a record taken up again that finds it - its
worker died mid-call - is answered `INTERRUPTED` and charged its reservation, not called
again. A record whose answer was already written re-sends the stored bytes; a copy of the
decision at another offset, or one whose call is running here, sends nothing
(`guardstream.dispatch.journal`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import httpx
import sniffio

from guardstream.agents.context import (
    Context,
    Outputs,
    await_tenant_directory,
    header_text,
    hold_if_stopping,
)
from guardstream.config.providers import Deployment, check_against_catalog, load_providers
from guardstream.dispatch import journal
from guardstream.dispatch.codes import CompletionCode
from guardstream.dispatch.completion import (
    Admitted,
    Answer,
    completion_headers,
    completion_outcome,
    usage_headers,
    usage_outcome,
)
from guardstream.dispatch.http import CallResult, call_chat
from guardstream.dispatch.inflight import InOrder, Settled, SharedFlush
from guardstream.dispatch.router import STATE_VALUE, Router, RouteResult
from guardstream.dispatch.usage import Usage, call_usage, estimate_usage
from guardstream.guardrails import Policy
from guardstream.guardrails.output import OutputVerdict, StreamGuard, StreamStep, guard_completion
from guardstream.records import Ingress
from guardstream.runtime.continuity import committed_offset
from guardstream.runtime.logs import log_context
from guardstream.runtime.metrics import (
    DISPATCH_BREAKER,
    DISPATCH_CALL_LATENCY,
    DISPATCH_CALLS,
    DISPATCH_COMPLETIONS,
    DISPATCH_FALLBACKS,
    DISPATCH_IN_FLIGHT,
    DISPATCH_RETRIES,
    DISPATCH_TOKENS,
    TABLE_KEYS,
    labelled,
)
from guardstream.streams.topics import Topic
from guardstream.tables.storage import fail_stop, is_storage_error

STAGE = "dispatch"
POOL_SIZE = 100  # HTTP connections per pool (see `client_for`)
log = logging.getLogger(__name__)


async def _unused_attempt(d: Deployment, model: str) -> CallResult:
    raise AssertionError("the dispatch agent passes an attempt per request")


def register(app: faust.App, ctx: Context, policy_for: Any) -> None:
    """Define the dispatch agent on the app (only called when the stage is on)."""
    settings, codec, catalog = ctx.settings, ctx.codec, ctx.catalog
    providers = load_providers(settings.providers_file)
    check_against_catalog(providers, catalog, settings.providers_file)
    router = Router(providers, _unused_attempt)
    table = ctx.tables.dispatch
    outputs = Outputs(app, ctx)
    order: InOrder[Any] = InOrder()
    settled: Settled[bytes] = Settled()
    window_ms = settings.dedup_window_s * 1000
    # Decisions whose call runs in this process, per partition: a copy of one (the meter
    # re-emits decisions after a crash) must not read their `calling` as a dead owner's.
    flying: dict[Any, set[bytes]] = {}
    # A call starts only once its `calling` entry is on the broker: one flush of the output
    # producer (which carries the table's changelog) serves every call waiting for it.
    durable = SharedFlush(ctx.producer.flush)
    tasks: dict[Any, set[asyncio.Task[None]]] = {}
    clients: dict[str, list[httpx.AsyncClient]] = {}
    turns: dict[str, int] = {}

    def client_for(d: Deployment) -> httpx.AsyncClient:
        # A deployment's connections in pools of at most POOL_SIZE, taken in turn: httpcore
        # walks a pool's connections for every request, so one pool of a thousand costs
        # quadratic time under load (8 % of a flooded worker, profiled).
        if d.name not in clients:
            shards = -(-d.max_concurrent // POOL_SIZE)
            size = -(-d.max_concurrent // shards)
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            clients[d.name] = [
                httpx.AsyncClient(limits=limits, timeout=None) for _ in range(shards)
            ]
        pools = clients[d.name]
        turns[d.name] = turn = (turns.get(d.name, -1) + 1) % len(pools)
        return pools[turn]

    def attempt_for(adm: Admitted, policy: Policy, guarded: _Guarded) -> Any:
        async def attempt(d: Deployment, model: str) -> CallResult:
            key = d.api_key
            # A fresh guard per try: a retried call streams its answer from the start.
            guard = StreamGuard(policy, salt=adm.request_id) if settings.dispatch_stream else None
            guarded.reset(guard)
            result = await call_chat(
                client_for(d),
                d.base_url,
                key.get_secret_value() if key is not None else "",
                model,
                adm.messages,
                adm.max_tokens,
                stream=settings.dispatch_stream,
                timeout_s=d.timeout_s,
                idempotency_key=adm.request_id,
                on_chunk=guarded.feed if guard is not None else None,
            )
            labelled(DISPATCH_CALLS, model, d.name, str(result.outcome)).inc()
            labelled(DISPATCH_CALL_LATENCY, model, d.name).observe(result.latency_s)
            return result

        return attempt

    def answer_from(
        adm: Admitted, route: RouteResult, started: float, policy: Policy, guarded: _Guarded
    ) -> Answer:
        spec = catalog.get(route.model)
        result = route.result
        usage = (
            call_usage(result, adm.turns, spec, adm.max_tokens) if spec is not None else Usage(0, 0)
        )
        common: dict[str, Any] = {
            "model": route.model,
            "usage": usage,
            "deployment": route.deployment,
            "attempts": len(route.trace),
            "latency_ms": round((time.monotonic() - started) * 1000),
        }
        if route.error is not None or result is None:
            detail = getattr(result, "error", None) or "no deployment answered"
            return Answer("FAILED", code=route.error, detail=str(detail)[:300], **common)
        verdict = guarded.verdict(result.text, policy, adm.request_id)
        if verdict.blocked is not None:
            return Answer(
                "BLOCKED",
                code=CompletionCode(verdict.blocked),
                detail=verdict.blocked_detail or "",
                findings=verdict.findings,
                toxicity=verdict.toxicity_score,
                **common,
            )
        return Answer(
            "COMPLETED",
            text=verdict.text,
            finish_reason=getattr(result, "finish_reason", None),
            findings=verdict.findings,
            toxicity=verdict.toxicity_score,
            **common,
        )

    def interrupted(adm: Admitted) -> Answer:
        spec = catalog.get(adm.model)
        usage = (
            estimate_usage(adm.turns, spec, "", complete=False, max_tokens=adm.max_tokens)
            if spec is not None
            else Usage(0, 0)
        )
        return Answer(
            "FAILED",
            model=adm.model,
            usage=usage,
            code=CompletionCode.INTERRUPTED,
            detail="a worker died while this request's call was in flight; not called again",
        )

    async def send_answer(adm: Admitted, answer: Answer, key: bytes) -> None:
        completion = completion_outcome(adm, answer)
        # Always settled, zero tokens too: that releases the reservation now rather than
        # when it expires (a request refused by every provider is charged nothing).
        usage = usage_outcome(adm, answer.usage, answer.model, catalog.version)
        # Encoded before anything is sent or written: a record that cannot be encoded
        # changes nothing (and is logged, as a bug).
        values = [(completion, outputs.encode(completion)), (usage, outputs.encode(usage))]
        for out, value in values:
            await outputs.send(out, value)
        origin = journal.Origin(adm.ingress.partition, adm.ingress.offset)
        table[key] = journal.done(origin, values[0][1], values[1][1])
        labelled(DISPATCH_COMPLETIONS, answer.outcome, completion.code).inc()
        for kind, n in (
            ("prompt", answer.usage.prompt_tokens - answer.usage.cached_tokens),
            ("cached", answer.usage.cached_tokens),
            ("completion", answer.usage.completion_tokens),
        ):
            if n:
                labelled(DISPATCH_TOKENS, answer.model, kind).inc(n)

    async def resend(adm: Admitted, entry: journal.Entry) -> None:
        """The stored completion and usage again, byte for byte, with the same headers."""
        key = adm.tenant_id.encode()
        if entry.completion is not None:
            topic = settings.topic(Topic.COMPLETIONS)
            await ctx.producer.send(topic, key, entry.completion, completion_headers(adm))
        if entry.usage is not None:
            topic = settings.topic(Topic.METERING)
            await ctx.producer.send(topic, key, entry.usage, usage_headers(adm))

    async def answer(event: Any, adm: Admitted, key: bytes) -> None:
        started = time.monotonic()
        policy = policy_for(adm.tenant_id)
        guarded = _Guarded()
        route = await router.route(adm.model, adm.request_id, attempt_for(adm, policy, guarded))
        for a, b in zip(route.trace, route.trace[1:], strict=False):
            if a.deployment == b.deployment:
                labelled(DISPATCH_RETRIES, b.model, b.deployment).inc()
        if len({(r.model, r.deployment) for r in route.trace}) > 1:
            labelled(DISPATCH_FALLBACKS, adm.model).inc()
        await send_answer(adm, answer_from(adm, route, started, policy, guarded), key)

    def release(event: Any, slots: asyncio.Semaphore) -> None:
        msg = event.message
        for done in order.finish(msg.tp, msg.offset, event):
            done.ack()
        slots.release()
        DISPATCH_IN_FLIGHT.set(order.in_flight())

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types it narrowly
    def stop_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # The partition's next owner takes its unanswered records up again and finds their
        # `calling` entries: a call still running here must not also answer them.
        for tp in revoked:
            for task in tasks.pop(tp, set()):
                task.cancel()
            flying.pop(tp, None)
            order.forget(tp)
            settled.forget(tp)

    @app.timer(interval=30.0)
    async def sample_table() -> None:
        TABLE_KEYS.labels("dispatch").set(len(table))  # walks the store: sampled

    @app.timer(interval=5.0)
    async def export_breakers() -> None:
        for name, state in router.breaker_states().items():
            DISPATCH_BREAKER.labels(name).set(STATE_VALUE[state])

    @app.agent(app.topic(settings.topic(Topic.ADMITTED)), name="guardstream.dispatch")
    async def dispatch(stream: Any) -> None:
        # httpcore asks sniffio which event loop runs, at every lock it takes; said once
        # here, for this task and the call tasks it starts, the answer is a lookup.
        sniffio.current_async_library_cvar.set("asyncio")
        await await_tenant_directory(ctx)
        slots = asyncio.Semaphore(settings.dispatch_max_in_flight)
        async for event in stream.noack().events():
            await hold_if_stopping(app)
            msg = event.message
            if not order.start(msg.tp, msg.offset):
                order.repeat(msg.tp, msg.offset, event)
                continue
            await slots.acquire()
            DISPATCH_IN_FLIGHT.set(order.in_flight())
            ingress = Ingress(msg.topic, msg.partition, msg.offset, round(msg.timestamp * 1000))
            try:
                adm = Admitted.from_decision(
                    codec.decode(msg.value, Topic.ADMITTED),
                    ingress,
                    header_text(msg.headers or [], "ce_traceparent"),
                )
            except Exception:  # guardstream wrote it: a record it cannot read is a bug
                log.exception(
                    "dispatch cannot read %s[%d]@%d", msg.topic, msg.partition, msg.offset
                )
                release(event, slots)
                continue
            key = journal.entry_key(adm.decision_id)
            origin = journal.Origin(msg.partition, msg.offset)
            running = flying.setdefault(msg.tp, set())
            try:
                # Table writes happen here, in an event of the partition (where its changelog
                # is): answers of committed records shrink to a marker, expired entries go.
                for old in settled.due(msg.tp, committed_offset(app, msg.tp)):
                    if journal.read(table.get(old)).done:
                        table[old] = journal.settled()
                journal.collect(table, msg.partition, ingress.timestamp_ms, window_ms)
                entry = journal.read(table.get(key))
                if key in running or entry.settled or (entry.done and entry.origin != origin):
                    # A copy of a decision answered (or being answered) from another record:
                    # that record sends the answer; this one is acknowledged in its turn.
                    release(event, slots)
                    continue
                settled.taken(msg.tp, msg.offset, key)
                if entry.done:
                    await resend(adm, entry)
                    release(event, slots)
                    continue
                if entry.calling:
                    with log_context(request_id=adm.request_id):
                        log.warning("%s was in flight when its worker died", adm.request_id)
                    await send_answer(adm, interrupted(adm), key)
                    release(event, slots)
                    continue
                table[key] = journal.calling(origin)
                journal.track(table, msg.partition, key, ingress.timestamp_ms)
            except Exception as exc:
                if is_storage_error(exc):
                    fail_stop(exc, settings.state_dir)
                raise
            running.add(key)

            async def run(
                event: Any = event, adm: Admitted = adm, key: bytes = key, running: Any = running
            ) -> None:
                try:
                    with log_context(request_id=adm.request_id, traceparent=adm.traceparent):
                        await durable.wait()
                        await answer(event, adm, key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if is_storage_error(exc):
                        fail_stop(exc, settings.state_dir)
                    # Not acknowledged: the record stays uncommitted, and a restart answers
                    # it INTERRUPTED (its entry says `calling`); never a silent second call.
                    log.exception("dispatch failed on %s", adm.request_id)
                    return
                finally:
                    running.discard(key)
                release(event, slots)

            task = asyncio.ensure_future(run())
            tasks.setdefault(msg.tp, set()).add(task)
            task.add_done_callback(tasks.get(msg.tp, set()).discard)


class _Guarded:
    """The output guard over one request's answer: fed as a stream arrives, or applied to
    the whole text of a plain call."""

    def __init__(self) -> None:
        self.guard: StreamGuard | None = None
        self.released: list[str] = []
        self.stopped: StreamStep | None = None

    def reset(self, guard: StreamGuard | None) -> None:
        self.guard, self.released, self.stopped = guard, [], None

    def feed(self, delta: str) -> bool:
        """The stream's callback: False stops it (the guard blocked the answer)."""
        assert self.guard is not None
        step = self.guard.feed(delta)
        self.released.append(step.release)
        if step.stop:
            self.stopped = step
        return not step.stop

    def verdict(self, text: str, policy: Policy, salt: str) -> OutputVerdict:
        """The guarded answer: what the stream released, or the whole text guarded now."""
        if self.guard is None:
            return guard_completion(text, policy, salt=salt)
        step = self.stopped or self.guard.finish()
        self.released.append(step.release)
        findings = dict(self.guard.findings)
        score = self.guard.toxicity_score
        if step.stop:
            return OutputVerdict("", findings, score, step.flags, step.blocked, step.blocked_detail)
        return OutputVerdict("".join(self.released), findings, score, step.flags, None, None)
