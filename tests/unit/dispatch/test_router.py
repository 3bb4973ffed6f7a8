"""Failover across deployments, driven by scripted fakes, a manual clock and a seeded rng."""

from __future__ import annotations

import asyncio
from collections import Counter

from guardstream.config.providers import Deployment
from guardstream.dispatch.attempt import Outcome
from guardstream.dispatch.router import BREAKER_OPEN, CompletionCode, Router, RouteResult
from guardstream.runtime.breaker import BreakerState
from tests.unit.dispatch.fakes import OK, Clock, Res, Script, providers, router

E500 = Res(Outcome.SERVER_ERROR)
TIMEOUT = Res(Outcome.TIMEOUT)


def route(r: Router, model: str = "m", request_id: str = "r1") -> RouteResult:
    return asyncio.run(r.route(model, request_id))


def test_first_deployment_500s_then_the_second_answers() -> None:
    script, clock = Script({"a": [E500]}), Clock()
    result = route(router(providers(), script, clock))
    assert result.ok and result.deployment == "b" and result.result is OK
    assert script.calls == ["a", "a", "b"]  # a retried once (max_attempts 2), then b
    assert [(s.deployment, s.outcome) for s in result.trace] == [
        ("a", "SERVER_ERROR"),
        ("a", "SERVER_ERROR"),
        ("b", "OK"),
    ]
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= 0.1
    assert result.trace[1].waited_s == clock.slept[0]


def test_retry_after_is_slept_before_retrying_the_same_deployment() -> None:
    script = Script({"a": [Res(Outcome.RATE_LIMITED, retry_after_s=1.5), OK]})
    clock = Clock()
    result = route(router(providers(), script, clock))
    assert result.ok and result.deployment == "a" and clock.slept == [1.5]


def test_retry_after_beyond_the_cap_moves_to_the_next_deployment_without_waiting() -> None:
    script = Script({"a": [Res(Outcome.RATE_LIMITED, retry_after_s=60)]})
    clock = Clock()
    result = route(router(providers(), script, clock))
    assert result.deployment == "b" and script.calls == ["a", "b"] and clock.slept == []


def test_malformed_answer_moves_on_without_a_retry() -> None:
    script = Script({"a": [Res(Outcome.MALFORMED)]})
    result = route(router(providers(), script, Clock()))
    assert result.deployment == "b" and script.calls == ["a", "b"]


def test_breaker_opens_after_n_failures_in_the_window_then_is_skipped() -> None:
    script, clock = Script({"a": [E500]}), Clock()
    r = router(providers(max_attempts=1, failures=3), script, clock)
    for i in range(3):
        assert route(r, request_id=f"r{i}").deployment == "b"
        clock.now += 1.0
    assert r.breaker_states()["a"] is BreakerState.OPEN
    assert r.breaker_states()["b"] is BreakerState.CLOSED
    script.calls.clear()
    result = route(r, request_id="r9")
    assert script.calls == ["b"]  # a is not called while open
    assert [(s.deployment, s.outcome) for s in result.trace] == [("a", BREAKER_OPEN), ("b", "OK")]


def test_breaker_half_opens_after_cooldown_and_a_good_probe_closes_it() -> None:
    script, clock = Script({"a": [E500, E500, E500, OK]}), Clock()
    r = router(providers(max_attempts=1, failures=3), script, clock)
    for i in range(3):
        route(r, request_id=f"r{i}")
    clock.now += 30.0  # the cool-down
    assert r.breaker_states()["a"] is BreakerState.HALF_OPEN
    result = route(r, request_id="probe")
    assert result.deployment == "a"
    assert r.breaker_states()["a"] is BreakerState.CLOSED


def test_breaker_failed_probe_reopens() -> None:
    script, clock = Script({"a": [E500]}), Clock()
    r = router(providers(max_attempts=1, failures=3), script, clock)
    for i in range(3):
        route(r, request_id=f"r{i}")
    clock.now += 30.0
    assert route(r, request_id="probe").deployment == "b"
    assert r.breaker_states()["a"] is BreakerState.OPEN


def test_context_length_goes_to_the_configured_larger_model() -> None:
    p = providers(models={"small": ["s1", "s2"], "big": ["b1"]}, fallback={"small": "big"})
    script = Script({"s1": [Res(Outcome.CONTEXT_LENGTH)]})
    result = route(router(p, script, Clock()), model="small")
    assert result.ok and result.model == "big" and result.deployment == "b1"
    assert script.calls == ["s1", "b1"]  # s2 serves the same small window: not tried


def test_context_length_without_fallback_is_rejected() -> None:
    script = Script({"a": [Res(Outcome.CONTEXT_LENGTH)]})
    result = route(router(providers(), script, Clock()))
    assert result.error is CompletionCode.PROVIDER_REJECTED and script.calls == ["a"]


def test_context_length_breaker_is_not_a_failure() -> None:
    script = Script({"a": [Res(Outcome.CONTEXT_LENGTH)]})
    r = router(providers(failures=1), script, Clock())
    route(r)
    assert r.breaker_states()["a"] is BreakerState.CLOSED


def test_rejected_is_final_at_once() -> None:
    script = Script({"a": [Res(Outcome.REJECTED)]})
    result = route(router(providers(), script, Clock()))
    assert result.error is CompletionCode.PROVIDER_REJECTED and script.calls == ["a"]
    assert result.result is not None and result.result.outcome == Outcome.REJECTED


def test_all_failing_by_5xx_and_429_is_unavailable() -> None:
    script = Script({"a": [E500], "b": [Res(Outcome.RATE_LIMITED)]})
    result = route(router(providers(), script, Clock()))
    assert result.error is CompletionCode.PROVIDER_UNAVAILABLE and not result.ok
    assert script.calls == ["a", "a", "b", "b"]


def test_last_call_timing_out_is_timeout() -> None:
    script = Script({"a": [E500], "b": [TIMEOUT]})
    assert route(router(providers(), script, Clock())).error is CompletionCode.TIMEOUT
    # ...and the other way round it is the 5xx that ended it.
    script = Script({"a": [TIMEOUT], "b": [E500]})
    assert route(router(providers(), script, Clock())).error is CompletionCode.PROVIDER_UNAVAILABLE


def test_every_breaker_open_is_unavailable_with_no_call_made() -> None:
    script, clock = Script({"a": [E500], "b": [E500]}), Clock()
    r = router(providers(max_attempts=1, failures=1), script, clock)
    route(r)
    script.calls.clear()
    result = route(r, request_id="r2")
    assert result.error is CompletionCode.PROVIDER_UNAVAILABLE and result.result is None
    assert script.calls == [] and {s.outcome for s in result.trace} == {BREAKER_OPEN}


def test_unknown_model_is_unavailable() -> None:
    result = route(router(providers(), Script(), Clock()), model="nope")
    assert result.error is CompletionCode.PROVIDER_UNAVAILABLE and result.trace == ()


def test_concurrency_limit_per_deployment_is_respected() -> None:
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def slow(deployment: Deployment, model: str) -> Res:
        in_flight[deployment.name] += 1
        peak[deployment.name] = max(peak[deployment.name], in_flight[deployment.name])
        await asyncio.sleep(0.01)
        in_flight[deployment.name] -= 1
        return OK

    async def many() -> list[RouteResult]:
        r = Router(providers(max_concurrent=3), slow)
        return await asyncio.gather(*(r.route("m", f"r{i}") for i in range(20)))

    results = asyncio.run(many())
    assert all(r.ok for r in results)
    assert peak["a"] == 3  # the limit was reached, never passed


def test_weights_pick_the_first_deployment_deterministically_per_request() -> None:
    p = providers(models={"m": ["a", "b", "c"]}, weights={"a": 3, "b": 1})
    r = Router(p, Script())
    firsts = Counter(r.order("m", f"req-{i}")[0].name for i in range(4000))
    assert set(firsts) == {"a", "b"}  # c has no weight: a fallback only
    assert 2700 < firsts["a"] < 3300
    assert [d.name for d in r.order("m", "req-1")] == [d.name for d in r.order("m", "req-1")]
    assert [d.name for d in r.order("m", "req-1")][1:] in (["b", "c"], ["a", "c"])


def test_half_open_breaker_lets_one_probe_through_concurrent_requests() -> None:
    clock = Clock()

    async def run() -> list[RouteResult]:
        gate = asyncio.Event()
        calls: list[str] = []

        async def attempt(deployment: Deployment, model: str) -> Res:
            calls.append(deployment.name)
            if deployment.name == "a" and clock.now < 30:
                return E500
            if deployment.name == "a":
                await gate.wait()  # the probe is still in flight...
            return OK

        r = Router(providers(max_attempts=1, failures=1), attempt, clock=clock)
        await r.route("m", "r0")  # opens a
        clock.now = 30.0
        probe = asyncio.create_task(r.route("m", "probe"))
        await asyncio.sleep(0)
        other = await r.route("m", "other")  # ...so this one skips a
        gate.set()
        return [await probe, other]

    probe, other = asyncio.run(run())
    assert probe.deployment == "a" and other.deployment == "b"
    assert other.trace[0].outcome == BREAKER_OPEN


def test_a_cancelled_probe_frees_the_half_open_slot() -> None:
    clock = Clock()
    probes: list[str] = []

    async def run() -> RouteResult:
        async def attempt(deployment: Deployment, model: str) -> Res:
            if clock.now < 30:
                return E500
            probes.append(model)
            if len(probes) == 1:
                await asyncio.sleep(10)  # the first probe hangs until cancelled
            return OK

        p = providers(models={"m": ["a"]}, max_attempts=1, failures=1)
        r = Router(p, attempt, clock=clock)
        await r.route("m", "r0")
        clock.now = 30.0
        probe = asyncio.create_task(r.route("m", "probe"))
        await asyncio.sleep(0)
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        assert r.breaker_states()["a"] is BreakerState.HALF_OPEN
        return await r.route("m", "next")  # may probe again

    result = asyncio.run(run())
    assert result.ok and len(probes) == 2
