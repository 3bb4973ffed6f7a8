"""The dispatch stage on the real stack, calling the provider simulator over real HTTP.

A worker with `GUARDSTREAM_DISPATCH=true` on a topic prefix of its own, a `guardstream
provider-sim` process serving every deployment of a providers file written here, and a
reader of completions and audit events. Each model of the catalog gets a behaviour: the
gpt-4o-mini primary answers 500 (failover), the gpt-4o primary answers 429 once (retry-after
honoured), claude-haiku's streams break, claude-sonnet hangs past its timeout, and
llama-3-70b is slow (the kill -9 test).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.dispatch.usage import Usage, usage_cost_micros
from guardstream.metering.money import apply_multiplier
from guardstream.ops import schemas as schema_ops
from guardstream.ops import tenants as tenant_ops
from guardstream.ops.bench import bench_settings
from guardstream.ops.worker_process import WorkerProcess
from guardstream.records import request_data
from guardstream.serde.avro import encode
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import reader_schema, schema_text
from guardstream.streams.admin import ensure_topics
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import assign_from_beginning
from guardstream.streams.topics import REQUEST_TYPE, Topic, subject_for
from tests import SCHEMA_DIR, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PROMPT = "Tell me about streams. " * 20
MAX_TOKENS = 64
SIM_TOKENS = 40  # completion tokens each healthy deployment reports (10 of them reasoning)
BEHAVIOURS: dict[str, dict[str, Any]] = {
    "mini-primary": {"fail": "status", "status": 500},
    "mini-secondary": {"completion_tokens": 30, "reasoning_tokens": 10, "cached_fraction": 0.5},
    "4o-primary": {"fail": "rate_limit", "fail_first": 1, "retry_after_s": 1},
    "haiku-primary": {"fail": "broken_stream", "broken_after_chunks": 3},
    "haiku-secondary": {"fail": "broken_stream", "broken_after_chunks": 3},
    "sonnet-primary": {"fail": "timeout"},
    "sonnet-secondary": {"fail": "timeout"},
    "llama-primary": {"latency_s": 6.0},
}
MODELS = {
    "gpt-4o-mini": ["mini-primary", "mini-secondary"],
    "gpt-4o": ["4o-primary"],
    "claude-haiku": ["haiku-primary", "haiku-secondary"],
    "claude-sonnet": ["sonnet-primary", "sonnet-secondary"],
    "llama-3-70b": ["llama-primary"],
}


@dataclass
class Dispatch:
    """The stage's world: settings on a private prefix, the simulator, a worker, readers."""

    s: Settings
    tmp: Path
    sim_url: str
    worker: WorkerProcess
    request_schema_id: int
    producer: Producer
    codec: Codec

    def send(self, tenant: str, model: str, n: int, tag: str) -> list[str]:
        """n requests for `model`; their ids."""
        schema = reader_schema("request", SCHEMA_DIR)
        ids = []
        for i in range(n):
            rid = f"{tag}-{uuid.uuid4().hex[:8]}-{i}"
            value = encode(
                self.request_schema_id,
                schema,
                request_data(
                    tenant,
                    [{"role": "user", "content": PROMPT}],
                    model=model,
                    max_tokens=MAX_TOKENS,
                ),
            )
            self.producer.produce(
                self.s.topic(Topic.REQUESTS),
                key=tenant.encode(),
                value=value,
                headers=[
                    ("ce_specversion", b"1.0"),
                    ("ce_id", rid.encode()),
                    ("ce_source", b"/dispatch-test"),
                    ("ce_type", REQUEST_TYPE.encode()),
                    ("content-type", b"application/avro"),
                ],
            )
            ids.append(rid)
        assert self.producer.flush(30) == 0
        return ids

    def read(self, topic: Topic) -> list[tuple[bytes, dict[str, Any]]]:
        """Every record of `topic` so far, raw and decoded."""
        c = Consumer(kafka_config(self.s, {"group.id": "unused", "enable.auto.commit": False}))
        assign_from_beginning(c, [self.s.topic(topic)])
        out: list[tuple[bytes, dict[str, Any]]] = []
        idle = 0
        while idle < 3:
            batch = c.consume(500, 1.0)
            idle = 0 if batch else idle + 1
            for msg in batch:
                if not msg.error():
                    out.append((msg.value() or b"", self.codec.decode(msg.value() or b"", topic)))
        c.close()
        return out

    def completions(self, ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
        """Each request's completion, waited for; asserts copies of one are identical."""
        deadline = time.monotonic() + timeout
        while True:
            copies: dict[str, set[bytes]] = defaultdict(set)
            found: dict[str, dict[str, Any]] = {}
            for raw, rec in self.read(Topic.COMPLETIONS):
                if rec["request_id"] in ids:
                    copies[rec["request_id"]].add(raw)
                    found[rec["request_id"]] = rec
            if len(found) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert set(found) == set(ids), f"{len(found)} of {len(ids)} completions"
        assert all(len(v) == 1 for v in copies.values()), "a re-sent completion differs"
        return found

    def charges(self, ids: list[str], timeout: float = 60) -> dict[str, list[int]]:
        """CHARGE amounts per request id, once every request has one."""
        deadline = time.monotonic() + timeout
        while True:
            events: dict[str, dict[str, Any]] = {}
            for _raw, rec in self.read(Topic.AUDIT):
                if rec["request_id"] in ids and rec["kind"] == "CHARGE":
                    events[rec["event_id"]] = rec
            charged: dict[str, list[int]] = defaultdict(list)
            for rec in events.values():
                charged[rec["request_id"]].append(rec["amount_micros"])
            if len(charged) == len(ids) or time.monotonic() > deadline:
                return dict(charged)
            time.sleep(1)

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.sim_url}/sim/stats", timeout=5).json()["deployments"]  # type: ignore[no-any-return]

    def behave(self, deployment: str, **behaviour: Any) -> None:
        body = {"deployments": {deployment: behaviour}}
        httpx.post(f"{self.sim_url}/sim/config", json=body, timeout=5).raise_for_status()


def _providers_file(path: Path, port: int) -> None:
    deployments = {
        model: [
            {
                "name": name,
                "base_url": f"http://127.0.0.1:{port}/d/{name}/v1",
                "timeout_s": 1.5 if model == "claude-sonnet" else 30,
                "max_concurrent": 64,
            }
            for name in names
        ]
        for model, names in MODELS.items()
    }
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "retry": {"max_attempts": 2, "base_backoff_s": 0.05, "max_backoff_s": 2.0},
                "breaker": {"failures": 3, "window_s": 60, "cooldown_s": 4},
                "models": {m: {"deployments": d} for m, d in deployments.items()},
            }
        )
    )


@pytest.fixture(scope="module")
def dispatch(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dispatch]:
    tmp = tmp_path_factory.mktemp("dispatch")
    run = uuid.uuid4().hex[:6]
    s = bench_settings(stack, f"gsdisp{run}", tmp).model_copy(
        update={"worker_web_port": free_port()}
    )
    ensure_topics(s)
    registry = Registry(s)
    schema_ops.register_all(s, registry)
    request_id = registry.lookup(subject_for(s, Topic.REQUESTS), schema_text("request", SCHEMA_DIR))
    assert request_id is not None
    tenants = "".join(f"  - tenant_id: {t}\n    tier: premium\n" for t in ("disp", "dispkill"))
    tenants += "  - tenant_id: disptox\n    tier: premium\n    policy:\n      toxicity: block\n"
    (tmp / "tenants.yaml").write_text("tenants:\n" + tenants)
    tenant_ops.apply(s, tmp / "tenants.yaml")
    port = free_port()
    (tmp / "sim.yaml").write_text(
        yaml.safe_dump(
            {
                "seed": 7,
                "default": {"completion_tokens": SIM_TOKENS},
                "deployments": {
                    name: {"completion_tokens": SIM_TOKENS, **b} for name, b in BEHAVIOURS.items()
                },
            }
        )
    )
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guardstream",
            "provider-sim",
            "--port",
            str(port),
            "--config",
            str(tmp / "sim.yaml"),
        ],
        stdout=(tmp / "sim.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    sim_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{sim_url}/sim/stats", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and sim.poll() is None, (tmp / "sim.log").read_text()
            time.sleep(0.3)
    _providers_file(tmp / "providers.yaml", port)
    env = {
        "GUARDSTREAM_DISPATCH": "true",
        "GUARDSTREAM_PROVIDERS_FILE": str(tmp / "providers.yaml"),
    }
    worker = WorkerProcess(s, tmp / "worker.log", loglevel="info", extra_env=env)
    deadline = time.monotonic() + 180
    while not worker.ready():
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.5)
    producer = Producer(kafka_config(s, {"linger.ms": 5}))
    d = Dispatch(s, tmp, sim_url, worker, request_id, producer, Codec(s, registry))
    d.env = env  # type: ignore[attr-defined]
    yield d
    for w in WorkerProcess.every:
        if w.log.parent == tmp and w.proc.poll() is None:
            w.stop()
    sim.terminate()
    sim.wait(10)
    registry.close()


def _price(model: str, usage: Usage) -> int:
    spec = load_catalog(Settings().model_catalog).models[model]
    return apply_multiplier(usage_cost_micros(usage, spec), 9000)  # premium: 0.9x


def _usage(c: dict[str, Any]) -> Usage:
    return Usage(c["prompt_tokens"], c["completion_tokens"], c["cached_tokens"])


def test_failover_answers_from_the_secondary_and_spend_is_the_simulated_usage_priced(
    dispatch: Dispatch,
) -> None:
    ids = dispatch.send("disp", "gpt-4o-mini", 6, "failover")
    done = dispatch.completions(ids)
    assert {c["outcome"] for c in done.values()} == {"COMPLETED"}, [
        (c["code"], c["detail"], c["attempts"]) for c in done.values()
    ]
    assert {c["deployment"] for c in done.values()} == {"mini-secondary"}
    assert all(c["text"] and not c["usage_estimated"] for c in done.values())
    # What the simulator reported: 30 + 10 reasoning completion tokens, half the prompt cached.
    assert {c["completion_tokens"] for c in done.values()} == {40}
    assert all(c["cached_tokens"] == c["prompt_tokens"] // 2 > 0 for c in done.values())
    charges = dispatch.charges(ids)
    assert {rid: sum(v) for rid, v in charges.items()} == {
        rid: _price("gpt-4o-mini", _usage(c)) for rid, c in done.items()
    }
    assert all(len(v) == 1 for v in charges.values()), "a request charged twice"
    stats = dispatch.stats()
    # The breaker opened after 3 failures in its window: later requests skipped the primary.
    assert stats["mini-primary"]["calls"] < 2 * len(ids)


def test_the_breaker_lets_a_probe_through_after_its_cooldown_and_closes(
    dispatch: Dispatch,
) -> None:
    dispatch.send("disp", "gpt-4o-mini", 4, "open")  # keeps the primary's breaker open
    time.sleep(1)
    dispatch.behave("mini-primary", completion_tokens=SIM_TOKENS)  # healthy again
    before = dispatch.stats()["mini-primary"]["outcomes"].get("ok", 0)
    time.sleep(5)  # past the 4 s cool-down
    # Half-open: one probe goes to the primary (requests meanwhile go to the secondary); its
    # success closes the breaker, and the primary takes everything again.
    (probe,) = dispatch.completions(dispatch.send("disp", "gpt-4o-mini", 1, "probe")).values()
    assert probe["deployment"] == "mini-primary"
    ids = dispatch.send("disp", "gpt-4o-mini", 4, "recovered")
    done = dispatch.completions(ids)
    assert {c["deployment"] for c in done.values()} == {"mini-primary"}
    assert dispatch.stats()["mini-primary"]["outcomes"].get("ok", 0) == before + 1 + len(ids)


def test_a_429_is_retried_after_its_retry_after(dispatch: Dispatch) -> None:
    ids = dispatch.send("disp", "gpt-4o", 1, "ratelimited")
    (c,) = dispatch.completions(ids).values()
    assert c["outcome"] == "COMPLETED" and c["deployment"] == "4o-primary"
    assert c["attempts"] == 2 and c["latency_ms"] >= 1000  # waited out retry-after: 1
    assert dispatch.stats()["4o-primary"]["idempotency_keys"][ids[0]] == 2


def test_answers_are_guarded_by_the_tenants_policy(dispatch: Dispatch) -> None:
    # PII in an answer is redacted (the default policy); a toxic answer is withheld for a
    # tenant whose policy blocks toxicity, and charged for what the provider generated.
    dispatch.behave(
        "4o-primary", completion_tokens=SIM_TOKENS, text="Write to jane.doe@example.com today."
    )
    (pii,) = dispatch.completions(dispatch.send("disp", "gpt-4o", 1, "pii")).values()
    assert pii["outcome"] == "COMPLETED"
    assert "jane.doe@example.com" not in pii["text"] and pii["findings"].get("EMAIL") == 1
    dispatch.behave(
        "4o-primary",
        completion_tokens=SIM_TOKENS,
        text="You are a fucking idiot and everyone hates you. " * 3,
    )
    ids = dispatch.send("disptox", "gpt-4o", 1, "toxic")
    (tox,) = dispatch.completions(ids).values()
    assert (tox["outcome"], tox["code"], tox["text"]) == ("BLOCKED", "OUTPUT_TOXICITY_BLOCKED", "")
    assert tox["toxicity"] is not None and tox["toxicity"] >= 0.8
    # A short answer is held whole (the guard holds back 2 KB), so the stream completed and
    # the provider's own usage is charged.
    assert not tox["usage_estimated"] and tox["completion_tokens"] == SIM_TOKENS
    (charged,) = dispatch.charges(ids).values()
    assert charged == [_price("gpt-4o", _usage(tox))]


def test_broken_streams_are_settled_from_the_estimate(dispatch: Dispatch) -> None:
    ids = dispatch.send("disp", "claude-haiku", 2, "broken")
    done = dispatch.completions(ids)
    for c in done.values():
        assert (c["outcome"], c["code"]) == ("FAILED", "PROVIDER_UNAVAILABLE")
        # The stream broke: guardstream charges up to max_tokens, the provider's bound.
        assert c["usage_estimated"] and c["completion_tokens"] == MAX_TOKENS
    charges = dispatch.charges(ids)
    assert {rid: sum(v) for rid, v in charges.items()} == {
        rid: _price("claude-haiku", _usage(c)) for rid, c in done.items()
    }


def test_a_provider_that_hangs_times_out(dispatch: Dispatch) -> None:
    ids = dispatch.send("disp", "claude-sonnet", 1, "hang")
    (c,) = dispatch.completions(ids).values()
    assert (c["outcome"], c["code"]) == ("FAILED", "TIMEOUT")
    assert c["attempts"] == 4  # two tries of each of two deployments


def _calls_for(dispatch: Dispatch, rid: str) -> int:
    return sum(d["idempotency_keys"].get(rid, 0) for d in dispatch.stats().values())


def test_a_copy_of_an_answered_decision_calls_and_sends_nothing(dispatch: Dispatch) -> None:
    # The meter re-emits the decisions it had made when it restarts: copies at later offsets,
    # possibly long after the first was answered and committed.
    [rid] = dispatch.send("disp", "gpt-4o-mini", 1, "copied")
    first = dispatch.completions([rid])[rid]
    calls = _calls_for(dispatch, rid)
    s = dispatch.s
    topic = s.topic(Topic.ADMITTED)
    c = Consumer(kafka_config(s, {"group.id": s.app_id, "enable.auto.commit": False}))
    tp = TopicPartition(topic, first["admitted_partition"], first["admitted_offset"])
    assign_from_beginning(c, [topic])
    original = None
    while original is None:
        msg = c.poll(5.0)
        assert msg is not None, "the admitted record is not on the topic"
        if (msg.partition(), msg.offset()) == (tp.partition, tp.offset):
            original = msg

    def committed() -> int:
        [got] = c.committed([TopicPartition(topic, tp.partition)], timeout=10)
        return int(got.offset)

    deadline = time.monotonic() + 60
    while committed() <= tp.offset:
        assert time.monotonic() < deadline, "the answered record's offset is never committed"
        time.sleep(0.5)
    delivered: list[int] = []
    dispatch.producer.produce(
        topic,
        key=original.key(),
        value=original.value(),
        headers=original.headers(),
        partition=tp.partition,
        on_delivery=lambda err, m: delivered.append(-1 if err else m.offset()),
    )
    assert dispatch.producer.flush(30) == 0
    [copy_offset] = delivered
    assert copy_offset > tp.offset
    while committed() <= copy_offset:
        assert time.monotonic() < deadline + 60, "the copy's offset is never committed"
        time.sleep(0.5)
    c.close()
    assert _calls_for(dispatch, rid) == calls, "a copy of the decision called again"
    again = [raw for raw, rec in dispatch.read(Topic.COMPLETIONS) if rec["request_id"] == rid]
    assert len(set(again)) == 1, "a copy of the decision sent a different answer"
    assert [sum(v) for v in dispatch.charges([rid]).values()] == [
        _price("gpt-4o-mini", _usage(first))
    ]


def test_kill_nine_mid_flight_never_calls_a_provider_twice(dispatch: Dispatch) -> None:
    ids = dispatch.send("dispkill", "llama-3-70b", 8, "killed")
    deadline = time.monotonic() + 60
    while dispatch.stats().get("llama-primary", {}).get("in_flight", 0) < len(ids):
        assert time.monotonic() < deadline, dispatch.stats().get("llama-primary")
        time.sleep(0.2)
    dispatch.worker.kill()  # every call in flight (6 s each)
    env = dispatch.env  # type: ignore[attr-defined]
    restarted = WorkerProcess(dispatch.s, dispatch.tmp / "worker-2.log", "info", env)
    dispatch.worker = restarted
    done = dispatch.completions(ids, timeout=180)
    # Documented: a call in flight when its worker died is answered INTERRUPTED, not made
    # again, and charged its reservation (the estimate up to max_tokens).
    assert {(c["outcome"], c["code"]) for c in done.values()} == {("FAILED", "INTERRUPTED")}
    keys = dispatch.stats()["llama-primary"]["idempotency_keys"]
    assert all(keys[rid] == 1 for rid in ids)
    charges = dispatch.charges(ids)
    assert all(len(v) == 1 for v in charges.values()), "a request charged twice"
    assert {rid: sum(v) for rid, v in charges.items()} == {
        rid: _price("llama-3-70b", _usage(c)) for rid, c in done.items()
    }
