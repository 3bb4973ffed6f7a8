"""Local stores are kept only after a clean stop; otherwise rebuilt from the changelog."""

from __future__ import annotations

from pathlib import Path

from guardstream.tables.clean_stop import MARKER, mark_clean, trust_or_discard


def _store(state_dir: Path) -> Path:
    store = state_dir / "v1" / "tables" / "meter-0.db"
    store.mkdir(parents=True)
    (store / "CURRENT").write_text("MANIFEST-000001\n")
    return store


def test_a_store_left_by_a_worker_that_died_is_discarded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert trust_or_discard(tmp_path) is False
    assert not store.exists()


def test_a_store_left_by_a_clean_stop_is_kept_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    mark_clean(tmp_path)
    assert trust_or_discard(tmp_path) is True
    assert store.exists() and not (tmp_path / MARKER).exists()
    # The marker is spent: a worker that now dies without a clean stop leaves none.
    assert trust_or_discard(tmp_path) is False
    assert not store.exists()


def test_an_empty_state_dir_has_nothing_to_discard(tmp_path: Path) -> None:
    assert trust_or_discard(tmp_path) is True
