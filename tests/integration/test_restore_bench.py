"""`guardstream bench restore` on a small changelog: the worker really restores every entry.

"Ready" (`/health/ready`) only says Faust believes recovery is over; the measurement also
counts the keys in the stopped worker's RocksDB, per partition, and this test holds it to
exactly what was produced into the changelog. It also checks the warm start kept them all
and that the run left no topics behind.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient

from guardstream.config.settings import Settings
from guardstream.ops.restore import measure
from guardstream.streams.clients import kafka_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
KEYS = 3000


def test_a_cold_worker_restores_every_changelog_entry(stack: Settings) -> None:
    statuses: list[str] = []
    filled: list[int] = []
    r = measure(stack, KEYS, statuses.append, filled.append)

    assert r.keys == KEYS
    assert sum(r.produced) == KEYS
    assert all(n > 0 for n in r.produced), f"a changelog partition got nothing: {r.produced}"
    assert r.restored == r.produced, "the cold worker's RocksDB differs from the changelog"
    assert r.after_warm == r.produced, "the warm start lost or gained keys"
    assert filled[-1] == KEYS
    for start in (r.cold, r.warm):
        assert 0 < start.live_s <= start.ready_s
        assert start.peak_rss_mb > 0
    assert r.changelog_mb > 0 and r.keys_per_s > 0
    assert statuses[-1] == "cleaning up"

    # Deletion is asynchronous on the broker: give the metadata a few seconds to catch up.
    admin = AdminClient(kafka_config(stack, log_level=0))
    deadline = time.monotonic() + 15
    while True:
        left = [t for t in admin.list_topics(timeout=10).topics if t.startswith(r.app_id)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert left == [], f"the run left topics behind: {left}"
