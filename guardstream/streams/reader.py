"""Reading whole topics: from the beginning up to the end they had when reading started.

The compacted tenants topic is read this way by `tenants show` and by every worker's tenant
directory, and the benchmark reads the requests topic to match produce times. Each reads
with a plain assign-only consumer (no group membership, no commits) and counts a partition
as read once it has seen the record just below that partition's high watermark, taken at
the start.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from guardstream.config.settings import Settings
from guardstream.streams.admin import high_watermark
from guardstream.streams.clients import kafka_config


def assign_from_beginning(
    consumer: Consumer, topics: Sequence[str], timeout_s: float = 10.0
) -> None:
    """Assign every partition of `topics` to `consumer`, each from its oldest record."""
    parts = []
    for topic in topics:
        md = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions]
    consumer.assign(parts)


class TopicReader:
    """An assign-only consumer of whole topics that knows when it has caught up.

    The high watermark of every partition is taken when the reader opens; `caught_up`
    turns true once each non-empty partition's record at ``end - 1`` has been returned.
    Reading on after that returns what is written later (when empty partitions were
    assigned too, their new records as well).
    """

    def __init__(
        self,
        settings: Settings,
        topics: str | Sequence[str],
        *,
        group_id: str = "unused",
        overrides: Mapping[str, Any] | None = None,
        include_empty: bool = True,
        metadata_timeout_s: float = 10.0,
        watermark_timeout_s: float = 30.0,
    ) -> None:
        names = [topics] if isinstance(topics, str) else list(topics)
        config = {"group.id": group_id, "enable.auto.commit": False, "log_level": 0}
        self.consumer = Consumer(kafka_config(settings, {**config, **(overrides or {})}))
        try:
            self.ends: dict[tuple[str, int], int] = {}
            for topic in names:
                md = self.consumer.list_topics(topic, timeout=metadata_timeout_s).topics[topic]
                for p in md.partitions:
                    self.ends[(topic, p)] = high_watermark(
                        self.consumer, topic, p, watermark_timeout_s
                    )
            self.consumer.assign(
                [
                    TopicPartition(t, p, OFFSET_BEGINNING)
                    for (t, p), end in self.ends.items()
                    if include_empty or end
                ]
            )
        except BaseException:
            self.consumer.close()
            raise
        self._behind = {tp for tp, end in self.ends.items() if end > 0}

    @property
    def caught_up(self) -> bool:
        """Whether every partition has been read up to its end as of opening."""
        return not self._behind

    def poll(self, timeout_s: float) -> Message | None:
        """The next record, or None when none came in `timeout_s` (errors are skipped)."""
        msg = self.consumer.poll(timeout_s)
        if msg is None or msg.error():
            return None
        self._seen(msg)
        return msg

    def consume(self, count: int, timeout_s: float) -> list[Message]:
        """Up to `count` records within `timeout_s` (errors are skipped)."""
        out = [m for m in self.consumer.consume(count, timeout_s) if not m.error()]
        for msg in out:
            self._seen(msg)
        return out

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _seen(self, msg: Message) -> None:
        tp = (msg.topic() or "", msg.partition() or 0)
        if tp in self._behind and (msg.offset() or 0) + 1 >= self.ends[tp]:
            self._behind.discard(tp)


def read_to_end(
    settings: Settings,
    topics: str | Sequence[str],
    *,
    group_id: str = "unused",
    overrides: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    batch: int = 1,
    poll_s: float = 0.5,
    metadata_timeout_s: float = 10.0,
    watermark_timeout_s: float = 30.0,
) -> Generator[Message, None, None]:
    """Yield every record of `topics` from the beginning to the end they had at the start.

    Stops early, without an error, after `timeout_s` (None: no limit). Records are fetched
    `batch` at a time, each fetch waiting at most `poll_s`.
    """
    with TopicReader(
        settings,
        topics,
        group_id=group_id,
        overrides=overrides,
        include_empty=False,
        metadata_timeout_s=metadata_timeout_s,
        watermark_timeout_s=watermark_timeout_s,
    ) as reader:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not reader.caught_up and (deadline is None or time.monotonic() < deadline):
            if batch == 1:
                msg = reader.poll(poll_s)
                if msg is not None:
                    yield msg
            else:
                yield from reader.consume(batch, poll_s)
