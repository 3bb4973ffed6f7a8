"""call_chat against the real simulator on a localhost port: every way a call can end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from guardstream.dispatch.attempt import Outcome
from guardstream.dispatch.http import CallResult, call_chat, retry_after
from guardstream.dispatch.simulator import Behaviour, Fail, Simulator, SimulatorConfig, running
from guardstream.dispatch.usage import Usage

MESSAGES = [{"role": "user", "content": "x" * 40}]  # 10 prompt tokens at 4 chars a token
LOREM_16 = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et"
)

Scenario = Callable[[Simulator, str, httpx.AsyncClient], Awaitable[None]]


def run(scenario: Scenario, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator and run `scenario` in one event loop (no pytest-asyncio here)."""

    async def main() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with running(config) as (sim, root), httpx.AsyncClient(limits=limits) as client:
            await scenario(sim, root, client)

    asyncio.run(main())


async def call(
    root: str,
    client: httpx.AsyncClient,
    deployment: str,
    *,
    stream: bool = False,
    timeout_s: float = 5.0,
    key: str = "idem-1",
    **kwargs: Any,
) -> CallResult:
    return await call_chat(
        client,
        f"{root}/d/{deployment}/v1",
        "sk-test",
        "gpt-sim",
        MESSAGES,
        100,
        stream=stream,
        timeout_s=timeout_s,
        idempotency_key=key,
        **kwargs,
    )


def config(**deployments: Behaviour) -> SimulatorConfig:
    return SimulatorConfig(seed=7, deployments=deployments)


def test_plain_ok_reports_usage_with_cached_and_reasoning_tokens() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        result = await call(root, client, "d")
        assert result.outcome is Outcome.OK and result.status == 200
        assert result.text == LOREM_16
        assert result.finish_reason == "stop"
        assert result.usage == Usage(
            prompt_tokens=10, completion_tokens=16 + 5, cached_tokens=5, reasoning_tokens=5
        )
        assert result.latency_s > 0

    run(scenario, config(d=Behaviour(cached_fraction=0.5, reasoning_tokens=5)))


def test_streamed_ok_assembles_the_deltas_and_reads_the_usage_chunk() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        seen: list[str] = []
        result = await call(root, client, "d", stream=True, on_chunk=seen.append)
        assert result.outcome is Outcome.OK and result.status == 200
        assert result.text == "".join(seen) == LOREM_16
        assert len(seen) == 16
        assert result.usage == Usage(10, 16, 0, 0)
        assert result.first_token_s is not None and result.first_token_s <= result.latency_s

    run(scenario, config(d=Behaviour()))


def test_configured_text_and_max_tokens() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        toxic = await call(root, client, "toxic", stream=True)
        assert toxic.text == "call me at 555-0100, idiot"
        assert toxic.usage is not None and toxic.usage.completion_tokens == 7  # ceil(26/4)
        short = await call_chat(
            client, f"{root}/v1", "k", "m", MESSAGES, 3, stream=False, timeout_s=5,
            idempotency_key="i",
        )  # fmt: skip
        assert short.text == "lorem ipsum dolor" and short.finish_reason == "length"

    run(scenario, config(toxic=Behaviour(text="call me at 555-0100, idiot")))


def test_rate_limited_with_retry_after_seconds_and_http_date() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        for stream in (False, True):
            result = await call(root, client, "seconds", stream=stream)
            assert result.outcome is Outcome.RATE_LIMITED and result.status == 429
            assert result.retry_after_s == 3
            assert result.usage is None
        dated = await call(root, client, "date")
        assert dated.outcome is Outcome.RATE_LIMITED
        assert dated.retry_after_s is not None and 8 <= dated.retry_after_s <= 10

    run(
        scenario,
        config(
            seconds=Behaviour(fail=Fail.RATE_LIMIT, retry_after_s=3),
            date=Behaviour(fail=Fail.RATE_LIMIT, retry_after_s=10, retry_after_http_date=True),
        ),
    )


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert retry_after(httpx.Headers({"retry-after": "-4"})) == 0
    assert retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    date = httpx.Headers({"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"})
    assert retry_after(date, now) == 30
    assert retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx.Headers()) is None


def test_server_errors_for_the_first_k_calls_then_ok() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        outcomes = [(await call(root, client, "d", stream=i % 2 == 1)) for i in range(4)]
        assert [r.outcome for r in outcomes] == [Outcome.SERVER_ERROR] * 2 + [Outcome.OK] * 2
        assert outcomes[0].status == 503 and outcomes[0].error is not None

    run(scenario, config(d=Behaviour(fail=Fail.STATUS, status=503, fail_first=2)))


def test_probabilistic_failures_are_repeatable_with_a_seed() -> None:
    def outcomes() -> list[Outcome]:
        seen: list[Outcome] = []

        async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
            for _ in range(30):
                seen.append((await call(root, client, "flaky")).outcome)

        run(scenario, config(flaky=Behaviour(fail=Fail.STATUS, fail_probability=0.3)))
        return seen

    first = outcomes()
    assert first == outcomes()
    assert 0 < first.count(Outcome.SERVER_ERROR) < 30


def test_timeout_bounds_the_whole_call() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        hung = await call(root, client, "hang", timeout_s=0.2)
        assert hung.outcome is Outcome.TIMEOUT and hung.status is None
        assert 0.2 <= hung.latency_s < 1
        # A stream that trickles past the deadline: partial text, no usage.
        slow = await call(root, client, "slow", stream=True, timeout_s=0.3)
        assert slow.outcome is Outcome.TIMEOUT and slow.status == 200
        assert slow.text and LOREM_16.startswith(slow.text) and slow.text != LOREM_16
        assert slow.usage is None
        # The simulator notices the hang-ups (handlers are cancelled on disconnect).
        for _ in range(50):
            stats = (await client.get(f"{root}/sim/stats")).json()["deployments"]
            if stats["hang"]["in_flight"] == stats["slow"]["in_flight"] == 0:
                break
            await asyncio.sleep(0.02)
        assert stats["hang"]["outcomes"] == {"timeout": 1}
        assert stats["slow"]["outcomes"] == {"cancelled": 1}

    run(
        scenario,
        config(hang=Behaviour(fail=Fail.TIMEOUT), slow=Behaviour(chunk_delay_s=0.1)),
    )


def test_broken_stream_returns_the_partial_text_and_no_usage() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        streamed = await call(root, client, "d", stream=True)
        assert streamed.outcome is Outcome.BROKEN_STREAM and streamed.status == 200
        assert streamed.text == "lorem ipsum dolor"
        assert streamed.usage is None
        plain = await call(root, client, "d")
        assert plain.outcome is Outcome.BROKEN_STREAM and plain.text == ""

    run(scenario, config(d=Behaviour(fail=Fail.BROKEN_STREAM, broken_after_chunks=3)))


def test_malformed_json() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        plain = await call(root, client, "d")
        assert plain.outcome is Outcome.MALFORMED and plain.status == 200
        streamed = await call(root, client, "d", stream=True)
        assert streamed.outcome is Outcome.MALFORMED and streamed.text == "lorem"

    run(scenario, config(d=Behaviour(fail=Fail.MALFORMED_JSON)))


def test_no_usage_is_ok_with_usage_none() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        for stream in (False, True):
            result = await call(root, client, "d", stream=stream)
            assert result.outcome is Outcome.OK and result.text == LOREM_16
            assert result.usage is None

    run(scenario, config(d=Behaviour(fail=Fail.NO_USAGE)))


def test_context_length_by_fail_mode_and_by_window() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        for deployment in ("fail", "window"):
            result = await call(root, client, deployment, stream=True)
            assert result.outcome is Outcome.CONTEXT_LENGTH and result.status == 400
        # 10 prompt tokens + max_tokens 100 fit in 200.
        assert (await call(root, client, "roomy")).outcome is Outcome.OK

    run(
        scenario,
        config(
            fail=Behaviour(fail=Fail.CONTEXT_LENGTH),
            window=Behaviour(context_window=100),
            roomy=Behaviour(context_window=200),
        ),
    )


def test_other_4xx_is_rejected() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        result = await call(root, client, "locked")
        assert result.outcome is Outcome.REJECTED and result.status == 401
        assert result.error is not None and "Incorrect API key" in result.error

    run(scenario, config(locked=Behaviour(api_key="sk-other")))


def test_unreachable_when_nothing_listens() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            result = await call(f"http://127.0.0.1:{port}", client, "d", timeout_s=0.5)
        assert result.outcome in (Outcome.UNREACHABLE, Outcome.TIMEOUT)
        assert result.status is None

    asyncio.run(main())


def test_on_chunk_false_stops_the_stream() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        seen: list[str] = []

        async def guard(delta: str) -> bool:
            seen.append(delta)
            return "toxic" not in delta

        result = await call(root, client, "d", stream=True, on_chunk=guard)
        assert result.outcome is Outcome.STOPPED and result.status == 200
        assert result.text == "fine words then toxic" == "".join(seen)
        assert result.usage is None
        # A sync callback, on a plain call: it sees the whole text once.
        plain = await call(root, client, "d", on_chunk=lambda text: "toxic" not in text)
        assert plain.outcome is Outcome.STOPPED

    run(scenario, config(d=Behaviour(text="fine words then toxic and more after")))


def test_idempotency_keys_are_recorded_per_deployment() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        for key in ("req-1", "req-1", "req-2"):  # a retry reuses its key
            await call(root, client, "d", key=key)
        stats = (await client.get(f"{root}/sim/stats")).json()["deployments"]["d"]
        assert stats["idempotency_keys"] == {"req-1": 2, "req-2": 1}
        assert stats["calls"] == 3 and stats["outcomes"] == {"rate_limit": 1, "ok": 2}

    run(scenario, config(d=Behaviour(fail=Fail.RATE_LIMIT, fail_first=1)))


def test_many_concurrent_calls_overlap() -> None:
    async def scenario(sim: Simulator, root: str, client: httpx.AsyncClient) -> None:
        results = await asyncio.gather(
            # A generous timeout: 300 calls on two busy cores must not fail for slowness.
            *(
                call(root, client, "d", key=f"k{i}", stream=i % 2 == 0, timeout_s=60)
                for i in range(300)
            )
        )
        assert all(r.outcome is Outcome.OK for r in results)
        stats = (await client.get(f"{root}/sim/stats")).json()
        # Sequential calls would never have more than one in flight. All 300 overlap on an
        # idle machine; half leaves room for a slow CI runner issuing them more slowly.
        assert stats["deployments"]["d"]["max_in_flight"] >= 150
        assert len(stats["deployments"]["d"]["idempotency_keys"]) == 300

    run(scenario, config(d=Behaviour(latency_s=0.2)))
