"""`guardstream bench ingest`: the pure ingest path, measured per request on one core.

Decode (Confluent-framed Avro, binary-mode CloudEvents headers) → validate → preprocess
(hygiene, PII, injection, token estimate) → encode the metering record. No broker and no
registry: schemas are cached up front under fixed ids, exactly as a warm worker has them.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from dataclasses import dataclass

from guardstream.admission import Judge, RawRecord
from guardstream.catalog import cached_catalog
from guardstream.decisions import REQUEST_TYPE, Ingress
from guardstream.settings import Settings
from guardstream.streams.avro import encode
from guardstream.streams.codec import Codec
from guardstream.streams.registry import Registry
from guardstream.streams.schemas import reader_schema
from guardstream.streams.topics import TOPICS

_WORDS = tuple(
    " ".join(
        [
            "the quarterly report shows revenue growth across regions while costs remained",
            "stable please summarise key risks and opportunities for the board meeting next",
            "week include customer churn analysis product roadmap hiring plans and spend",
        ]
    ).split(" ")
)
_PII = (
    "Contact me at jane.doe@example.com for details.",
    "My phone is +1 415 555 0132, call after five.",
    "Charge card 4111 1111 1111 1111 expiring 12/29.",
    "Wire it to IBAN GB82 WEST 1234 5698 7654 32 today.",
    "Server 10.20.30.40 and 2001:db8::1 are affected.",
    "Employee SSN 123-45-6789 needs an update.",
)


@dataclass(frozen=True)
class BenchResult:
    """What one benchmark run measured."""

    requests: int
    seconds: float
    per_second: float
    p50_us: float
    p99_us: float
    forwarded: int


def prompt(rnd: random.Random, size: int, pii: bool) -> str:
    """An English-like prompt of about `size` characters, with one PII item if asked."""
    words: list[str] = []
    length = 0
    while length < size:
        w = rnd.choice(_WORDS)
        words.append(w)
        length += len(w) + 1
    if pii:
        words.insert(rnd.randrange(len(words)), rnd.choice(_PII))
    return " ".join(words)[: size + 80]


def make_records(n: int, pii_ratio: float, seed: int = 1) -> list[RawRecord]:
    """`n` binary-mode request records with ~1 KB prompts."""
    rnd = random.Random(seed)
    schema = reader_schema("request")
    out = []
    for i in range(n):
        data = {
            "tenant_id": f"tenant-{i % 50}",
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": prompt(rnd, 1000, rnd.random() < pii_ratio)},
            ],
            "max_tokens": 256,
            "temperature": 0.2,
            "top_p": None,
            "stop": None,
            "idempotency_key": None,
            "metadata": {"team": "bench"},
        }
        headers: list[tuple[str, bytes | None]] = [
            ("ce_specversion", b"1.0"),
            ("ce_id", str(uuid.UUID(int=rnd.getrandbits(128))).encode()),
            ("ce_source", b"/bench"),
            ("ce_type", REQUEST_TYPE.encode()),
            ("content-type", b"application/avro"),
        ]
        out.append(
            RawRecord(Ingress("guardstream.requests", 0, i, 1_790_000_000_000 + i), None,
                      encode(1, schema, data), headers)
        )  # fmt: skip
    return out


def bench_ingest(settings: Settings, n: int, pii_ratio: float = 0.2) -> BenchResult:
    """Time `Judge.judge` on `n` generated records, one at a time."""
    registry = Registry(settings)
    registry.remember(1, reader_schema("request"))
    codec = Codec(settings, registry)
    codec.use_output_ids({t.name: 100 + i for i, t in enumerate(TOPICS) if t.schema})
    judge = Judge(codec, cached_catalog(settings.model_catalog), settings.max_record_bytes)
    records = make_records(n, pii_ratio)
    for rec in records[: min(200, n)]:  # warm caches (regexes, schemas) before timing
        judge.judge(rec)
    timings = []
    forwarded = 0
    clock = time.perf_counter
    start = clock()
    for rec in records:
        t0 = clock()
        out = judge.judge(rec)
        timings.append(clock() - t0)
        forwarded += out.topic == "metering"
    total = clock() - start
    registry.close()
    q = statistics.quantiles(timings, n=100)
    return BenchResult(n, total, n / total, q[49] * 1e6, q[98] * 1e6, forwarded)
