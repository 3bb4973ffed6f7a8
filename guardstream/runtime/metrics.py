"""Every Prometheus metric guardstream exports, in one place.

Labels are bounded by construction: stage, outcome, reason code, tier, topic and partition
are small closed sets; per-tenant series exist only for tenants in the opt-in allow-list
(`GUARDSTREAM_METRICS_TENANTS`), never for every tenant id a client can invent. No metric
carries prompt text or PII.

Faust's own sensors (rebalances, commit latency, per-partition offsets) are exported by its
Prometheus integration with the fixed prefix `faust_`, on the same `/metrics` page.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from guardstream.streams.topics import Topic

FAUST_PREFIX = "faust"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

EVENTS = Counter(
    "guardstream_events_total",
    "Records a stage finished, by outcome (admitted, rejected, deadletter, forwarded)",
    ["stage", "outcome"],
)
REJECTIONS = Counter(
    "guardstream_rejections_total", "Decisions on `rejected`, by reason code", ["stage", "reason"]
)
DEADLETTERS = Counter(
    "guardstream_deadletters_total", "Records sent to `deadletter`, by reason", ["stage", "reason"]
)
STAGE_LATENCY = Histogram(
    "guardstream_stage_latency_seconds",
    "Time a stage spent on one record (decode to send)",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
END_TO_END_LATENCY = Histogram(
    "guardstream_end_to_end_latency_seconds",
    "Ingress record timestamp to decision produced",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
OUTPUT_FLUSH = Histogram(
    "guardstream_output_flush_seconds",
    "Time an offset commit waited for the worker's librdkafka records to be delivered",
    buckets=_LATENCY_BUCKETS,
)
REGISTRY_LOOKUPS = Counter(
    "guardstream_registry_lookups_total",
    "Writer-schema lookups, by result (hit, miss, unknown, error)",
    ["result"],
)
REGISTRY_BREAKER = Gauge(
    "guardstream_registry_breaker_open",
    "1 while the registry circuit breaker is open (lookups paused), else 0",
)
WORKER_READY = Gauge(
    "guardstream_worker_ready", "1 once the worker has recovered its tables and is processing"
)
RATE_LIMITED = Counter(
    "guardstream_rate_limited_total", "Requests refused by a rate limit, by tier", ["tier"]
)
SPEND = Counter(
    "guardstream_spend_micros_total", "Settled spend in micro-dollars, by tier", ["tier"]
)
RESERVED = Gauge(
    "guardstream_reserved_micros", "Outstanding budget reservations in micro-dollars", ["tier"]
)
TENANT_SPEND = Counter(
    "guardstream_tenant_spend_micros_total",
    "Settled spend of allow-listed tenants (GUARDSTREAM_METRICS_TENANTS)",
    ["tenant"],
)
TENANT_BUDGET = Gauge(
    "guardstream_tenant_budget_micros",
    "Budget limit of allow-listed tenants, by period (daily, monthly)",
    ["tenant", "period"],
)
BUDGET_ALERTS = Counter(
    "guardstream_budget_alerts_total", "Budget alerts emitted, by kind and tier", ["kind", "tier"]
)
INPUT_GAPS = Counter(
    "guardstream_input_gaps_total",
    "Input offsets the consumer skipped without handing them to the stage (must stay 0)",
    ["stage"],
)
TABLE_KEYS = Gauge("guardstream_table_keys", "Keys held in each table by this worker", ["table"])


@lru_cache(maxsize=4096)
def labelled(metric: Any, *labels: str) -> Any:
    """The metric's child for these label values, cached."""
    # `labels()` costs microseconds per call on the hot path; label sets are few and fixed.
    return metric.labels(*labels)


def record_outcome(stage: str, topic: Topic, code: str, started: float, ingress_ts_ms: int) -> None:
    """Count one finished record and observe its stage and end-to-end latency.

    `topic` is where it was sent; `started` a `time.perf_counter()` reading.
    """
    labelled(EVENTS, stage, topic).inc()
    if topic is Topic.REJECTED:
        labelled(REJECTIONS, stage, code).inc()
    elif topic is Topic.DEADLETTER:
        labelled(DEADLETTERS, stage, code).inc()
    labelled(STAGE_LATENCY, stage).observe(time.perf_counter() - started)
    if topic in (Topic.ADMITTED, Topic.REJECTED):
        labelled(END_TO_END_LATENCY, stage).observe(max(0.0, time.time() - ingress_ts_ms / 1000))


# --- the dispatch stage: bounded labels (model and deployment come from the providers file)
_CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
DISPATCH_CALLS = Counter(
    "guardstream_dispatch_calls_total",
    "Provider calls, by model, deployment and how each ended (OK, RATE_LIMITED, TIMEOUT, ...)",
    ["model", "deployment", "outcome"],
)
DISPATCH_CALL_LATENCY = Histogram(
    "guardstream_dispatch_call_seconds",
    "Time of one provider call, to its last byte",
    ["model", "deployment"],
    buckets=_CALL_BUCKETS,
)
DISPATCH_COMPLETIONS = Counter(
    "guardstream_dispatch_completions_total",
    "Completions written, by outcome (COMPLETED, BLOCKED, FAILED) and code",
    ["outcome", "code"],
)
DISPATCH_TOKENS = Counter(
    "guardstream_dispatch_tokens_total",
    "Tokens settled by the dispatch stage, by model and kind (prompt, cached, completion); "
    "estimated ones too",
    ["model", "kind"],
)
DISPATCH_RETRIES = Counter(
    "guardstream_dispatch_retries_total",
    "Calls retried on the same deployment after a failure",
    ["model", "deployment"],
)
DISPATCH_FALLBACKS = Counter(
    "guardstream_dispatch_fallbacks_total",
    "Requests that moved to another deployment (or, for context length, another model)",
    ["model"],
)
DISPATCH_IN_FLIGHT = Gauge(
    "guardstream_dispatch_in_flight", "Admitted requests taken up and not yet answered"
)
DISPATCH_BREAKER = Gauge(
    "guardstream_dispatch_breaker_state",
    "Each deployment's circuit breaker: 0 closed, 1 half-open, 2 open",
    ["deployment"],
)
