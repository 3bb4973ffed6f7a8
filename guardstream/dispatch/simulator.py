"""A provider simulator: a real HTTP server speaking OpenAI's chat-completions protocol.

One server drives many test cases: each *deployment* has its own behaviour and is addressed
by a path prefix, so a real client needs nothing but a base URL::

    http://HOST:PORT/v1                  the deployment named "default"
    http://HOST:PORT/d/<name>/v1         the deployment <name> (its own behaviour, or the
                                         default behaviour when none is configured)

Behaviour is set at start-up (`SimulatorConfig`), per deployment at run time
(``POST /sim/config``), or for one request (the ``x-sim-behaviour`` header, a JSON object of
`Behaviour` fields laid over the deployment's). ``GET /sim/stats`` reports what each
deployment saw: calls, outcomes (``ok``, a `Fail` value, ``rejected`` for a bad request or
key, ``cancelled`` when the client hung up first), idempotency keys with their counts, and
in-flight calls now and at most; ``DELETE /sim/stats`` clears it (`fail_first` keeps
counting: only ``POST /sim/config`` restarts a deployment's count).

Everything random (latency jitter, probabilistic failures) comes from a generator per
deployment seeded with the config's seed and the deployment's name, so a run is repeatable
for a given order of requests.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from enum import StrEnum
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_DEPLOYMENT = "default"
# Distinct idempotency keys remembered per deployment: enough for any test, bounded for a
# long load test (the count of calls stays exact).
MAX_RECORDED_KEYS = 100_000
LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua"
)
_LOREM_WORDS = LOREM_TEXT.split()

# A chunk cut off mid-object, as a buggy proxy or provider might send it.
_TRUNCATED_CHUNK = '{"id": "chatcmpl-sim", "choices": [{"delta": {"content": '

NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]


class Fail(StrEnum):
    """How a call fails (when it is chosen to fail, see `Behaviour.fail_first`)."""

    NONE = "none"
    STATUS = "status"  # an error status (`status`, e.g. 500 or 503) with an OpenAI error body
    RATE_LIMIT = "rate_limit"  # 429 with a retry-after header
    TIMEOUT = "timeout"  # no answer for `hang_s` (longer than any sane client timeout)
    BROKEN_STREAM = "broken_stream"  # some of the body, then the connection drops
    MALFORMED_JSON = "malformed_json"  # 200, but the body (or a stream chunk) is not JSON
    NO_USAGE = "no_usage"  # a correct answer without usage
    CONTEXT_LENGTH = "context_length"  # 400 with code context_length_exceeded


class Behaviour(BaseModel):
    """What one deployment does with a call. Every field has a working default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_s: NonNegative = 0.0  # before the first byte (time to first token for streams)
    jitter_s: NonNegative = 0.0  # plus uniform [0, jitter_s), seeded
    chunk_delay_s: NonNegative = 0.0  # between streamed chunks
    # Reported completion tokens (without reasoning). None: the default reply has 16 words
    # (one token each) and a configured `text` is estimated like a prompt.
    completion_tokens: Count | None = None
    reasoning_tokens: Count = 0  # added to completion_tokens, as OpenAI reports them
    cached_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0  # of the prompt tokens
    text: str | None = None  # the reply; None: deterministic lorem ipsum
    context_window: Count | None = None  # prompt + max_tokens above it: context_length error
    api_key: str | None = None  # when set, any other bearer token gets a 401

    fail: Fail = Fail.NONE
    # Which calls fail: the first `fail_first` calls of the deployment when set, otherwise
    # each call with probability `fail_probability` (seeded).
    fail_first: Count | None = None
    fail_probability: Annotated[float, Field(ge=0, le=1)] = 1.0
    status: Annotated[int, Field(ge=400, le=599)] = 500
    retry_after_s: Count = 1
    retry_after_http_date: bool = False  # send retry-after as an HTTP-date, not seconds
    hang_s: NonNegative = 3600.0
    broken_after_chunks: Count = 2  # content chunks sent before the connection drops


class SimulatorConfig(BaseModel):
    """The simulator's start-up configuration (the `--config` YAML file of provider-sim)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    default: Behaviour = Behaviour()  # for deployments not listed below
    deployments: dict[str, Behaviour] = {}


class ConfigUpdate(BaseModel):
    """The body of ``POST /sim/config``: listed deployments get a new behaviour."""

    model_config = ConfigDict(extra="forbid")

    default: Behaviour | None = None
    deployments: dict[str, Behaviour] = {}


@dataclass
class DeploymentStats:
    """What one deployment saw since start (or the last ``DELETE /sim/stats``)."""

    calls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    idempotency_keys: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "outcomes": dict(self.outcomes),
            "idempotency_keys": dict(self.idempotency_keys),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def lorem(words: int) -> str:
    """`words` words of lorem ipsum, always the same ones."""
    return " ".join(_LOREM_WORDS[i % len(_LOREM_WORDS)] for i in range(words))


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> str:
    """An error in OpenAI's shape."""
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


class _Reject(Exception):
    """Ends a request early with an error response (bad request, bad key)."""

    def __init__(self, status: int, body: str, outcome: str) -> None:
        self.status, self.body, self.outcome = status, body, outcome


class Simulator:
    """The server's state: configuration, per-deployment random generators and stats."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config.model_copy(deep=True)
        self.stats: dict[str, DeploymentStats] = {}
        self.calls_by_deployment: Counter[str] = Counter()
        self._rngs: dict[str, random.Random] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    def behaviour(self, deployment: str) -> Behaviour:
        """The configured behaviour of a deployment (the default for unlisted ones)."""
        return self.config.deployments.get(deployment, self.config.default)

    def rng(self, deployment: str) -> random.Random:
        if deployment not in self._rngs:
            # A string seed is hashed with SHA-512 by `random`, so this is stable across runs
            # (unlike hash(), which is salted per process).
            self._rngs[deployment] = random.Random(f"{self.config.seed}:{deployment}")
        return self._rngs[deployment]

    def update(self, update: ConfigUpdate) -> None:
        """Apply ``POST /sim/config``; a reconfigured deployment counts `fail_first` anew."""
        if update.default is not None:
            self.config.default = update.default
        for name, behaviour in update.deployments.items():
            self.config.deployments[name] = behaviour
            self.calls_by_deployment.pop(name, None)

    def app(self) -> web.Application:
        """The aiohttp application serving the protocol and the admin endpoints."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/d/{deployment}/v1/chat/completions", self._chat)
        app.router.add_post("/sim/config", self._post_config)
        app.router.add_get("/sim/stats", self._get_stats)
        app.router.add_delete("/sim/stats", self._delete_stats)
        return app

    # --- admin ---------------------------------------------------------------------------

    async def _post_config(self, request: web.Request) -> web.Response:
        try:
            self.update(ConfigUpdate.model_validate_json(await request.read()))
        except ValidationError as exc:
            return web.Response(status=400, text=str(exc))
        return web.json_response(self.config.model_dump(mode="json"))

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "deployments": {name: s.as_dict() for name, s in self.stats.items()},
            }
        )

    async def _delete_stats(self, request: web.Request) -> web.Response:
        self.stats.clear()
        self.max_in_flight = self.in_flight
        return web.json_response({})

    # --- the protocol --------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        deployment = request.match_info.get("deployment", DEFAULT_DEPLOYMENT)
        stats = self.stats.setdefault(deployment, DeploymentStats())
        stats.calls += 1
        key = request.headers.get("Idempotency-Key")
        if key is not None and (
            key in stats.idempotency_keys or len(stats.idempotency_keys) < MAX_RECORDED_KEYS
        ):
            stats.idempotency_keys[key] += 1
        self.in_flight += 1
        stats.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        outcome = "error"
        planned: list[Fail] = []  # the failure chosen for this call, once chosen
        try:
            response, outcome = await self._answer(request, deployment, planned)
            return response
        except asyncio.CancelledError:
            # The client hung up before the answer was complete: what a `timeout` behaviour
            # is for; otherwise the client's own deadline, or it stopped reading a stream.
            outcome = "timeout" if planned == [Fail.TIMEOUT] else "cancelled"
            raise
        finally:
            stats.outcomes[outcome] += 1
            self.in_flight -= 1
            stats.in_flight -= 1

    async def _answer(
        self, request: web.Request, deployment: str, planned: list[Fail]
    ) -> tuple[web.StreamResponse, str]:
        index = self.calls_by_deployment[deployment]
        self.calls_by_deployment[deployment] += 1
        rng = self.rng(deployment)
        try:
            behaviour = self._request_behaviour(request, deployment)
            body = await self._request_body(request)
            self._check_key(request, behaviour)
        except _Reject as exc:
            return _json_error(exc.status, exc.body), exc.outcome

        if behaviour.fail_first is not None:
            failing = index < behaviour.fail_first
        else:
            failing = rng.random() < behaviour.fail_probability
        fail = behaviour.fail if failing else Fail.NONE
        planned.append(fail)
        # Drawn on every call, failing or not, so one call's failure does not shift the
        # jitter of the calls after it.
        delay = behaviour.latency_s + rng.random() * behaviour.jitter_s
        await asyncio.sleep(delay)

        reply = Reply.build(behaviour, body, f"chatcmpl-sim-{deployment}-{index}")
        window = behaviour.context_window
        too_long = (
            window is not None and reply.prompt_tokens + (body.get("max_tokens") or 0) > window
        )
        if fail is Fail.CONTEXT_LENGTH or too_long:
            message = (
                f"This model's maximum context length is {window or 0} tokens. However, your "
                f"messages resulted in {reply.prompt_tokens} tokens. Please reduce the length "
                "of the messages."
            )
            error = error_body(
                message, "invalid_request_error", "context_length_exceeded", "messages"
            )
            return _json_error(400, error), Fail.CONTEXT_LENGTH.value
        if fail is Fail.RATE_LIMIT:
            after = behaviour.retry_after_s
            value = (
                formatdate(time.time() + after, usegmt=True)
                if behaviour.retry_after_http_date
                else str(after)
            )
            error = error_body(
                "Rate limit reached; retry later.", "requests", "rate_limit_exceeded"
            )
            return _json_error(429, error, {"retry-after": value}), fail.value
        if fail is Fail.STATUS:
            error = error_body(
                "The server had an error processing your request.", "server_error", None
            )
            return _json_error(behaviour.status, error), fail.value
        if fail is Fail.TIMEOUT:
            await asyncio.sleep(behaviour.hang_s)
            return _json_error(504, error_body("timeout", "server_error", None)), fail.value

        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, behaviour, reply, fail, include_usage)
        return await self._plain(request, behaviour, reply, fail)

    def _request_behaviour(self, request: web.Request, deployment: str) -> Behaviour:
        base = self.behaviour(deployment)
        override = request.headers.get("x-sim-behaviour")
        if override is None:
            return base
        try:
            return Behaviour.model_validate(base.model_dump() | json.loads(override))
        except (ValueError, TypeError) as exc:
            error = error_body(f"bad x-sim-behaviour header: {exc}", "invalid_request_error", None)
            raise _Reject(400, error, "rejected") from exc

    async def _request_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            error = error_body("We could not parse the JSON body.", "invalid_request_error", None)
            raise _Reject(400, error, "rejected") from exc
        messages = body.get("messages") if isinstance(body, dict) else None
        if (
            not messages
            or not isinstance(messages, list)
            or not all(isinstance(m, dict) for m in messages)
        ):
            error = error_body(
                "'messages' must be a non-empty list of messages",
                "invalid_request_error",
                None,
                "messages",
            )
            raise _Reject(400, error, "rejected")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            error = error_body(
                "'max_tokens' must be a positive integer",
                "invalid_request_error",
                None,
                "max_tokens",
            )
            raise _Reject(400, error, "rejected")
        return body  # type: ignore[no-any-return]

    def _check_key(self, request: web.Request, behaviour: Behaviour) -> None:
        if behaviour.api_key is None:
            return
        if request.headers.get("Authorization") != f"Bearer {behaviour.api_key}":
            error = error_body(
                "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
            raise _Reject(401, error, "rejected")

    async def _plain(
        self, request: web.Request, behaviour: Behaviour, reply: Reply, fail: Fail
    ) -> tuple[web.StreamResponse, str]:
        completion: dict[str, Any] = {
            "id": reply.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
        }
        if fail is not Fail.NO_USAGE:
            completion["usage"] = reply.usage()
        text = json.dumps(completion)
        if fail is Fail.MALFORMED_JSON:
            return web.Response(
                text=text[: len(text) // 2], content_type="application/json"
            ), fail.value
        if fail is Fail.BROKEN_STREAM:
            # Promise the whole body, send half, hang up: the client sees a short read.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(text.encode())
            await response.prepare(request)
            await response.write(text[: len(text) // 2].encode())
            _drop(request)
            return response, fail.value
        return web.Response(text=text, content_type="application/json"), _outcome(fail)

    async def _stream(
        self,
        request: web.Request,
        behaviour: Behaviour,
        reply: Reply,
        fail: Fail,
        include_usage: bool,
    ) -> tuple[web.StreamResponse, str]:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        created = int(time.time())

        def chunk(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": reply.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": reply.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        async def send(data: dict[str, Any] | str) -> None:
            payload = data if isinstance(data, str) else json.dumps(data)
            await response.write(f"data: {payload}\n\n".encode())

        try:
            await send(chunk({"role": "assistant", "content": ""}))
            pieces = reply.pieces()
            for i, piece in enumerate(pieces):
                if fail is Fail.BROKEN_STREAM and i == behaviour.broken_after_chunks:
                    break
                await send(chunk({"content": piece}))
                if fail is Fail.MALFORMED_JSON and i == 0:
                    await send(_TRUNCATED_CHUNK)
                if behaviour.chunk_delay_s:
                    await asyncio.sleep(behaviour.chunk_delay_s)
            if fail is Fail.MALFORMED_JSON and not pieces:
                await send(_TRUNCATED_CHUNK)
            if fail is Fail.BROKEN_STREAM:
                # Before the finish, usage and [DONE] chunks: what a client sees when the
                # provider dies mid-answer.
                _drop(request)
                return response, fail.value
            await send(chunk({}, reply.finish_reason))
            if include_usage and fail is not Fail.NO_USAGE:
                usage_chunk = chunk({}) | {"choices": [], "usage": reply.usage()}
                await send(usage_chunk)
            await send("[DONE]")
            await response.write_eof()
            return response, _outcome(fail)
        except ConnectionResetError:
            # The client stopped reading (its output guardrail blocked the answer, or its
            # deadline passed): a normal ending for a stream, not a server error.
            return response, "cancelled"


@dataclass(frozen=True)
class Reply:
    """The answer to one request, with the token counts it reports."""

    id: str
    model: str
    text: str
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @classmethod
    def build(cls, behaviour: Behaviour, body: dict[str, Any], id_: str) -> Reply:
        prompt = "".join(
            m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
            for m in body["messages"]
        )
        prompt_tokens = estimate_tokens(prompt)
        max_tokens = body.get("max_tokens")
        finish_reason = "stop"
        if behaviour.text is not None:
            text = behaviour.text
            completion = behaviour.completion_tokens
            if completion is None:
                completion = estimate_tokens(text)
        else:
            completion = 16 if behaviour.completion_tokens is None else behaviour.completion_tokens
            if isinstance(max_tokens, int) and 0 <= max_tokens < completion:
                completion, finish_reason = max_tokens, "length"
            text = lorem(completion)
        return cls(
            id=id_,
            model=str(body.get("model", "sim")),
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            cached_tokens=math.floor(prompt_tokens * behaviour.cached_fraction),
            completion_tokens=completion + behaviour.reasoning_tokens,
            reasoning_tokens=behaviour.reasoning_tokens,
        )

    def pieces(self) -> list[str]:
        """The text as streamed deltas: one word each, spaces kept so they join back."""
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)] if self.text else []

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def _outcome(fail: Fail) -> str:
    """The stats' name for how a call that got an answer ended."""
    return "ok" if fail is Fail.NONE else fail.value


def _json_error(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def _drop(request: web.Request) -> None:
    """Close the connection under a response in progress, as a crashed upstream would."""
    if request.transport is not None:
        request.transport.close()


@asynccontextmanager
async def running(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[Simulator, str]]:
    """Serve a simulator in the current event loop; yields it and its root URL.

    Port 0 picks a free port. Handlers are cancelled when their client disconnects, so a
    `timeout` behaviour does not outlive the client that gave up on it.
    """
    simulator = Simulator(config or SimulatorConfig())
    runner = web.AppRunner(
        simulator.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
    )
    await runner.setup()
    try:
        # A load test opens hundreds of connections at once; the default backlog (128)
        # would make the overflow wait for SYN retries instead of the simulated latency.
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield simulator, f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
