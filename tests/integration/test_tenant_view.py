"""`GET /tenants/{id}/state` and `guardstream tenants show TENANT` against a real worker.

A few requests and one usage report for `meterview` (tests/integration/tenants.yaml) go
through the real pipeline; the view must report exactly the money and bucket levels the
catalog prices, the tier and the tenant's limits imply. Then a second worker joins: whichever
of the two does not own the tenant's partition must forward to the one that does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer

from guardstream.chaos.exactness import headers as _headers
from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.config.tenants import Limits, limits_for, load_tenants_file, load_tiers
from guardstream.guardrails.tokens import estimate_prompt_tokens
from guardstream.metering.money import apply_multiplier, cost_micros
from guardstream.metering.step import THRESHOLDS_PCT
from guardstream.ops.worker_process import worker_env
from guardstream.serde.avro import encode
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import reader_schema, schema_text
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import USAGE_TYPE, subject_for
from tests import SCHEMA_DIR, free_port

from .conftest import TENANTS_FILE, Results, Worker
from .test_first_slice import _data, _sdk_message, _send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
TENANT = "meterview"
N = 3  # requests; the first one gets a usage report
USAGE_IN, USAGE_OUT = 20, 50


@dataclass
class Metered:
    """What the module's traffic was and what it must have cost."""

    limits: Limits
    reserve: int  # micro-dollars held per request
    charge: int  # micro-dollars charged for the usage report
    tokens: int  # tokens each request takes from the tokens bucket
    sent_ms: int  # wall clock just before the first request was produced
    request_ids: list[str]
    decisions: list[dict[str, Any]]


def _url(settings: Settings, tenant: str = TENANT) -> str:
    return f"http://127.0.0.1:{settings.worker_web_port}/tenants/{tenant}/state"


def _get_view(settings: Settings, tenant: str = TENANT, timeout: float = 60) -> httpx.Response:
    """The view, once the worker is past any 503 (start-up, rebalance)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(_url(settings, tenant), timeout=10)
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        time.sleep(0.5)


def _show(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardstream", "tenants", "show", *args],
        # Wide enough that rich does not truncate the tables' cells.
        env={**worker_env(settings), "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def _send_usage(producer: Producer, settings: Settings, request_id: str) -> None:
    registry = Registry(settings)
    schema_id = registry.lookup(subject_for(settings, "usage"), schema_text("usage", SCHEMA_DIR))
    registry.close()
    assert schema_id
    value = encode(
        schema_id,
        reader_schema("usage", SCHEMA_DIR),
        {
            "request_id": request_id,
            "tenant_id": TENANT,
            "model": "gpt-4o-mini",
            "input_tokens": USAGE_IN,
            "output_tokens": USAGE_OUT,
        },
    )
    producer.produce(
        settings.topic("usage"),
        key=TENANT.encode(),
        value=value,
        headers=_headers(f"use-{request_id}", USAGE_TYPE),
    )
    assert producer.flush(10) == 0


@pytest.fixture(scope="module")
def metered(stack: Settings, worker: Worker) -> Iterator[Metered]:
    tiers = load_tiers(stack.tiers_file)
    config = {c.tenant_id: c for c in load_tenants_file(TENANTS_FILE, tiers)}[TENANT]
    lim = limits_for(TENANT, config, tiers)
    assert lim is not None
    spec = load_catalog(stack.model_catalog).models["gpt-4o-mini"]
    data = _data(TENANT)
    prompt = estimate_prompt_tokens(
        [(m["role"], m["content"]) for m in data["messages"]], spec.family
    )
    reserve = apply_multiplier(
        cost_micros(prompt, spec.input_micros_per_mtok)
        + cost_micros(data["max_tokens"], spec.output_micros_per_mtok),
        lim.cost_multiplier_bp,
    )
    charge = apply_multiplier(
        cost_micros(USAGE_IN, spec.input_micros_per_mtok)
        + cost_micros(USAGE_OUT, spec.output_micros_per_mtok),
        lim.cost_multiplier_bp,
    )
    producer = Producer(kafka_config(stack, log_level=0))
    results = Results(stack)
    try:
        sent_ms = int(time.time() * 1000)
        ids = []
        for _ in range(N):
            rid, msg = _sdk_message(stack, data)
            ids.append(rid)
            _send(producer, stack, msg)
        hits = results.wait_for(lambda t, r: r.get("request_id") in ids, count=N)
        decisions = [r for _, r, _ in hits]
        assert [d["outcome"] for d in decisions] == ["ADMITTED"] * N, decisions
        _send_usage(producer, stack, ids[0])
        # The usage report has no decision: its charge shows in the view when it is applied.
        deadline = time.monotonic() + 60
        while _get_view(stack).json()["budget"]["daily"]["charged_micros"] == 0:
            assert time.monotonic() < deadline, "the usage report was never charged"
            time.sleep(0.5)
        yield Metered(lim, reserve, charge, prompt + data["max_tokens"], sent_ms, ids, decisions)
    finally:
        results.close()


def _check_live(view: dict[str, Any], m: Metered) -> None:
    """The money and bucket levels the traffic implies, to the micro-dollar and token."""
    lim = m.limits
    assert lim.daily_budget_micros is not None and lim.monthly_budget_micros is not None
    reserved = (N - 1) * m.reserve
    daily, monthly = view["budget"]["daily"], view["budget"]["monthly"]
    for period, limit in ((daily, lim.daily_budget_micros), (monthly, lim.monthly_budget_micros)):
        assert period["limit_micros"] == limit
        assert period["charged_micros"] == m.charge
        assert period["reserved_micros"] == reserved
        assert period["released_micros"] == m.reserve - m.charge
        assert period["remaining_micros"] == max(0, limit - m.charge - reserved)
        # Nothing was used after the last reservation beyond what all N held at that point.
        peak = N * m.reserve
        assert period["alerts_crossed_pct"] == [
            pct for pct in THRESHOLDS_PCT if peak * 100 >= limit * pct
        ]
    assert view["reserved_total_micros"] == reserved
    now_ms = view["as_of"]["now_ms"]
    # Refill is one request / one token a minute: levels are exact for the first minute.
    assert now_ms - m.sent_ms < 60_000, "too slow for the bucket check: refill has begun"
    assert view["rate"]["requests"] == {
        "level": lim.burst_requests - N,
        "capacity": lim.burst_requests,
        "per_minute": lim.requests_per_minute,
    }
    assert view["rate"]["tokens"] == {
        "level": lim.burst_tokens - N * m.tokens,
        "capacity": lim.burst_tokens,
        "per_minute": lim.tokens_per_minute,
    }
    assert m.sent_ms <= view["as_of"]["last_metered_ms"] <= now_ms


def test_view_reports_exact_spend_reservations_and_buckets(
    stack: Settings, metered: Metered
) -> None:
    # The meter's own figure for each reservation is the one computed from the catalog.
    assert {d["cost_estimate_micros"] for d in metered.decisions} == {metered.reserve}
    resp = _get_view(stack)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["tenant_id"] == TENANT and view["configured"] and view["metered"]
    assert view["tier"] == metered.limits.tier
    assert view["answered_by"] == f"http://127.0.0.1:{stack.worker_web_port}"
    _check_live(view, metered)


def test_cli_json_prints_config_and_live_state(stack: Settings, metered: Metered) -> None:
    out = _show(stack, TENANT, "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    lim = metered.limits
    assert shown["tenant_id"] == TENANT and shown["live_error"] is None
    assert shown["config"]["requests_per_minute"] == lim.requests_per_minute
    assert shown["config"]["daily_budget_micros"] == lim.daily_budget_micros
    assert shown["config"]["tier"] == lim.tier
    _check_live(shown["live"], metered)


def test_unknown_tenant_is_404_and_the_cli_names_the_fix(stack: Settings, worker: Worker) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    resp = _get_view(stack, ghost)
    assert resp.status_code == 404
    assert "not configured" in resp.json()["error"]
    out = _show(stack, ghost)
    assert out.returncode == 2
    assert "not configured" in out.stderr and "tenants apply" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_without_a_worker_prints_the_config_and_one_line(stack: Settings) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    out = _show(stack, TENANT, GUARDSTREAM_WORKER_URL=nobody)
    assert out.returncode == 0, out.stderr
    assert TENANT in out.stdout and "req/min" in out.stdout  # the configured part
    assert f"no worker at {nobody}" in out.stderr and "guardstream worker" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    as_json = json.loads(_show(stack, TENANT, "--json", GUARDSTREAM_WORKER_URL=nobody).stdout)
    assert as_json["live"] is None and as_json["config"] is not None
    assert as_json["live_error"].startswith(f"no worker at {nobody}")


def test_the_worker_not_owning_the_tenant_forwards_to_the_owner(
    stack: Settings, worker: Worker, metered: Metered, tmp_path: Path
) -> None:
    # Run last in this module: it changes the group's membership while it runs.
    other = Worker(
        stack.model_copy(
            update={"worker_web_port": free_port(), "worker_state_dir": tmp_path / "state-b"}
        ),
        tmp_path / "worker-b.log",
    )
    urls = {w: f"http://127.0.0.1:{w.settings.worker_web_port}" for w in (worker, other)}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, "the two workers never both answered"
            if worker.ready() and other.ready():
                answers = [httpx.get(_url(w.settings), timeout=10) for w in (worker, other)]
                if all(a.status_code == 200 for a in answers):
                    views = [a.json() for a in answers]
                    # Both name the same owner once the assignment has settled on both.
                    if views[0]["answered_by"] == views[1]["answered_by"]:
                        break
            time.sleep(0.5)
        owner = views[0]["answered_by"]
        assert owner in urls.values()
        forwarded = [w for w in (worker, other) if urls[w] != owner]
        assert len(forwarded) == 1  # exactly one of the two asked the other
        # The answer came from the worker consuming the tenant's metering partition, as the
        # producer's partitioner (murmur2 of the key) placed the tenant's records there.
        everyone = list(range(stack.default_partitions))
        index = DefaultPartitioner()(TENANT.encode(), everyone, everyone)
        part = f"{stack.topic('metering')}[{index}]"
        for w in (worker, other):
            held = httpx.get(urls[w] + "/debug/consumer", timeout=10).json()["partitions"]
            assert (part in held) == (urls[w] == owner), (urls[w], sorted(held))
        for view in views:
            _check_live(view, metered)  # the owner may be the newcomer, restored from changelog
    finally:
        other.stop()  # a clean leave: the session worker gets its partitions back at once
