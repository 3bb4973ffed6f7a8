"""The simulator's own surface: routing, admin endpoints, per-request override, requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from guardstream.dispatch.simulator import (
    Behaviour,
    Fail,
    Simulator,
    SimulatorConfig,
    estimate_tokens,
    lorem,
    running,
)

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def run(scenario: Callable[[str, httpx.AsyncClient], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with running(SimulatorConfig(**kw)) as (_, root), httpx.AsyncClient() as client:
            await scenario(root, client)

    asyncio.run(main())


def test_tokens_and_lorem_are_deterministic() -> None:
    assert estimate_tokens("") == 0 and estimate_tokens("abcde") == 2
    assert lorem(3) == "lorem ipsum dolor"
    assert len(lorem(40).split()) == 40


def test_the_root_path_is_the_default_deployment_and_unknown_names_get_the_default() -> None:
    async def scenario(root: str, client: httpx.AsyncClient) -> None:
        plain = await client.post(f"{root}/v1/chat/completions", json=BODY)
        fresh = await client.post(f"{root}/d/anything/v1/chat/completions", json=BODY)
        assert plain.status_code == fresh.status_code == 503
        stats = (await client.get(f"{root}/sim/stats")).json()["deployments"]
        assert set(stats) == {"default", "anything"}

    run(scenario, default=Behaviour(fail=Fail.STATUS, status=503))


def test_post_config_changes_a_deployment_at_run_time_and_delete_clears_stats() -> None:
    async def scenario(root: str, client: httpx.AsyncClient) -> None:
        url = f"{root}/d/d/v1/chat/completions"
        assert (await client.post(url, json=BODY)).status_code == 200
        update = {"deployments": {"d": {"fail": "status", "status": 502, "fail_first": 1}}}
        assert (await client.post(f"{root}/sim/config", json=update)).status_code == 200
        # The first call after reconfiguring fails again: fail_first counts anew.
        assert (await client.post(url, json=BODY)).status_code == 502
        assert (await client.post(url, json=BODY)).status_code == 200
        bad = await client.post(f"{root}/sim/config", json={"deployments": {"d": {"nope": 1}}})
        assert bad.status_code == 400
        assert (await client.delete(f"{root}/sim/stats")).status_code == 200
        assert (await client.get(f"{root}/sim/stats")).json()["deployments"] == {}

    run(scenario)


def test_the_behaviour_header_overrides_one_request() -> None:
    async def scenario(root: str, client: httpx.AsyncClient) -> None:
        url = f"{root}/v1/chat/completions"
        header = {"x-sim-behaviour": json.dumps({"fail": "context_length"})}
        overridden = await client.post(url, json=BODY, headers=header)
        assert overridden.status_code == 400
        assert overridden.json()["error"]["code"] == "context_length_exceeded"
        assert (await client.post(url, json=BODY)).status_code == 200
        bad = await client.post(url, json=BODY, headers={"x-sim-behaviour": "{"})
        assert bad.status_code == 400

    run(scenario)


def test_bad_requests_are_400s_in_openai_shape() -> None:
    async def scenario(root: str, client: httpx.AsyncClient) -> None:
        url = f"{root}/v1/chat/completions"
        for body in ({"model": "m"}, BODY | {"messages": []}, BODY | {"max_tokens": "9"}):
            response = await client.post(url, json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["type"] == "invalid_request_error"
        not_json = await client.post(url, content=b"{")
        assert not_json.status_code == 400
        stats = (await client.get(f"{root}/sim/stats")).json()["deployments"]["default"]
        assert stats["outcomes"] == {"rejected": 4}

    run(scenario)


def test_jitter_is_seeded() -> None:
    def latencies(seed: int) -> list[float]:
        sim = Simulator(SimulatorConfig(seed=seed))
        return [sim.rng("d").random() for _ in range(3)]

    assert latencies(1) == latencies(1) != latencies(2)
