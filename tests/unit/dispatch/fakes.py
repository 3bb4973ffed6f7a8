"""Fakes for the dispatch tests: scripted deployments, a manual clock, a providers file."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from guardstream.config.providers import (
    BreakerPolicy,
    Deployment,
    ModelRoute,
    Providers,
    RetryPolicy,
)
from guardstream.dispatch.attempt import Outcome
from guardstream.dispatch.router import Router


@dataclass(frozen=True)
class FakeUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Res:
    outcome: str
    text: str = ""
    usage: FakeUsage | None = None
    latency_s: float = 0.01
    retry_after_s: float | None = None


OK = Res(Outcome.OK, "hello", FakeUsage(10, 2))


@dataclass
class Clock:
    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Script:
    """Each deployment answers its list in turn, then repeats the last (OK when unscripted)."""

    plan: dict[str, list[Res]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(self, deployment: Deployment, model: str) -> Res:
        self.calls.append(deployment.name)
        answers = self.plan.get(deployment.name, [OK])
        return answers.pop(0) if len(answers) > 1 else answers[0]


def providers(
    *,
    models: dict[str, list[str]] | None = None,
    fallback: dict[str, str] | None = None,
    max_attempts: int = 2,
    failures: int = 3,
    max_concurrent: int = 4,
    weights: dict[str, int] | None = None,
) -> Providers:
    models = models or {"m": ["a", "b"]}
    weights = weights or {}
    return Providers(
        version=1,
        retry=RetryPolicy(max_attempts=max_attempts, base_backoff_s=0.1, max_backoff_s=2.0),
        breaker=BreakerPolicy(failures=failures, window_s=60.0, cooldown_s=30.0),
        models={
            model: ModelRoute(
                deployments=[
                    Deployment(
                        name=n,
                        base_url=f"http://sim/d/{n}/v1",
                        max_concurrent=max_concurrent,
                        weight=weights.get(n),
                    )
                    for n in names
                ],
                context_fallback=(fallback or {}).get(model),
            )
            for model, names in models.items()
        },
    )


def router(p: Providers, script: Script, clock: Clock) -> Router:
    return Router(p, script, sleep=clock.sleep, clock=clock, rng=random.Random(7))
