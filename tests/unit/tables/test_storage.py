"""A state directory that cannot be written is told apart from a bug, and stops the worker."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

from guardstream.tables.storage import EXIT_STORAGE_FAILED, is_storage_error

# A real RocksDB store (the one Faust's tables use) whose process may write no more bytes
# to any file: the kernel refuses the WAL append as a full disk would (EFBIG, not ENOSPC).
_FULL_DISK = textwrap.dedent(
    """
    import logging, resource, sys
    from pathlib import Path
    from rocksdict import Rdict
    from guardstream.tables.storage import fail_stop, is_storage_error

    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
    db = Rdict(sys.argv[1])
    db[b"before"] = b"fine"
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    try:
        for i in range(100_000):
            db[b"k%d" % i] = b"v" * 100
    except Exception as exc:
        assert is_storage_error(exc), repr(exc)
        fail_stop(exc, Path(sys.argv[1]))
    print("never failed")
    """
)


def test_a_full_disk_under_rocksdb_stops_the_process_with_one_line(tmp_path: Path) -> None:
    # stderr is a pipe: the file-size limit applies to files, so the line gets out.
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_STORAGE_FAILED, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("CRITICAL the state directory")
    assert "IO error" in lines[0] and "File too large" in lines[0]
    assert "GUARDSTREAM_WORKER_STATE_DIR" in lines[0]
    assert "never failed" not in proc.stdout


def test_storage_errors_are_told_apart_from_bugs() -> None:
    assert is_storage_error(Exception("IO error: No space left on device"))
    assert is_storage_error(Exception("Corruption: block checksum mismatch"))
    assert is_storage_error(OSError(errno.ENOSPC, "No space left on device"))
    assert is_storage_error(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # A bug in the step stays a bug: dead-lettered, the partition keeps flowing.
    assert not is_storage_error(KeyError("IO error"))
    assert not is_storage_error(ValueError("IO error: looks alike, is not RocksDB's"))
    assert not is_storage_error(Exception("something else"))
    assert not is_storage_error(OSError(errno.ECONNREFUSED, "refused"))
