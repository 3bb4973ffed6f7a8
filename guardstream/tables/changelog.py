"""A Faust table whose changelog records go on the worker's librdkafka producer.

Faust sends each table write through `Topic.send_soon`: a pending-message future, its
producer buffer (a task hop per record), aiokafka's Python sender, and on delivery a RocksDB
write of the changelog offset. The meter writes five entries per request, so that path was a
sixth of a flooded worker. Here a write is one `produce` call to the partition Faust would
have chosen (the current event's), and the delivered offsets are stored once per flush.

What stays Faust's: the local RocksDB write, the changelog topic and its recovery, the
partition check (made once the changelog's partitions are known), and the "changelog before
offsets" rule, which the chained flush keeps (see `guardstream.streams.producer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from guardstream.streams.producer import OutputProducer
from guardstream.tables.storage import fail_stop, is_storage_error


class ChangelogOnOutputs(faust.Table[bytes, bytes]):
    """A table writing its changelog with `OutputProducer.send_now`."""

    outputs: OutputProducer

    def partition_for_key(self, key: Any) -> int | None:
        """The current event's partition (tables are co-partitioned with their source).

        Faust checks once that source and changelog have as many partitions; a changelog
        just created on a three-broker cluster can read as 0 partitions for a moment (its
        metadata not in yet), and Faust's check then fails every write (PartitionsMismatch,
        found by the chaos suite). The check is left for a write that can make it.
        """
        event = faust.current_event()
        if event is None:
            raise TypeError("Cannot modify table key from outside of stream iteration")
        source = event.message.topic
        if source not in self._verified_source_topics_for_partitions and (
            self.app.consumer.topic_partitions(self._changelog_name)
        ):
            self._verify_source_topic_partitions(source)
        return int(event.message.partition)

    def on_key_set(self, key: Any, value: Any) -> None:
        """Send the new value to the key's changelog partition (the current event's)."""
        self.outputs.send_now(self._changelog_name, key, value, self.partition_for_key(key))

    def on_key_del(self, key: Any) -> None:
        """Send a tombstone for the key."""
        self.outputs.send_now(self._changelog_name, key, None, self.partition_for_key(key))

    def persist_offsets(self, delivered: dict[tuple[str, int], int]) -> None:
        """Record in each partition's RocksDB how far its changelog is delivered.

        What Faust's own send callback does per record: a restart on the same state
        directory then replays only the changelog past it.
        """
        topic = self._changelog_name
        try:
            for (t, partition), offset in delivered.items():
                if t == topic:
                    self.data.set_persisted_offset(TP(topic, partition), offset)
        except Exception as exc:
            if is_storage_error(exc):
                fail_stop(exc, Path(self.app.conf.tabledir))
            raise

    def apply_changelog_batch(self, batch: Any) -> None:
        """Faust's restore and standby writes, fail-stopped like the agent's on a full disk."""
        try:
            super().apply_changelog_batch(batch)
        except Exception as exc:
            if is_storage_error(exc):
                fail_stop(exc, Path(self.app.conf.tabledir))
            raise

    @property
    def _changelog_name(self) -> str:
        return self.changelog_topic.get_topic_name()  # type: ignore[no-any-return]


def changelog_table(
    app: faust.App, name: str, outputs: OutputProducer, **options: Any
) -> ChangelogOnOutputs:
    """Declare a `ChangelogOnOutputs` table on the app, as `app.Table` declares Faust's."""
    table = ChangelogOnOutputs(app, name=name, beacon=app.tables.beacon, **options)
    table.outputs = outputs
    outputs.on_flushed(table.persist_offsets)
    app.tables.add(table)
    return table
