"""`guardstream tail`: follow the result topics and print each decision readably."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from rich.console import Console
from rich.text import Text

from guardstream.config.settings import Settings
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.streams.admin import high_watermark
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import RESULT_TOPICS, Topic


@dataclass(frozen=True)
class Seen:
    """One record read from a result topic, decoded."""

    topic: str
    partition: int
    offset: int
    headers: dict[str, bytes]
    record: dict[str, Any]


def end_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """The current end offset of every result-topic partition (to read only what follows)."""
    consumer = _consumer(settings)
    try:
        out = {}
        for short in RESULT_TOPICS:
            topic = settings.topic(short)
            md = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in md.partitions:
                out[(topic, p)] = high_watermark(consumer, topic, p)
        return out
    finally:
        consumer.close()


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        kafka_config(
            settings,
            {
                "group.id": "guardstream-tail",
                "enable.auto.commit": False,
                "log_level": 0,
                "fetch.message.max.bytes": 64 * 1024 * 1024,
                "receive.message.max.bytes": 128 * 1024 * 1024,
            },
        )
    )


def follow(
    settings: Settings,
    *,
    start: dict[tuple[str, int], int] | None = None,
    from_beginning: bool = False,
    stop: Callable[[], bool] = lambda: False,
    idle_timeout_s: float | None = None,
) -> Iterator[Seen]:
    """Yield decoded records from the result topics until `stop()` or an idle timeout."""
    registry = Registry(settings)
    codec = Codec(settings, registry)
    consumer = _consumer(settings)
    assignment = []
    for result in RESULT_TOPICS:
        name = settings.topic(result)
        md = consumer.list_topics(name, timeout=10).topics[name]
        for p in md.partitions:
            if start is not None:
                offset = start.get((name, p), OFFSET_BEGINNING)
            else:
                offset = OFFSET_BEGINNING if from_beginning else OFFSET_END
            assignment.append(TopicPartition(name, p, offset))
    consumer.assign(assignment)
    last = time.monotonic()
    try:
        while not stop():
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    return
                continue
            if msg.error():
                continue
            last = time.monotonic()
            topic = msg.topic() or ""
            short = topic.removeprefix(settings.topic_prefix + ".")
            try:
                record = codec.decode(msg.value() or b"", Topic(short))
            except Exception as exc:  # a result we cannot read is shown, not fatal
                record = {"undecodable": str(exc)}
            raw_headers: Any = msg.headers() or []
            headers = {k: v for k, v in raw_headers if isinstance(v, bytes)}
            yield Seen(topic, msg.partition() or 0, msg.offset() or 0, headers, record)
    finally:
        consumer.close()
        registry.close()


def render(seen: Seen, settings: Settings) -> Text:
    """One line per decision: outcome, tenant, request id, reasons."""
    short = seen.topic.removeprefix(settings.topic_prefix + ".")
    r = seen.record
    line = Text()
    if short == Topic.DEADLETTER:
        line.append("DEADLETTER ", style="bold magenta")
        line.append(f"{r.get('error_code')} ", style="magenta")
        line.append(f"{seen.topic}[{seen.partition}]@{seen.offset} ← ")
        line.append(
            f"{r.get('original_topic')}[{r.get('original_partition')}]@"
            f"{r.get('original_offset')}: {r.get('error_detail')}",
            style="dim",
        )
        return line
    if short == Topic.COMPLETIONS:
        return _render_completion(r)
    admitted = r.get("outcome") == "ADMITTED"
    line.append(
        "ADMITTED " if admitted else "REJECTED ", style="bold green" if admitted else "bold red"
    )
    line.append(f"{r.get('tenant_id') or '-':<10} ", style="cyan")
    line.append(f"{r.get('request_id')} ")
    authid = seen.headers.get("ce_authid")
    if authid:
        line.append(f"signed {authid.decode('utf-8', 'replace')} ", style="dim cyan")
    if admitted:
        line.append(f"est. {r.get('cost_estimate_micros', 0)} µ$", style="dim")
        found = r.get("findings") or {}
        if found:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(found.items()))
            line.append(f" · found {counts}", style="yellow")
    for reason in r.get("reasons", []):
        line.append(f"{reason['code']}", style="red")
        line.append(f" ({reason['detail']}) ", style="dim")
    return line


def _render_completion(r: dict[str, Any]) -> Text:
    """A completion: outcome, tenant, request id, tokens, and the start of the answer."""
    outcome = r.get("outcome", "?")
    style = {"COMPLETED": "bold blue", "BLOCKED": "bold yellow"}.get(outcome, "bold red")
    line = Text()
    line.append(f"{outcome} ", style=style)
    line.append(f"{r.get('tenant_id') or '-':<10} ", style="cyan")
    line.append(f"{r.get('request_id')} ")
    estimated = " (estimated)" if r.get("usage_estimated") else ""
    line.append(
        f"{r.get('model')} via {r.get('deployment') or '-'} · {r.get('prompt_tokens', 0)}+"
        f"{r.get('completion_tokens', 0)} tokens{estimated} · {r.get('latency_ms', 0)} ms ",
        style="dim",
    )
    if r.get("code"):
        line.append(f"{r['code']}", style="red")
        line.append(f" ({r.get('detail', '')}) ", style="dim")
    text = (r.get("text") or "").replace("\n", " ")
    if text:
        line.append(f"“{text[:60]}{'…' if len(text) > 60 else ''}”")
    return line


def as_json(seen: Seen) -> str:
    """The decision as one JSON line (bytes as latin-1 strings)."""

    def default(o: Any) -> Any:
        return o.decode("latin-1") if isinstance(o, bytes) else str(o)

    return json.dumps({"topic": seen.topic, **seen.record}, default=default)


def print_seen(console: Console, seen: Seen, settings: Settings, json_lines: bool) -> None:
    """Print one record in the chosen style."""
    if json_lines:
        console.print(as_json(seen), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(render(seen, settings), soft_wrap=True)
