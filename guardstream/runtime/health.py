"""Liveness and readiness pages on the worker's web port, and the `guardstream_worker_ready` gauge.

* ``/health/live`` answers 200 whenever the event loop is able to run a handler: a wedged
  loop cannot answer, so an orchestrator restarts the process.
* ``/health/ready`` answers 200 only when the worker is doing its job: the consumer is
  started and holds partitions of guardstream's topics, no rebalance is in progress, and
  table recovery (replaying changelogs into RocksDB) has completed since the last
  assignment. Otherwise 503 with a JSON body naming every reason, so an operator sees
  *why* (e.g. ``["recovering"]`` during a long changelog replay) without reading logs.

Faust's signals for this are ``app.rebalancing`` (set between partitions revoked and the end
of the rebalance), ``app.in_recovery`` (set while changelogs are replayed) and the
``app.tables.recovery.completed`` event (set once recovery of the first assignment is
done and streams resumed; it is never cleared, so the two flags cover later rebalances).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import faust
from faust.web import Request, Response, View

from guardstream.runtime.metrics import WORKER_READY

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"

# Faust restores tables from these; holding only changelog (standby) partitions is not work.
_CHANGELOG_SUFFIX = "-changelog"


@dataclass(frozen=True)
class WorkerState:
    """The facts readiness is decided from, read from the Faust app at one instant."""

    consumer_started: bool
    stopping: bool
    recovery_completed: bool
    in_recovery: bool
    rebalancing: bool
    assigned_partitions: int


@dataclass(frozen=True)
class Readiness:
    """Whether the worker is ready, and if not, every reason why (stable codes)."""

    ready: bool
    reasons: list[str] = field(default_factory=list)
    state: WorkerState | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body of `/health/ready`."""
        out: dict[str, Any] = {"ready": self.ready, "reasons": self.reasons}
        if self.state is not None:
            out.update(asdict(self.state))
        return out


def evaluate(state: WorkerState) -> Readiness:
    """Decide readiness from a state snapshot (pure)."""
    reasons = []
    if state.stopping:
        reasons.append("stopping")
    if not state.consumer_started:
        reasons.append("consumer_not_started")
    if state.rebalancing:
        reasons.append("rebalancing")
    if state.in_recovery:
        reasons.append("recovering")
    if not state.recovery_completed:
        reasons.append("recovery_not_completed")
    if state.consumer_started and state.assigned_partitions == 0:
        reasons.append("no_assignment")
    return Readiness(not reasons, reasons, state)


def worker_state(app: faust.App) -> WorkerState:
    """Read the readiness facts from a running (or starting) Faust app."""
    # `app.consumer` would create a consumer as a side effect; only look at a started one.
    consumer: Any = getattr(app, "_consumer", None)
    started = consumer is not None and bool(getattr(consumer, "started", True))
    assigned = 0
    if started:
        try:
            assigned = sum(
                1 for tp in consumer.assignment() if not tp.topic.endswith(_CHANGELOG_SUFFIX)
            )
        except Exception:
            # Mid-rebalance the client may refuse to report; that is "not ready", not a 500.
            started = False
    recovery: Any = cast(Any, app.tables).recovery
    return WorkerState(
        consumer_started=started,
        stopping=bool(getattr(app, "should_stop", False)),
        recovery_completed=recovery.completed.is_set(),
        in_recovery=bool(app.in_recovery or recovery.in_recovery),
        rebalancing=bool(app.rebalancing),
        assigned_partitions=assigned,
    )


def readiness(app: faust.App) -> Readiness:
    """The worker's readiness now."""
    return evaluate(worker_state(app))


def register_health(app: faust.App) -> None:
    """Add `/health/live` and `/health/ready` to the app and drive `guardstream_worker_ready`."""
    started_at = time.monotonic()

    @app.page(LIVE_PATH)
    async def health_live(self: View, request: Request) -> Response:
        return self.json({"live": True, "uptime_s": round(time.monotonic() - started_at, 1)})

    @app.page(READY_PATH)
    async def health_ready(self: View, request: Request) -> Response:
        result = readiness(app)
        return self.json(result.body(), status=200 if result.ready else 503)

    def ready_value() -> float:
        try:
            return 1.0 if readiness(app).ready else 0.0
        except Exception:
            return 0.0  # a half-built app is not ready, and must not break `/metrics`

    # Evaluated at scrape time, so the gauge can never disagree with the probe.
    WORKER_READY.set_function(ready_value)
