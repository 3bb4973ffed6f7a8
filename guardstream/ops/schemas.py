"""`guardstream schemas register | check`: the registry governs every schema."""

from __future__ import annotations

import json
from dataclasses import dataclass

from guardstream.config.settings import Settings
from guardstream.serde import compat, schemas
from guardstream.serde.registry import Registry
from guardstream.streams.topics import Topic, subject_for


@dataclass(frozen=True)
class CheckResult:
    """The verdict for one subject."""

    subject: str
    schema: str
    compatible: bool
    new_subject: bool
    problems: tuple[str, ...]


def register_all(settings: Settings, registry: Registry) -> dict[str, int]:
    """Set the compatibility rule and register each topic's schema; subject → id."""
    registry.set_compatibility(settings.schema_compatibility)
    out: dict[str, int] = {}
    for topic in Topic:
        subject = subject_for(settings, topic)
        text = schemas.schema_text(topic.schema, settings.schema_dir)
        out[subject] = registry.register(subject, text)
    return out


def check_all(settings: Settings, registry: Registry) -> list[CheckResult]:
    """Ask the registry about each local schema against what it holds, naming bad fields."""
    results = []
    for topic in Topic:
        subject = subject_for(settings, topic)
        text = schemas.schema_text(topic.schema, settings.schema_dir)
        verdict = registry.check(subject, text)
        problems: tuple[str, ...] = verdict.messages
        if not verdict.compatible:
            latest = registry.latest(subject)
            if latest is not None:
                found = compat.explain(
                    settings.schema_compatibility, json.loads(text), json.loads(latest)
                )
                problems = tuple(found) or problems or ("the registry gave no detail",)
        results.append(
            CheckResult(subject, topic.schema, verdict.compatible, verdict.new_subject, problems)
        )
    return results
