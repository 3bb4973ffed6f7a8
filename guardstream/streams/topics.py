"""The topics guardstream reads and writes (DESIGN.md §2), their settings and schemas."""

from __future__ import annotations

from dataclasses import dataclass, field

from guardstream.config.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """A topic's short name, the Avro schema its values carry, and its config overrides."""

    name: str
    schema: str | None
    config: dict[str, str] = field(default_factory=dict)


# Short name → spec. The value schema of each topic is registered under the TopicNameStrategy
# subject `<full topic name>-value`.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("requests", "request"),
    TopicSpec("usage", "usage"),
    TopicSpec("tenants", "tenant_config", {"cleanup.policy": "compact"}),
    # Internal, written and read by guardstream alone. The broker stamps its records
    # (LogAppendTime): that timestamp is the metering stage's clock, which no client sets.
    TopicSpec("metering", "metering", {"message.timestamp.type": "LogAppendTime"}),
    TopicSpec("admitted", "decision"),
    TopicSpec("rejected", "decision"),
    TopicSpec("deadletter", "deadletter"),
    TopicSpec("audit", "audit"),
)


def subject_for(settings: Settings, short_name: str) -> str:
    """The registry subject of a topic's values (TopicNameStrategy)."""
    return f"{settings.topic(short_name)}-value"


def spec(short_name: str) -> TopicSpec:
    """The spec of a topic by its short name."""
    for t in TOPICS:
        if t.name == short_name:
            return t
    raise KeyError(short_name)
