"""`guardstream bench ingest | worst | pipeline`: what the ingest path and the pipeline cost.

`ingest` and `worst` time the pure ingest path on one core (typical prompts; adversarial
text at growing sizes); `pipeline` runs the whole pipeline through a real broker.

The ingest path: decode (Confluent-framed Avro, binary-mode CloudEvents headers) → validate →
guardrails (hygiene, PII, injection, token estimate) → encode the metering record. No broker
and no registry: schemas are cached up front under fixed ids, as a warm worker has them.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guardstream.auth.client import ClientKey, sign_headers
from guardstream.auth.keyring import TenantAuth
from guardstream.auth.signature import Scheme
from guardstream.auth.verify import Key
from guardstream.config.catalog import cached_catalog
from guardstream.config.settings import Settings, get_settings
from guardstream.guardrails import DEFAULT_POLICY, Policy
from guardstream.ingest.authenticate import SIGNATURE_ATTR, Authenticator
from guardstream.ingest.judge import Judge
from guardstream.ops.hostile_text import FAMILIES, fill
from guardstream.ops.worker_process import worker_env
from guardstream.records import Ingress, Outcome, RawRecord, request_data
from guardstream.serde.avro import encode
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import reader_schema
from guardstream.streams.clients import kafka_config
from guardstream.streams.cloudevents import check_binary, format_time, read_envelope
from guardstream.streams.topics import REQUEST_TYPE, Topic

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
    verify_us: float | None = None  # the signature check alone, per record (when signed)


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


def request_record(
    i: int,
    messages: list[dict[str, str]],
    rnd: random.Random | None = None,
    schema_dir: Path | None = None,
) -> RawRecord:
    """A binary-mode request record (Confluent-framed Avro under schema id 1) at offset `i`.

    Encoded with the request schema in `schema_dir` (default: the process's settings).
    """
    rnd = rnd or random.Random(i)
    schema = reader_schema("request", schema_dir or get_settings().schema_dir)
    data = request_data(f"tenant-{i % 50}", messages, temperature=0.2, metadata={"team": "bench"})
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.UUID(int=rnd.getrandbits(128))).encode()),
        ("ce_source", b"/bench"),
        ("ce_type", REQUEST_TYPE.encode()),
        ("content-type", b"application/avro"),
    ]
    ingress = Ingress("guardstream.requests", 0, i, 1_790_000_000_000 + i)
    return RawRecord(ingress, None, encode(1, schema, data), headers)


def make_records(
    n: int, pii_ratio: float, seed: int = 1, schema_dir: Path | None = None
) -> list[RawRecord]:
    """`n` binary-mode request records with ~1 KB prompts."""
    rnd = random.Random(seed)
    return [
        request_record(
            i,
            [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": prompt(rnd, 1000, rnd.random() < pii_ratio)},
            ],
            rnd,
            schema_dir,
        )
        for i in range(n)
    ]


class OfflineIngest(NamedTuple):
    """The ingest judge and the codec that encodes its outcomes, with no broker or registry."""

    judge: Judge
    codec: Codec

    def run(self, rec: RawRecord) -> Outcome:
        """What the ingest agent does per record without Kafka: judge, then encode."""
        out = self.judge.judge(rec)
        self.codec.encode(out.topic, out.record)
        return out


def offline_judge(
    settings: Settings,
    policy: Policy = DEFAULT_POLICY,
    record_budget_ms: int | None = None,
    authenticator: Authenticator | None = None,
) -> OfflineIngest:
    """An ingest judge with its schemas cached under fixed ids: no broker, no registry."""
    registry = Registry(settings)
    registry.remember(1, reader_schema("request", settings.schema_dir))
    codec = Codec(settings, registry)
    codec.use_output_ids({t: 100 + i for i, t in enumerate(Topic)})
    budget = settings.record_budget_ms if record_budget_ms is None else record_budget_ms
    judge = Judge(
        codec,
        cached_catalog(settings.model_catalog),
        settings.max_record_bytes,
        lambda _tenant: policy,
        budget,
        authenticator or Authenticator(),
    )
    return OfflineIngest(judge, codec)


# What `bench ingest --signing` can time: unsigned, or every record signed and verified.
SIGNINGS = ("none", "hmac-sha256", "ed25519")


def signed_records(
    records: list[RawRecord], scheme: str
) -> tuple[list[RawRecord], Authenticator | None]:
    """The records signed as a client would (one key for every tenant, all `required`), and
    the authenticator that verifies them; unchanged and None for `none`."""
    if scheme == "none":
        return records, None
    if scheme == "ed25519":
        private = Ed25519PrivateKey.generate()
        client = ClientKey("bench", Scheme.ED25519, private.private_bytes_raw())
        key = Key("bench", Scheme.ED25519, private.public_key().public_bytes_raw())
    else:
        secret = random.Random(scheme).randbytes(32)
        client = ClientKey("bench", Scheme.HMAC_SHA256, secret)
        key = Key("bench", Scheme.HMAC_SHA256, secret)
    out = []
    for rec in records:
        tenant = f"tenant-{rec.ingress.offset % 50}"
        headers = [(k, v) for k, v in rec.headers if v is not None]
        headers += [
            ("ce_time", format_time(rec.ingress.timestamp_ms).encode()),
            ("ce_tenantid", tenant.encode()),
        ]
        signed = sign_headers(headers, rec.value or b"", [client])
        out.append(dataclasses.replace(rec, headers=list(signed)))
    auth = TenantAuth("required", (key,))
    return out, Authenticator(lambda _tenant: auth)


def bench_ingest(
    settings: Settings, n: int, pii_ratio: float = 0.2, signing: str = "none"
) -> BenchResult:
    """Time `Judge.judge` on `n` generated records, one at a time (signed and verified with
    `signing`, one of SIGNINGS)."""
    records, authenticator = signed_records(
        make_records(n, pii_ratio, schema_dir=settings.schema_dir), signing
    )
    ingest = offline_judge(settings, authenticator=authenticator)
    for rec in records[: min(200, n)]:  # warm caches (regexes, schemas) before timing
        ingest.run(rec)
    timings = []
    forwarded = 0
    clock = time.perf_counter
    start = clock()
    for rec in records:
        t0 = clock()
        out = ingest.run(rec)
        timings.append(clock() - t0)
        forwarded += out.topic == Topic.METERING
    total = clock() - start
    ingest.codec.registry.close()
    q = statistics.quantiles(timings, n=100)
    verify_us = None if authenticator is None else _time_verification(records, authenticator)
    return BenchResult(n, total, n / total, q[49] * 1e6, q[98] * 1e6, forwarded, verify_us)


def _time_verification(records: list[RawRecord], authenticator: Authenticator) -> float:
    """Microseconds per record of the signature check alone (headers already parsed): the
    figure the throughput difference blurs with cache and allocator effects."""
    accepted = [REQUEST_TYPE]
    checks = []
    for rec in records:
        env = read_envelope(rec.headers)
        signature = env.attrs.get(SIGNATURE_ATTR)
        checks.append((signature, check_binary(env, accepted), rec.value or b"", rec))
    start = time.perf_counter()
    for signature, attrs, value, rec in checks:
        authenticator.check_signature(signature, attrs, value, rec.ingress.timestamp_ms)
    return (time.perf_counter() - start) / len(checks) * 1e6


# Everything redacted rather than blocked and HTML stripped, so every step runs in full.
WORST_POLICY = Policy(secret="redact", strip_html=True, injection_action="allow")


@dataclass(frozen=True)
class WorstCase:
    """Time per KB of the ingest judge on one adversarial family at one size."""

    family: str
    chars: int
    kb: float
    ms: float
    us_per_kb: float
    code: str


def time_family(
    ingest: OfflineIngest, unit: str, chars: int, repeats: int = 3
) -> tuple[float, str]:
    """Fastest of `repeats` judge runs on one message of `unit` repeated; (seconds, code)."""
    rec = request_record(chars, [{"role": "user", "content": fill(unit, chars)}])
    best, code = float("inf"), ""
    for _ in range(repeats):
        gc.collect()  # a collection owed by earlier work would be billed to this run
        t0 = time.perf_counter()
        code = ingest.run(rec).code
        best = min(best, time.perf_counter() - t0)
    return best, code


def bench_worst(
    settings: Settings, sizes: tuple[int, ...] = (8_192, 32_768, 131_072)
) -> list[WorstCase]:
    """Each adversarial family through the whole ingest judge at each size (no budget)."""
    ingest = offline_judge(settings, WORST_POLICY, record_budget_ms=10**9)
    time_family(ingest, "warm up ", 1024)
    out = []
    for family, unit in FAMILIES.items():
        for chars in sizes:
            seconds, code = time_family(ingest, unit, chars)
            kb = len(fill(unit, chars).encode()) / 1024
            out.append(WorstCase(family, chars, kb, seconds * 1e3, seconds * 1e6 / kb, code))
    ingest.codec.registry.close()
    return out


@dataclass(frozen=True)
class PipelineResult:
    """What one whole-pipeline run measured."""

    requests: int
    decisions_per_s: float
    p50_ms: float
    p99_ms: float
    paced_rate: float
    paced_p50_ms: float
    paced_p99_ms: float
    passthrough_per_s: float


def _quantiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100)
    return q[49], q[98]


BENCH_TENANTS = tuple(f"bench{i:02d}" for i in range(50))


def bench_settings(settings: Settings, prefix: str, tmp: Path) -> Settings:
    """`settings` on a fresh topic prefix and app id, with the worker state under `tmp`."""
    return settings.model_copy(
        update={"topic_prefix": prefix, "app_id": prefix, "worker_state_dir": tmp / "state"}
    )


def prepare_pipeline(s: Settings, tmp: Path) -> int:
    """Create `s`'s topics, register its schemas and the bench tenants; the request schema id.

    The tenants get limits no benchmark reaches, so every request runs the whole pipeline.
    """
    from guardstream.ops import schemas as schema_ops
    from guardstream.ops import tenants as tenant_ops
    from guardstream.serde.schemas import schema_text
    from guardstream.streams.admin import ensure_topics
    from guardstream.streams.topics import subject_for

    ensure_topics(s)
    registry = Registry(s)
    try:
        schema_ops.register_all(s, registry)
        request_id = registry.lookup(
            subject_for(s, Topic.REQUESTS), schema_text("request", s.schema_dir)
        )
    finally:
        registry.close()
    assert request_id is not None
    (tmp / "tenants.yaml").write_text(
        "tenants:\n"
        + "".join(
            f"  - tenant_id: {t}\n    tier: premium\n    requests_per_minute: 100000000\n"
            f"    tokens_per_minute: 100000000000\n    burst_requests: 100000000\n"
            f"    burst_tokens: 100000000000\n"
            for t in BENCH_TENANTS
        )
    )
    tenant_ops.apply(s, tmp / "tenants.yaml")
    return request_id


Built = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


class RequestSender:
    """Produces the bench requests: ~1 KB prompts, 20 % with PII, 50 tenants, keyed by tenant.

    The same `seed` gives the same prompts; request `i` has CloudEvents id ``{run}-{i}``.
    """

    def __init__(self, s: Settings, request_id: int, run: str, seed: int = 7) -> None:
        from confluent_kafka import Producer

        self.topic = s.topic(Topic.REQUESTS)
        self.run = run
        self._schema = reader_schema("request", s.schema_dir)
        self._request_id = request_id
        self._rnd = random.Random(seed)
        self._producer = Producer(kafka_config(s, {"linger.ms": 5, "log_level": 0}))

    def build(self, i: int) -> Built:
        """Request `i` as it goes on the wire: key, framed Avro value, CloudEvents headers."""
        tenant = BENCH_TENANTS[i % len(BENCH_TENANTS)]
        content = prompt(self._rnd, 1000, self._rnd.random() < 0.2)
        data = request_data(tenant, [{"role": "user", "content": content}])
        headers: list[tuple[str, str | bytes | None]] = [
            ("ce_specversion", b"1.0"),
            ("ce_id", f"{self.run}-{i}".encode()),
            ("ce_source", b"/bench"),
            ("ce_type", REQUEST_TYPE.encode()),
            ("content-type", b"application/avro"),
        ]
        return tenant.encode(), encode(self._request_id, self._schema, data), headers

    def send(self, i: int) -> None:
        """Produce request `i`."""
        self.send_built(self.build(i))

    def send_built(self, built: Built) -> None:
        """Produce a request made by `build` (so a flood is not paced by making prompts)."""
        key, value, headers = built
        while True:
            try:
                self._producer.produce(self.topic, key=key, value=value, headers=headers)
                break
            except BufferError:  # the local queue is full: let it drain
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60) -> None:
        """Wait until every produced request is acknowledged."""
        self._producer.flush(timeout_s)


def bench_pipeline(settings: Settings, n: int, console: Any) -> PipelineResult:
    """Requests through a real worker and broker, against a plain consume→produce ceiling.

    Phase 1 floods N requests and measures sustained decisions/s and produce→decision latency
    (the decision record's timestamp minus the request's). Phase 2 sends N/4 more at half the
    sustained rate and measures latency again. Phase 3 runs an aiokafka pass-through (consume
    each request, produce it unchanged) over the same records: the ceiling for this machine.
    """
    import asyncio
    import subprocess
    import sys
    import tempfile

    from confluent_kafka import Consumer

    from guardstream.ops.passthrough import passthrough
    from guardstream.streams.reader import assign_from_beginning

    run = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="gsbench"))
    s = bench_settings(settings, f"gsbench{run}", tmp)
    request_id = prepare_pipeline(s, tmp)
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "guardstream", "worker"],
        env=worker_env(s, tmp / "state"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sender = RequestSender(s, request_id, run)
    send = sender.send

    consumer = Consumer(
        kafka_config(s, {"group.id": f"bench{run}", "enable.auto.commit": False, "log_level": 0})
    )
    assign_from_beginning(consumer, [s.topic(Topic.ADMITTED), s.topic(Topic.REJECTED)])

    def collect(count: int, timeout_s: float) -> list[float]:
        """Latencies (ms) of the next `count` decisions."""
        lat: list[float] = []
        deadline = time.monotonic() + timeout_s
        while len(lat) < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                record = decoder.decode(msg.value() or b"", Topic.ADMITTED)
                lat.append(msg.timestamp()[1] - ingress_ts[record["request_id"]])
        return lat

    decoder = Codec(s, Registry(s))

    ingress_ts: dict[str, int] = {}
    try:
        # Warm up: the worker joins, recovers and decides a few requests first.
        for i in range(50):
            send(i)
        sender.flush(30)
        time.sleep(1)
        fill_ingress_ts(s, ingress_ts)
        collect(50, 120)

        with console.status(f"phase 1: {n} requests as fast as possible"):
            start = time.monotonic()
            for i in range(50, 50 + n):
                send(i)
            sender.flush(60)
            fill_ingress_ts(s, ingress_ts)
            lat = collect(n, 600)
            elapsed = time.monotonic() - start
        rate = len(lat) / elapsed
        p50, p99 = _quantiles(lat)
        console.print(f"phase 1: {len(lat)} decisions in {elapsed:.1f} s = {rate:,.0f}/s")

        paced_n = max(200, n // 4)
        paced_rate = rate / 2
        with console.status(f"phase 2: {paced_n} requests at {paced_rate:.0f}/s"):
            t0 = time.monotonic()
            for j, i in enumerate(range(50 + n, 50 + n + paced_n)):
                delay = t0 + j / paced_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                send(i)
            sender.flush(60)
            fill_ingress_ts(s, ingress_ts)
            paced = collect(paced_n, 300)
        pp50, pp99 = _quantiles(paced)
    finally:
        worker.terminate()
        worker.wait(30)
        consumer.close()

    with console.status("phase 3: aiokafka pass-through of the same records"):
        sink = f"{s.topic_prefix}.passthrough"
        create_topic(s, sink)
        passthrough_rate = asyncio.run(
            passthrough(
                s, s.topic(Topic.REQUESTS), sink, f"{s.app_id}-passthrough", 50 + n + paced_n
            )
        )
    return PipelineResult(n, rate, p50, p99, paced_rate, pp50, pp99, passthrough_rate)


def create_topic(s: Settings, name: str) -> None:
    """Create topic `name` with the default partitions (it must not exist)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient(kafka_config(s, log_level=0))
    admin.create_topics(
        [NewTopic(name, num_partitions=s.default_partitions, replication_factor=1)]
    )[name].result()


def fill_ingress_ts(s: Settings, out: dict[str, int]) -> None:
    """Request id → the request record's broker timestamp (produce time)."""
    from guardstream.streams.reader import read_to_end

    for msg in read_to_end(
        s, s.topic(Topic.REQUESTS), batch=2000, poll_s=1.0, watermark_timeout_s=10
    ):
        headers: Any = dict(msg.headers() or [])
        rid = bytes(headers["ce_id"]).decode()
        out[rid] = msg.timestamp()[1]
