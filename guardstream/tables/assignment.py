"""A worker given a table's source partitions must be given their changelog partitions too.

Faust's assignor leaves out any topic the group leader's metadata does not list (it logs
"Ignoring missing topic"). For a table's changelog that means the table's source partitions
are assigned alone: the worker restores nothing into its store and decides on whatever the
store holds (an empty one starts every budget from zero and knows no reservation), and no
standby copy is kept. `ensure_topics` creates the changelogs before a worker starts, so this
should not happen; if it does (a changelog deleted under a running group, or the leader's
metadata behind), the worker stops with one line rather than decide on a table it did not
restore. It leaves no clean-stop marker, so its stores are rebuilt when it starts again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from faust.types import TP

from guardstream.tables.storage import exit_now

log = logging.getLogger(__name__)

#: The exit status of a worker assigned a table's sources without its changelog (EX_CONFIG).
EXIT_TABLE_UNASSIGNED = 78


def unrestored(actives: Iterable[TP], changelog_of: Mapping[str, str]) -> dict[str, list[int]]:
    """The source partitions in `actives` whose table's changelog partition is not in them,
    by source topic. `changelog_of` maps a table's source topic to its changelog topic."""
    held = {(tp.topic, tp.partition) for tp in actives}
    missing: dict[str, list[int]] = {}
    for source, changelog in changelog_of.items():
        alone = sorted(p for t, p in held if t == source and (changelog, p) not in held)
        if alone:
            missing[source] = alone
    return missing


def register_changelog_check(app: faust.App, changelog_of: Mapping[str, str]) -> None:
    """Stop the worker when an assignment gives it sources without their changelogs."""

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types it narrowly
    def check_changelogs_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        missing = unrestored(app.assignor.assigned_actives(), changelog_of)
        if not missing:
            return
        source, partitions = next(iter(missing.items()))
        log.critical(
            "partitions %s of %s were assigned to this worker without their partitions of the "
            "table changelog %s (the group leader's metadata did not list them: the topic was "
            "missing, or has fewer partitions): the table was not restored, so this worker "
            "stops rather than decide on it — make the changelog topic exist with as many "
            "partitions as %s (`guardstream topics create` creates it) and start the worker "
            "again",
            ", ".join(map(str, partitions)),
            source,
            changelog_of[source],
            source,
        )
        exit_now(EXIT_TABLE_UNASSIGNED)
