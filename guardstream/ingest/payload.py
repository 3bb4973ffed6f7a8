"""Payload rules for a decoded request, as pydantic models.

Each violation becomes one `PAYLOAD_INVALID` reason whose detail names the field
(`messages[2].role`), so a client can fix its request without reading our code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,62}$"
MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 256 * 1024
MAX_METADATA_ENTRIES = 32
MAX_METADATA_CHARS = 256

Bounded = Annotated[str, Field(max_length=MAX_METADATA_CHARS)]
_M = TypeVar("_M", bound=BaseModel)


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["system", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]


class RequestPayload(BaseModel):
    """The request data of an `io.guardstream.request.v1` event."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant_id: Annotated[str, Field(pattern=TENANT_PATTERN)]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: Annotated[list[Bounded], Field(max_length=8)] | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    metadata: Annotated[dict[Bounded, Bounded], Field(max_length=MAX_METADATA_ENTRIES)] = {}


class UsagePayload(BaseModel):
    """The data of an `io.guardstream.usage.v1` event."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    request_id: Annotated[str, Field(min_length=1, max_length=256)]
    tenant_id: Annotated[str, Field(pattern=TENANT_PATTERN)]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    input_tokens: Annotated[int, Field(ge=0, le=100_000_000)]
    output_tokens: Annotated[int, Field(ge=0, le=100_000_000)]
    # Part of input_tokens (as providers report it), priced at the catalog's cached price.
    cached_input_tokens: Annotated[int, Field(ge=0, le=100_000_000)] = 0

    @model_validator(mode="after")
    def _cached_within_input(self) -> UsagePayload:
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens is part of input_tokens, so at most it")
        return self


class PayloadProblem(ValueError):
    """The request breaks payload rules; `problems` is [(field path, message)]."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<request>"


def _validate(model: type[_M], record: Any) -> _M:
    try:
        return model.model_validate(record)
    except ValidationError as exc:
        problems = [(_path(tuple(e["loc"])), e["msg"]) for e in exc.errors()[:10]]
        raise PayloadProblem(problems) from None


def validate_request(record: Any) -> RequestPayload:
    """The validated request, or PayloadProblem naming each offending field."""
    return _validate(RequestPayload, record)


def validate_usage(record: Any) -> UsagePayload:
    """The validated usage report, or PayloadProblem naming each offending field."""
    return _validate(UsagePayload, record)
