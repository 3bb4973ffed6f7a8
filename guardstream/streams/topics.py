"""The topics guardstream reads and writes (DESIGN.md §2): names, schemas, event types.

`Topic` is the one place a topic's short name, the Avro schema its values carry, the
CloudEvents type of its events and its config overrides are written down. Members are
strings (their short names), so `settings.topic(Topic.ADMITTED)` is the full name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from guardstream.config.settings import Settings

REQUEST_TYPE = "io.guardstream.request.v1"
USAGE_TYPE = "io.guardstream.usage.v1"
DECISION_TYPE = "io.guardstream.decision.v1"
DEADLETTER_TYPE = "io.guardstream.deadletter.v1"
COMPLETION_TYPE = "io.guardstream.completion.v1"


@dataclass(frozen=True)
class _Spec:
    schema: str
    ce_type: str | None = None
    config: dict[str, str] = field(default_factory=dict)


class Topic(StrEnum):
    """A topic by its short name; the full name is `settings.topic(member)`."""

    REQUESTS = "requests"
    USAGE = "usage"
    TENANTS = "tenants"
    METERING = "metering"
    ADMITTED = "admitted"
    REJECTED = "rejected"
    DEADLETTER = "deadletter"
    AUDIT = "audit"
    COMPLETIONS = "completions"

    @property
    def schema(self) -> str:
        """The stem of the `.avsc` file the topic's values carry (`schemas/<stem>.avsc`)."""
        return _SPECS[self].schema

    @property
    def ce_type(self) -> str | None:
        """The CloudEvents `type` of events on the topic, if they are CloudEvents."""
        return _SPECS[self].ce_type

    @property
    def config(self) -> dict[str, str]:
        """Topic config guardstream sets: at creation, and on an existing topic at start-up."""
        return _SPECS[self].config


# The broker stamps ingress records (LogAppendTime): a signature's `ce_time` and a key's
# validity window are judged against that time, which a client cannot choose, so a captured
# event cannot be replayed later with a fresh timestamp.
_BROKER_TIME = {"message.timestamp.type": "LogAppendTime"}
_SPECS: dict[Topic, _Spec] = {
    Topic.REQUESTS: _Spec("request", REQUEST_TYPE, _BROKER_TIME),
    Topic.USAGE: _Spec("usage", USAGE_TYPE, _BROKER_TIME),
    Topic.TENANTS: _Spec("tenant_config", None, {"cleanup.policy": "compact"}),
    # Internal, written and read by guardstream alone. The broker stamps its records
    # (LogAppendTime): that timestamp is the metering stage's clock, which no client sets.
    Topic.METERING: _Spec("metering", None, _BROKER_TIME),
    Topic.ADMITTED: _Spec("decision", DECISION_TYPE),
    Topic.REJECTED: _Spec("decision", DECISION_TYPE),
    Topic.DEADLETTER: _Spec("deadletter", DEADLETTER_TYPE),
    Topic.AUDIT: _Spec("audit"),
    # Written by the optional dispatch stage; created always, so clients may subscribe early.
    Topic.COMPLETIONS: _Spec("completion", COMPLETION_TYPE),
}
# Topics the pipeline answers on: what `guardstream tail` shows.
RESULT_TOPICS = (Topic.ADMITTED, Topic.REJECTED, Topic.DEADLETTER, Topic.COMPLETIONS)


# The worker's changelog-backed tables (`guardstream.tables.definitions`), by Faust name.
METER_TABLE = "meter"
DISPATCH_TABLE = "dispatch"


def changelog_topic(settings: Settings, table: str) -> str:
    """A table's changelog topic, as Faust names it."""
    return f"{settings.app_id}-{table}-changelog"


def changelog_topics(settings: Settings) -> dict[str, str]:
    """The changelog topic of each table the worker declares with these settings, by the
    topic the table is co-partitioned with (its changelog partition N goes with its N)."""
    tables = {METER_TABLE: Topic.METERING}
    if settings.dispatch:
        tables[DISPATCH_TABLE] = Topic.ADMITTED
    return {settings.topic(src): changelog_topic(settings, table) for table, src in tables.items()}


def subject_for(settings: Settings, topic: Topic) -> str:
    """The registry subject of a topic's values (TopicNameStrategy)."""
    return f"{settings.topic(topic)}-value"
