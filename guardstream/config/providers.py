"""The providers file: per model, the deployments the dispatch stage calls, in order.

Each model lists its deployments (primary first), how often to retry one, when its circuit
breaker opens, and optionally the larger model a context-window error falls back to. The
file holds no secrets: a deployment names the environment variable its API key is in
(`api_key_env`), read when the file is loaded, so a missing key fails at start-up, naming
the variable, and not on the first request. A deployment without `api_key_env` sends no key
(the local provider simulator).

`base_url` may use `${VAR}` or `${VAR:-default}`, expanded from the environment at load
time, so one file serves the simulator on another port or real endpoints per environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from guardstream.config.catalog import Catalog
from guardstream.config.loader import load_model
from guardstream.errors import GuardstreamError

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FIX = "fix that entry of the providers file"


class Deployment(BaseModel):
    """One endpoint serving a model: where, with which key, how patiently, how many at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Unique in the whole file: it names the deployment's breaker and metrics.
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    timeout_s: PositiveFloat = 60.0
    max_concurrent: PositiveInt = 16
    # Share of first tries among the weighted deployments; unweighted ones are fallbacks only.
    weight: PositiveInt | None = None
    _api_key: SecretStr | None = PrivateAttr(None)

    @property
    def api_key(self) -> SecretStr | None:
        """The key read from `api_key_env` at load time (None: send no key)."""
        return self._api_key


class RetryPolicy(BaseModel):
    """How often one deployment is tried for one request, and the backoff between tries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: PositiveInt = 2  # per deployment, the first try included
    base_backoff_s: PositiveFloat = 0.25
    max_backoff_s: PositiveFloat = 4.0  # also the longest retry-after waited out in place

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_backoff_s < self.base_backoff_s:
            raise ValueError("max_backoff_s must be at least base_backoff_s")
        return self


class BreakerPolicy(BaseModel):
    """When a deployment's circuit breaker opens, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    failures: PositiveInt = 5  # failures within window_s that open it
    window_s: PositiveFloat = 30.0
    cooldown_s: PositiveFloat = 15.0  # open this long before one probe is let through


class ModelRoute(BaseModel):
    """A model's deployments in order, its policies, and its context-window fallback."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    deployments: Annotated[list[Deployment], Field(min_length=1)]
    retry: RetryPolicy | None = None  # None: the file's top-level `retry`
    breaker: BreakerPolicy | None = None  # None: the file's top-level `breaker`
    context_fallback: str | None = None  # a model with a larger context window


class Providers(BaseModel):
    """The whole providers file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: PositiveInt
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    models: dict[str, ModelRoute]

    @field_validator("models")
    @classmethod
    def _consistent(cls, models: dict[str, ModelRoute]) -> dict[str, ModelRoute]:
        seen: set[str] = set()
        for model, route in models.items():
            for d in route.deployments:
                if d.name in seen:
                    raise ValueError(f"deployment name '{d.name}' is used twice ({model})")
                seen.add(d.name)
        for model in models:
            chain = [model]
            nxt = models[model].context_fallback
            while nxt is not None:
                if nxt not in models:
                    raise ValueError(
                        f"{chain[-1]}.context_fallback: '{nxt}' is not a model of this file"
                    )
                if nxt in chain:
                    raise ValueError(f"context_fallback loops: {' -> '.join([*chain, nxt])}")
                chain.append(nxt)
                nxt = models[nxt].context_fallback
        return models

    def route(self, model: str) -> ModelRoute | None:
        """The deployments and policies of a model, or None when the file has none for it."""
        return self.models.get(model)

    def retry_for(self, model: str) -> RetryPolicy:
        """The model's retry policy (its own, else the file's)."""
        route = self.models.get(model)
        return route.retry if route and route.retry else self.retry

    def breaker_for(self, model: str) -> BreakerPolicy:
        """The model's breaker policy (its own, else the file's)."""
        route = self.models.get(model)
        return route.breaker if route and route.breaker else self.breaker


def _expand(value: str, environ: Mapping[str, str]) -> str:
    """`${VAR}` and `${VAR:-default}` replaced from `environ` (KeyError: VAR unset)."""

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _VAR.sub(one, value)


def load_providers(path: Path, environ: Mapping[str, str] | None = None) -> Providers:
    """Read and validate a providers file, expanding base URLs and reading API keys.

    `environ` defaults to the process environment. Errors are one line naming the file, the
    field and the fix, including an unset variable a base URL or `api_key_env` names.
    """
    env = os.environ if environ is None else environ
    providers = load_model(
        Providers,
        path,
        "the providers file",
        _FIX,
        unreadable_fix="set GUARDSTREAM_PROVIDERS_FILE to a readable YAML file",
    )
    models: dict[str, ModelRoute] = {}
    for model, route in providers.models.items():
        deployments = []
        for i, d in enumerate(route.deployments):
            where = f"{path}: models.{model}.deployments.{i}"
            try:
                url = _expand(d.base_url, env)
            except KeyError as exc:
                raise GuardstreamError(
                    f"{where}.base_url: environment variable {exc.args[0]} is not set",
                    f"export {exc.args[0]} or give a default: ${{{exc.args[0]}:-value}}",
                ) from None
            resolved = d.model_copy(update={"base_url": url.rstrip("/")})
            if d.api_key_env is not None:
                key = env.get(d.api_key_env)
                if not key:
                    raise GuardstreamError(
                        f"{where}.api_key_env: environment variable {d.api_key_env} is not set",
                        f"export {d.api_key_env} with the deployment's API key, or remove "
                        "api_key_env for an endpoint that needs no key",
                    )
                resolved._api_key = SecretStr(key)
            deployments.append(resolved)
        models[model] = route.model_copy(update={"deployments": deployments})
    return providers.model_copy(update={"models": models})


def check_against_catalog(providers: Providers, catalog: Catalog, path: Path) -> None:
    """Every routed model is in the catalog, and a context fallback has a larger window.

    Separate from loading so the file can be validated on its own (tests, tools); the worker
    that dispatches calls both.
    """
    for model, route in providers.models.items():
        spec = catalog.get(model)
        if spec is None:
            raise GuardstreamError(
                f"{path}: models.{model}: not a model of the catalog",
                "add it to the model catalog or remove it from the providers file",
            )
        target = route.context_fallback
        if target is None:
            continue
        bigger = catalog.get(target)
        if bigger is None or bigger.context_window <= spec.context_window:
            raise GuardstreamError(
                f"{path}: models.{model}.context_fallback: '{target}' has no larger context "
                f"window than {model} ({spec.context_window} tokens) in the catalog",
                "name a model with a larger context window, or remove context_fallback",
            )
