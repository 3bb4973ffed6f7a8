"""Whether a worker may trust its local table stores when it starts.

A worker that dies (kill -9, a crash, outputs the broker refused) can leave RocksDB holding
writes whose changelog records never reached the broker: the table is written before its
changelog records are delivered, and delivery is only awaited by the flush before a commit.
The input is uncommitted, so whoever owns the partition next processes it again. If that is
the same worker on the same store, the meter finds the record's stored result and re-sends
it without writing the table again (its replay guard), so those writes stay in the local
store and never reach the changelog; the next worker to restore from the changelog loses
them (found by the chaos suite: a reservation gone, its usage answered USAGE_UNKNOWN).

So a store is kept only if the worker that wrote it stopped cleanly, which a marker file in
the state directory records; otherwise the stores are discarded and rebuilt from the
changelog (standby replicas make that quick where it matters).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
MARKER = ".clean-stop"


def trust_or_discard(state_dir: Path) -> bool:
    """Keep the local stores if the last worker on `state_dir` stopped cleanly, else delete
    them; return whether they were kept. The marker is consumed either way, so a worker that
    dies from here on leaves none."""
    marker = state_dir / MARKER
    if marker.exists():
        marker.unlink()
        return True
    stores = [p for p in state_dir.glob("**/tables") if p.is_dir()]
    for path in stores:
        shutil.rmtree(path)
    if stores:
        log.warning(
            "the last worker on %s did not stop cleanly: its table stores may hold writes "
            "the changelog never got, so they are rebuilt from the changelog",
            state_dir,
        )
    return not stores


def mark_clean(state_dir: Path) -> None:
    """Record that the worker stopped cleanly: every table write is on the changelog."""
    (state_dir / MARKER).touch()
