"""One chat-completions call to one deployment, over an OpenAI-compatible HTTP API.

`call_chat` never raises for anything the provider or the network does: every ending is a
`Outcome` in the `CallResult`, so the caller's retry, backoff and circuit-breaker logic
is one `match` on data rather than a ladder of exception types. Retrying is the caller's job;
this module sends each call once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from guardstream.dispatch.attempt import Outcome
from guardstream.dispatch.usage import Usage

# Called with each streamed text delta; False stops the stream (the output guardrail
# blocked it). May be sync or async.
OnChunk = Callable[[str], bool | Awaitable[bool]]


@dataclass(frozen=True)
class CallResult:
    """Everything one call produced.

    `text` is the assembled content: complete for OK, what arrived before the end for
    BROKEN_STREAM, TIMEOUT, MALFORMED and STOPPED (streams only), empty otherwise. `usage` is
    None whenever the provider reported none (errors, broken or stopped streams, `no_usage`
    providers); the caller then estimates. `status` is None when no response arrived.
    """

    outcome: Outcome
    status: int | None
    text: str = ""
    usage: Usage | None = None
    latency_s: float = 0.0
    first_token_s: float | None = None  # streams: time to the first non-empty delta
    retry_after_s: float | None = None  # RATE_LIMITED (and 503) when the provider said
    finish_reason: str | None = None
    error: str | None = field(default=None)  # a short description, for logs


async def call_chat(
    client: httpx.AsyncClient,
    deployment_url: str,
    api_key: str,
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int | None,
    *,
    stream: bool,
    timeout_s: float,
    idempotency_key: str,
    on_chunk: OnChunk | None = None,
) -> CallResult:
    """POST one chat completion to `deployment_url` (a base URL ending in ``/v1``).

    `timeout_s` bounds the whole call, from sending to the last byte, so a provider that
    trickles a stream cannot hold the caller past its budget. `idempotency_key` goes out as
    the ``Idempotency-Key`` header; a retry of the same request should reuse it. `on_chunk`
    is called for each streamed delta (plain calls: once, with the whole text) and ends the
    call as STOPPED when it returns False.
    """
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        # Without it a streamed answer carries no usage and metering must estimate.
        body["stream_options"] = {"include_usage": True}
    headers = {
        "Idempotency-Key": idempotency_key,
        "Accept": "text/event-stream" if stream else "application/json",
    }
    if api_key:  # a deployment without `api_key_env` (the local simulator) sends none
        headers["Authorization"] = f"Bearer {api_key}"
    url = deployment_url.rstrip("/") + "/chat/completions"
    call = _Call(time.perf_counter(), on_chunk)
    try:
        async with asyncio.timeout(timeout_s):
            request = client.build_request(
                "POST", url, json=body, headers=headers, timeout=timeout_s
            )
            response = await client.send(request, stream=True)
            try:
                return await call.read(response)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException) as exc:
        return call.result(Outcome.TIMEOUT, error=_describe(exc, "timed out"))
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        # Before the status line this is a connection reset; after it, a broken body.
        outcome = Outcome.UNREACHABLE if call.status is None else Outcome.BROKEN_STREAM
        return call.result(outcome, error=_describe(exc, "connection dropped"))
    except httpx.TransportError as exc:
        return call.result(Outcome.UNREACHABLE, error=_describe(exc, "unreachable"))


class _Call:
    """The state of one call while it is read, so any ending can report what arrived."""

    def __init__(self, started: float, on_chunk: OnChunk | None) -> None:
        self.started = started
        self.on_chunk = on_chunk
        self.status: int | None = None
        self.parts: list[str] = []
        self.first_token_s: float | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def result(
        self,
        outcome: Outcome,
        *,
        error: str | None = None,
        retry_after_s: float | None = None,
    ) -> CallResult:
        return CallResult(
            outcome=outcome,
            status=self.status,
            text="".join(self.parts),
            usage=self.usage,
            latency_s=time.perf_counter() - self.started,
            first_token_s=self.first_token_s,
            retry_after_s=retry_after_s,
            finish_reason=self.finish_reason,
            error=error,
        )

    async def read(self, response: httpx.Response) -> CallResult:
        self.status = response.status_code
        if response.status_code != 200:
            await response.aread()
            return self._error(response)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return await self._read_stream(response)
        # Also a provider that ignored `stream: true` and answered in one piece.
        return await self._read_plain(response)

    def _error(self, response: httpx.Response) -> CallResult:
        status = response.status_code
        code, message = _error_fields(response.content)
        error = f"{status}: {message or response.reason_phrase}"
        # 503s carry retry-after too (overloaded, not broken); the caller may honour it.
        after = retry_after(response.headers) if status in (429, 503) else None
        if status == 429:
            return self.result(Outcome.RATE_LIMITED, error=error, retry_after_s=after)
        if status >= 500:
            return self.result(Outcome.SERVER_ERROR, error=error, retry_after_s=after)
        if status == 408:
            return self.result(Outcome.TIMEOUT, error=error)
        if status in (400, 413) and code == "context_length_exceeded":
            return self.result(Outcome.CONTEXT_LENGTH, error=error)
        return self.result(Outcome.REJECTED, error=error)

    async def _read_plain(self, response: httpx.Response) -> CallResult:
        await response.aread()
        try:
            completion = json.loads(response.content)
            choice = completion["choices"][0]
            text = choice["message"]["content"] or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, LookupError, TypeError) as exc:
            return self.result(Outcome.MALFORMED, error=f"bad completion body: {exc!r}")
        self.finish_reason = choice.get("finish_reason")
        self.usage = parse_usage(completion.get("usage"))
        if text and not await self._deliver(text):
            return self.result(Outcome.STOPPED)
        return self.result(Outcome.OK)

    async def _read_stream(self, response: httpx.Response) -> CallResult:
        async for line in response.aiter_lines():
            # SSE: only `data:` lines carry chunks; blank lines, comments (`:` keep-alives)
            # and `event:`/`id:` fields are framing.
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return self.result(Outcome.OK)
            try:
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise TypeError("chunk is not an object")
                if "error" in chunk:
                    _, message = _error_fields(data.encode())
                    return self.result(Outcome.SERVER_ERROR, error=f"in stream: {message}")
                deltas = [
                    (c["delta"].get("content"), c.get("finish_reason")) for c in chunk["choices"]
                ]
            except (ValueError, LookupError, TypeError, AttributeError) as exc:
                return self.result(Outcome.MALFORMED, error=f"bad stream chunk: {exc!r}")
            if chunk.get("usage"):
                self.usage = parse_usage(chunk["usage"])
            for content, finish_reason in deltas:
                self.finish_reason = finish_reason or self.finish_reason
                if content and not await self._deliver(content):
                    return self.result(Outcome.STOPPED)
        # A clean end of the body without [DONE]: the provider stopped mid-protocol.
        return self.result(Outcome.BROKEN_STREAM, error="stream ended without [DONE]")

    async def _deliver(self, text: str) -> bool:
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.started
        self.parts.append(text)
        if self.on_chunk is None:
            return True
        verdict = self.on_chunk(text)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return verdict is not False


def parse_usage(raw: Any) -> Usage | None:
    """OpenAI's usage object as a `Usage`; None when absent or not the expected shape."""
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw["prompt_tokens"])
        completion = int(raw.get("completion_tokens") or 0)
        cached = int((raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        reasoning = int((raw.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return Usage(prompt, completion, cached, reasoning)


def retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP-date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is taken as such
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) of an OpenAI error body; Nones when it is not one."""
    try:
        error = json.loads(body)["error"]
        return error.get("code"), error.get("message")
    except (ValueError, LookupError, TypeError, AttributeError):
        return None, None


def _describe(exc: Exception, fallback: str) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}: {fallback}"
