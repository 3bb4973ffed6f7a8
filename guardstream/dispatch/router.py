"""Failover across a model's deployments: order, breakers, concurrency limits, retries.

One `Router` lives as long as the worker: it owns one circuit breaker and one concurrency
limit per deployment, so what one request learns about a deployment (it is down) spares the
next ones. The call itself, the sleep, the clock and the random source are injected, so the
whole orchestration runs in tests against fakes, without a network or real time.

How one request is routed (`Router.route`):

1. Deployments in the configured order; with weights, the first is drawn by weight,
   deterministically from the request id (`Router.order`).
2. A deployment whose breaker is open is skipped (recorded in the trace as BREAKER_OPEN);
   a half-open one lets a single probe through. A call waits for one of the deployment's
   `max_concurrent` slots, held for the call only, not for the backoff after it.
3. Retries per `dispatch.retry`: passing failures are retried on the same deployment with
   jittered backoff (honouring retry-after), then the next deployment is tried.
4. CONTEXT_LENGTH goes to the model's `context_fallback`, once per model, where the file
   names one; the answer then reports the model that gave it.

The final error code, when no deployment gave an answer:

* `PROVIDER_REJECTED`: a deployment answered REJECTED (a 4xx other than 429), or
  CONTEXT_LENGTH with no context fallback left. Final at once: another deployment of the
  same model would refuse the same request.
* `TIMEOUT`: every deployment was tried or skipped, and the last call made timed out.
* `PROVIDER_UNAVAILABLE`: every deployment was tried or skipped, and the last call made
  ended otherwise (429, 5xx, broken stream, malformed answer) - or no call could be made at
  all (every breaker open, or no deployment for the model).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from guardstream.config.providers import Deployment, Providers
from guardstream.dispatch.attempt import AttemptFn, CallResult, Outcome
from guardstream.dispatch.codes import CompletionCode
from guardstream.dispatch.retry import counts_against_deployment, retry_delay_s
from guardstream.runtime.breaker import BreakerState, CircuitBreaker

# The trace's outcome for a deployment skipped because its breaker was open.
BREAKER_OPEN = "BREAKER_OPEN"
# A breaker state as a gauge value (for a `..._breaker_state` metric per deployment).
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True)
class AttemptRecord:
    """One step of a request's route, for metrics and logs."""

    model: str
    deployment: str
    outcome: str  # an Outcome value, or BREAKER_OPEN (no call made)
    latency_s: float
    waited_s: float = 0.0  # backoff slept before this try


@dataclass(frozen=True)
class RouteResult:
    """How a request's route ended.

    On success `result` is the answer, `model` and `deployment` who gave it. On failure
    `error` is set and `result` is the last call's answer (its text and usage still matter
    for a broken stream), or None when no call was made.
    """

    model: str
    deployment: str | None
    result: CallResult | None
    error: CompletionCode | None
    trace: tuple[AttemptRecord, ...]

    @property
    def ok(self) -> bool:
        """Whether a deployment answered."""
        return self.error is None


class Router:
    """Routes calls for every model of a providers file; one per worker."""

    def __init__(
        self,
        providers: Providers,
        attempt: AttemptFn,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.providers = providers
        self._attempt = attempt
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        for model, route in providers.models.items():
            policy = providers.breaker_for(model)
            for d in route.deployments:
                # A fixed cool-down, as configured: base and max are the same.
                self._breakers[d.name] = CircuitBreaker(
                    threshold=policy.failures,
                    base_cooldown_s=policy.cooldown_s,
                    max_cooldown_s=policy.cooldown_s,
                    window_s=policy.window_s,
                )
                self._slots[d.name] = asyncio.Semaphore(d.max_concurrent)

    def breaker_states(self) -> dict[str, BreakerState]:
        """Each deployment's breaker state now, by deployment name (for metrics)."""
        now = self._clock()
        return {name: b.state(now) for name, b in self._breakers.items()}

    def order(self, model: str, request_id: str) -> list[Deployment]:
        """The model's deployments in the order this request tries them.

        Without weights: the configured order. With weights, the first deployment is drawn
        among the weighted ones in proportion to their weights, from a hash of the model and
        request id (the same request - a redelivery - goes the same way; no shared random
        state), and the others follow in the configured order. A deployment without a weight
        is then a fallback only: it is never tried first.
        """
        route = self.providers.route(model)
        if route is None:
            return []
        deployments = list(route.deployments)
        weighted = [d for d in deployments if d.weight]
        if not weighted:
            return deployments
        digest = hashlib.sha256(f"{model}\0{request_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % sum(d.weight or 0 for d in weighted)
        for first in weighted:
            point -= first.weight or 0
            if point < 0:
                break
        return [first, *(d for d in deployments if d is not first)]

    async def route(
        self, model: str, request_id: str = "", attempt: AttemptFn | None = None
    ) -> RouteResult:
        """Call the model's deployments until one answers or none is left (module docstring).

        `attempt` makes one call for this request (its messages, its idempotency key); the
        router's own attempt function is used when none is given.
        """
        trace: list[AttemptRecord] = []
        last: CallResult | None = None
        visited = {model}
        current = model
        while True:
            policy = self.providers.retry_for(current)
            fallback: str | None = None
            for d in self.order(current, request_id):
                tries = 0
                waited = 0.0
                while True:
                    tries += 1
                    result = await self._call(d, current, trace, waited, attempt or self._attempt)
                    if result is None:  # breaker open
                        break
                    last = result
                    if result.outcome in (Outcome.OK, Outcome.STOPPED):  # an answer
                        return RouteResult(current, d.name, result, None, tuple(trace))
                    if result.outcome == Outcome.REJECTED:
                        return self._failed(current, last, CompletionCode.PROVIDER_REJECTED, trace)
                    if result.outcome == Outcome.CONTEXT_LENGTH:
                        route = self.providers.route(current)
                        fallback = route.context_fallback if route else None
                        if fallback is None or fallback in visited:
                            return self._failed(
                                current, last, CompletionCode.PROVIDER_REJECTED, trace
                            )
                        break
                    delay = retry_delay_s(
                        result.outcome, tries, policy, self._rng, result.retry_after_s
                    )
                    if delay is None:
                        break
                    await self._sleep(delay)
                    waited = delay
                if fallback is not None:
                    break
            if fallback is None:
                break
            visited.add(fallback)
            current = fallback
        timed_out = last is not None and last.outcome == Outcome.TIMEOUT
        code = CompletionCode.TIMEOUT if timed_out else CompletionCode.PROVIDER_UNAVAILABLE
        return self._failed(current, last, code, trace)

    async def _call(
        self,
        d: Deployment,
        model: str,
        trace: list[AttemptRecord],
        waited: float,
        attempt: AttemptFn,
    ) -> CallResult | None:
        """One call through the deployment's breaker and slots; None when the breaker is open."""
        breaker = self._breakers[d.name]
        # Checked before waiting for a slot too: no queueing behind a deployment that is down.
        if breaker.allow(self._clock()):
            async with self._slots[d.name]:
                if breaker.try_acquire(self._clock()):
                    try:
                        result = await attempt(d, model)
                    except BaseException:
                        breaker.abandon()  # cancelled (or a bug): free the probe slot
                        raise
                    if counts_against_deployment(result.outcome):
                        breaker.failure(self._clock())
                    else:
                        breaker.success()
                    trace.append(
                        AttemptRecord(model, d.name, result.outcome, result.latency_s, waited)
                    )
                    return result
        trace.append(AttemptRecord(model, d.name, BREAKER_OPEN, 0.0, waited))
        return None

    @staticmethod
    def _failed(
        model: str, last: CallResult | None, code: CompletionCode, trace: list[AttemptRecord]
    ) -> RouteResult:
        return RouteResult(model, None, last, code, tuple(trace))
