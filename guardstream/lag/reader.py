"""Consumer lag, measured from outside the workers with Kafka's Admin API.

Lag has to be visible precisely when the workers are not: a crashed or wedged worker cannot
report its own backlog. So this module asks the brokers directly, the way
`kafka-consumer-groups --describe` does: each group's committed offsets, each partition's
log-start and end offsets, and for every partition that is behind, the timestamp of the
oldest record the group has not yet processed.

Time lag is ``now - timestamp(first record at or after the committed offset)``: how long
the oldest unprocessed record has been waiting. That is what a latency SLO in seconds is
about, and it keeps growing while a consumer is stuck on an idle topic. Two alternatives
were rejected:

* ``timestamp(end - 1) - timestamp(committed)`` (time between the oldest unprocessed and
  the newest record) drops to zero when producers pause, hiding a stuck consumer, and is 0
  for a backlog of one record however old it is.
* kafka-lag-exporter's interpolation table (sample ``(end offset, now)`` every poll and
  interpolate the committed offset's time) needs history: after an exporter restart, and
  for low-rate topics, it guesses. Reading one record per lagging partition is exact and
  cheap: caught-up partitions need no read at all.

The pure part (`compute_rows`) turns offsets and timestamps into rows; `LagReader` is the
only code that talks to Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# The admin package re-exports these without `__all__`, which strict mypy does not accept.
from confluent_kafka.admin._group import ConsumerGroupDescription
from confluent_kafka.admin._listoffsets import ListOffsetsResultInfo, OffsetSpec
from confluent_kafka.cimpl import OFFSET_INVALID

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.streams.clients import kafka_config

# Faust (and Kafka Streams) restore tables from these topics by position, never by committed
# offset, yet the assignor hands them to group members: counting them would report every
# changelog's full length as lag.
CHANGELOG_SUFFIX = "-changelog"


@dataclass(frozen=True)
class PartitionOffsets:
    """What the brokers say about one partition a group consumes.

    `committed` is None when the group has never committed on the partition. `head_ts_ms`
    is the timestamp of the first record at or after the group's position, None when it is
    unknown (not read, or the read timed out); `head_at_end` is True when the read found no
    data record there (only transaction markers remain), i.e. nothing is waiting.
    """

    group: str
    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    head_ts_ms: int | None = None
    head_at_end: bool = False


@dataclass(frozen=True)
class LagRow:
    """One partition's lag: records behind and seconds the oldest unprocessed record waited.

    `lag_seconds` is None when the waiting record's timestamp could not be read.
    """

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    lag_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return asdict(self)


def position(p: PartitionOffsets) -> int:
    """Where the group will read next on the partition.

    Without a commit, a consumer with ``auto.offset.reset=earliest`` (Faust's default) starts
    at the log start; a commit below the log start points at records retention has deleted,
    which can no longer be consumed, so it is raised to the log start too.
    """
    if p.committed is None:
        return p.start
    return max(p.committed, p.start)


def lag_records(p: PartitionOffsets) -> int:
    """Records between the group's position and the end of the partition (never negative).

    A commit beyond the end (the topic was recreated or truncated) is reported as 0 rather
    than a negative number, which no dashboard can show sensibly.
    """
    return max(0, p.end - position(p))


def lag_seconds(p: PartitionOffsets, now_ms: int) -> float | None:
    """How long the oldest record the group has not processed has waited, in seconds.

    0 when nothing is behind or nothing readable is waiting; clamped at 0 because a
    producer-set timestamp may be ahead of this machine's clock.
    """
    if lag_records(p) == 0 or p.head_at_end:
        return 0.0
    if p.head_ts_ms is None:
        return None
    return max(0.0, (now_ms - p.head_ts_ms) / 1000.0)


def compute_rows(partitions: Iterable[PartitionOffsets], now_ms: int) -> list[LagRow]:
    """Lag rows for the given partitions, sorted by group, topic and partition."""
    rows = [
        LagRow(
            group=p.group,
            topic=p.topic,
            partition=p.partition,
            committed=p.committed,
            end=p.end,
            lag=lag_records(p),
            lag_seconds=lag_seconds(p, now_ms),
        )
        for p in partitions
    ]
    return sorted(rows, key=lambda r: (r.group, r.topic, r.partition))


def needs_head(p: PartitionOffsets) -> bool:
    """Whether the waiting record's timestamp must be read to know the time lag."""
    return lag_records(p) > 0


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group's state and member count at the time it was described."""

    group: str
    state: str
    members: int


@dataclass(frozen=True)
class LagSnapshot:
    """Everything one query of the brokers found."""

    rows: list[LagRow]
    groups: list[GroupInfo]
    end_offsets: dict[tuple[str, int], int]
    taken_at_ms: int


class LagReader:
    """Reads committed offsets, end offsets and waiting-record timestamps from the brokers.

    One reader may be reused across queries (the exporter keeps one); each query opens a
    short-lived, assign-only consumer for the timestamp reads, which never joins or commits
    to any group.
    """

    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.bootstrap = self.settings.kafka_bootstrap
        self.timeout_s = timeout_s
        self.admin = AdminClient(kafka_config(self.settings, log_level=0))

    def list_groups(self) -> list[str]:
        """Every consumer group the cluster knows, sorted."""
        try:
            result = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        return sorted(g.group_id for g in result.valid)

    def snapshot(self, groups: Sequence[str] | None = None) -> LagSnapshot:
        """Query the brokers once; `groups` limits the groups (default: all of them)."""
        names = list(groups) if groups else self.list_groups()
        if not names:
            return LagSnapshot([], [], {}, _now_ms())
        descriptions = self._describe(names)
        committed = self._committed(names)
        partitions: dict[tuple[str, str, int], int | None] = {}
        for group in names:
            for (topic, part), offset in committed.get(group, {}).items():
                partitions[(group, topic, part)] = offset
            description = descriptions.get(group)
            for member in description.members if description else []:
                for tp in member.assignment.topic_partitions:
                    if not tp.topic.endswith(CHANGELOG_SUFFIX):
                        partitions.setdefault((group, tp.topic, tp.partition), None)
        # A group that has committed on one partition of a topic consumes the whole topic:
        # partitions that never had a commit (no data yet when it last ran) still count, or
        # records arriving there while every worker is down would be invisible.
        counts = self._partition_counts({t for (_, t, _) in partitions})
        for group, topic, _ in list(partitions):
            for part in range(counts.get(topic, 0)):
                partitions.setdefault((group, topic, part), None)
        tps = sorted({(t, p) for (_, t, p) in partitions})
        starts = self._list_offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        ends = self._list_offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        offsets = [
            PartitionOffsets(g, t, p, c, starts.get((t, p), 0), ends.get((t, p), 0))
            for (g, t, p), c in partitions.items()
            if (t, p) in ends
        ]
        wanted = {(p.topic, p.partition, position(p)) for p in offsets if needs_head(p)}
        heads = read_heads(self.settings, wanted, timeout_s=min(self.timeout_s, 5.0))
        offsets = [_with_head(p, heads) for p in offsets]
        now = _now_ms()
        infos = [
            GroupInfo(g, _state_name(descriptions.get(g)), _members(descriptions.get(g)))
            for g in names
        ]
        return LagSnapshot(compute_rows(offsets, now), infos, ends, now)

    def _partition_counts(self, topics: set[str]) -> dict[str, int]:
        if not topics:
            return {}
        try:
            metadata = self.admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        return {
            name: len(md.partitions)
            for name, md in metadata.topics.items()
            if name in topics and md.error is None
        }

    def _describe(self, groups: list[str]) -> dict[str, ConsumerGroupDescription]:
        futures = self.admin.describe_consumer_groups(groups, request_timeout=self.timeout_s)
        out: dict[str, ConsumerGroupDescription] = {}
        for group, future in futures.items():
            try:
                out[group] = future.result()
            except KafkaException as exc:
                raise self._unreachable(exc) from exc
        return out

    def _committed(self, groups: list[str]) -> dict[str, dict[tuple[str, int], int | None]]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        # The API accepts one group per request; the futures still run concurrently.
        futures = {
            g: self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(g)], request_timeout=self.timeout_s
            )[g]
            for g in groups
        }
        out: dict[str, dict[tuple[str, int], int | None]] = {}
        for group, future in futures.items():
            try:
                result = future.result()
            except KafkaException as exc:
                raise self._unreachable(exc) from exc
            out[group] = {
                (tp.topic, tp.partition): None if tp.offset == OFFSET_INVALID else tp.offset
                for tp in result.topic_partitions or []
                if tp.error is None
            }
        return out

    def _list_offsets(
        self, tps: list[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        if not tps:
            return {}
        request = {TopicPartition(t, p): spec for t, p in tps}
        futures = self.admin.list_offsets(request, request_timeout=self.timeout_s)
        out: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            try:
                info: ListOffsetsResultInfo = future.result()
            except KafkaException as exc:
                if exc.args and _is_missing(exc.args[0]):
                    continue  # deleted since the group committed on it: nothing to lag on
                raise self._unreachable(exc) from exc
            out[(tp.topic, tp.partition)] = info.offset
        return out

    def _unreachable(self, exc: BaseException) -> GuardstreamError:
        return GuardstreamError(
            f"cannot read consumer offsets from the broker at {self.bootstrap}: {exc}",
            "start it with `guardstream stack up` or set GUARDSTREAM_BOOTSTRAP_SERVERS",
        )


def read_heads(
    settings: Settings, wanted: set[tuple[str, int, int]], timeout_s: float = 5.0
) -> dict[tuple[str, int, int], int | None]:
    """Timestamp (ms) of the first record at or after each (topic, partition, offset).

    None means the partition's end was reached without a data record (only transaction
    markers, or nothing, remained). Entries missing from the result could not be read in
    `timeout_s` or carry no timestamp: their time lag is unknown.
    """
    if not wanted:
        return {}
    consumer = Consumer(
        kafka_config(
            settings,
            {
                # Assign-only and never committing: this id never becomes a group on the broker.
                "group.id": "guardstream-lag-probe",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                # A position below the log start (retention) reads the oldest record that is left.
                "auto.offset.reset": "earliest",
                # Records inside an open or stuck transaction are waiting too; see them.
                "isolation.level": "read_uncommitted",
                "fetch.message.max.bytes": 64 * 1024,
                "queued.max.messages.kbytes": 1024,
                "log_level": 0,
            },
        )
    )
    # A partition can be assigned at one offset at a time, and groups sharing a topic wait at
    # different offsets: read in rounds, the i-th round reading each partition's i-th offset.
    per_tp: dict[tuple[str, int], list[int]] = {}
    for t, p, o in sorted(wanted):
        per_tp.setdefault((t, p), []).append(o)
    out: dict[tuple[str, int, int], int | None] = {}
    deadline = time.monotonic() + timeout_s
    try:
        for r in range(max(len(v) for v in per_tp.values())):
            batch = {tp: offs[r] for tp, offs in per_tp.items() if len(offs) > r}
            _read_round(consumer, batch, deadline, out)
    finally:
        consumer.close()
    return out


def _read_round(
    consumer: Consumer,
    batch: dict[tuple[str, int], int],
    deadline: float,
    out: dict[tuple[str, int, int], int | None],
) -> None:
    tps = [TopicPartition(t, p, o) for (t, p), o in batch.items()]
    consumer.assign(tps)
    # A pause outlives re-assignment in librdkafka: undo the previous round's.
    consumer.resume(tps)
    pending = set(batch)
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=0.2):
            tp = (msg.topic() or "", msg.partition() or 0)
            if tp not in pending:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    out[(*tp, batch[tp])] = None
                    pending.discard(tp)
                continue
            pending.discard(tp)
            consumer.pause([TopicPartition(*tp)])
            ts_type, ts = msg.timestamp()
            if ts_type != TIMESTAMP_NOT_AVAILABLE and ts >= 0:
                out[(*tp, batch[tp])] = ts


def _with_head(
    p: PartitionOffsets, heads: dict[tuple[str, int, int], int | None]
) -> PartitionOffsets:
    key = (p.topic, p.partition, position(p))
    if key not in heads:
        return p
    ts = heads[key]
    return PartitionOffsets(
        p.group,
        p.topic,
        p.partition,
        p.committed,
        p.start,
        p.end,
        head_ts_ms=ts,
        head_at_end=ts is None,
    )


def _state_name(description: ConsumerGroupDescription | None) -> str:
    if description is None or description.state is None:
        return "UNKNOWN"
    return str(getattr(description.state, "name", description.state))


def _members(description: ConsumerGroupDescription | None) -> int:
    return len(description.members) if description else 0


def _is_missing(error: Any) -> bool:
    code = getattr(error, "code", lambda: None)()
    return code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION)


def _now_ms() -> int:
    return int(time.time() * 1000)
