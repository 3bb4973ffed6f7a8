"""What one call to one deployment returns, as the router and usage code see it.

The HTTP client (`dispatch/http.py`) makes the call; this module only fixes the shape of
its answer, as Protocols, so the routing and pricing logic depends on no client and is
tested with plain fakes. An outcome is compared by its string value, so any `StrEnum` with
these values (or plain strings) will do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Protocol

from guardstream.config.providers import Deployment


class Outcome(StrEnum):
    """How one call to one deployment ended."""

    OK = "OK"
    RATE_LIMITED = "RATE_LIMITED"  # 429; retry_after_s when the provider said
    SERVER_ERROR = "SERVER_ERROR"  # 5xx or a connection failure
    TIMEOUT = "TIMEOUT"  # no complete answer within the deployment's timeout_s
    CONTEXT_LENGTH = "CONTEXT_LENGTH"  # the prompt + max_tokens exceed the model's window
    REJECTED = "REJECTED"  # any other 4xx: the request itself was refused
    BROKEN_STREAM = "BROKEN_STREAM"  # the answer started, then the stream broke off
    MALFORMED = "MALFORMED"  # a 2xx whose body could not be understood
    # The output guardrail hung up on purpose. Its own outcome, not OK with a flag, so no
    # caller can deliver a blocked answer by checking only `outcome is OK`.
    STOPPED = "STOPPED"
    # No response at all: refused, DNS, reset before the status line. The request may still
    # have reached the provider, so a retry must reuse the idempotency key.
    UNREACHABLE = "UNREACHABLE"


class TokenUsage(Protocol):
    """Token counts as providers report them (cached within prompt, reasoning within
    completion)."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...


class CallResult(Protocol):
    """One call's answer: how it ended, the text received, usage if reported, time taken."""

    @property
    def outcome(self) -> str: ...
    @property
    def retry_after_s(self) -> float | None: ...
    @property
    def text(self) -> str: ...
    @property
    def usage(self) -> TokenUsage | None: ...
    @property
    def latency_s(self) -> float: ...


# One call to one deployment for a model. It must not raise for a provider failure: every
# failure is an outcome (an exception is a bug and propagates). It enforces the deployment's
# timeout_s itself: it knows when the first byte and the last arrived.
AttemptFn = Callable[[Deployment, str], Awaitable[CallResult]]
