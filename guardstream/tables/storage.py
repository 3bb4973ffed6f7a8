"""What a worker does when its state directory cannot be written (disk full, quota, I/O).

RocksDB reports a failed write as a plain `Exception` whose text starts with its status
("IO error: ... No space left on device"), and keeps refusing writes after the first. A
meter step that fails half-way has sent some of its changelog records and none of its
outputs, so the record must be processed again by whoever owns the partition next: that is
what a kill -9 leaves, and what the exactness suite proves safe. Anything gentler is worse:
routing the record to `deadletter` (what a bug in the step gets) would leave a request
without its decision, and every later record would follow it there; Faust's orderly stop
acks the event in hand, so its offset could be committed without its outputs.

So the worker fail-stops: one line naming the directory, the cause and the fix, then an
immediate exit with no commit and no flush. It leaves no clean-stop marker, so its stores
are rebuilt from the changelog when it starts again; meanwhile the group's session timeout
hands its partitions to the other workers.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)

#: The exit status of a worker whose state directory failed (BSD's EX_IOERR).
EXIT_STORAGE_FAILED = 74
# RocksDB status prefixes that mean the store itself is unusable (rocksdb/status.cc).
_ROCKSDB_STATUSES = ("IO error", "Corruption", "Space limit reached")
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` is the state directory failing rather than a bug in the caller."""
    if isinstance(exc, OSError):
        return exc.errno in _DISK_ERRNOS
    return type(exc) is Exception and str(exc).startswith(_ROCKSDB_STATUSES)


def fail_stop(exc: BaseException, state_dir: Path) -> NoReturn:
    """Say why in one line and exit now: no commit, no flush, no clean-stop marker."""
    cause = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    log.critical(
        "the state directory %s cannot be written (%s): this worker stops now without "
        "committing, and the other workers take over its partitions within the session "
        "timeout — free space on that disk (or set GUARDSTREAM_WORKER_STATE_DIR to another) "
        "and start it again; its tables are rebuilt from the changelog",
        state_dir,
        cause,
    )
    exit_now(EXIT_STORAGE_FAILED)


def exit_now(code: int) -> NoReturn:
    """Exit at once with `code`, after flushing the logs: no commit, no Faust stop, no
    clean-stop marker (a worker's fail-stop, once it has said why)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
