"""Reading a partition's state topics back from Kafka when the partition is assigned.

Why the snapshot is consistent: the processor writes a batch's state records, outcomes, events
and the input offsets in ONE transaction. The new owner must read every state topic up to a point
that includes every transaction whose input offsets are committed, and nothing of a transaction
that will abort. Kafka gives us that in three steps:

1. Wait until, on every output partition we read, the last stable offset (LSO, read_committed)
   equals the high watermark (read_uncommitted): no transaction of a previous owner is open
   there any more. A killed owner's transaction is aborted by the coordinator after its
   transaction timeout (or at once when the same instance restarts); one whose commit was in
   flight finishes in milliseconds. Only the partition's owner writes these partitions, so once
   they are equal they stay equal while we read. The wait is bounded by ``restore_timeout_s``.
2. Read each compacted topic from its beginning to that end with ``read_committed``, through a
   separate consumer with ``assign()`` (no group), keeping the latest value per key; a
   tombstone removes its key.
3. The group consumer then fetches the committed input offsets; librdkafka asks for *stable*
   offsets under read_committed (KIP-447), so they match the snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from processors.processor_settings import ProcessorSettings
from processors.restore_fold import TopicPartitionKey, keep_latest
from streamledger.errors import StreamLedgerError

LOGGER = logging.getLogger("streamledger.processor.restore")
RESTORE_CONSUME_RECORDS_MAX = 10_000  # one consume() call while restoring
# Partitions restored together are read in one pass (one assign, one end-of-partition round)
# while their records (by offsets) add up to at most this; a larger partition is read alone.
# Bounds the snapshots held at once (~340 bytes a record) to ~170 MB beyond one partition's
# (decision 0124).
RESTORE_PASS_RECORDS_MAX = 500_000
# consume() waits for RESTORE_CONSUME_RECORDS_MAX records or this long, whichever comes first:
# short, so the last (partial) batch and the end-of-partition events are not waited on (20 ms
# was up to 40 ms a partition, 8 s per million keys at 4.6k keys a partition; an empty call
# costs microseconds: bench/README.md, "Restore", decision 0091).
RESTORE_POLL_S = 0.002
STABLE_WAIT_POLL_S = 0.2
RESTORE_FETCH_BYTES_MAX = 16 * 1024 * 1024
# librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) once its local queue holds
# queued.min.messages (default 100k); a restore drains the queue as fast as it fills, so keep
# fetching and let the byte bound (queued.max.messages.kbytes) be the limit.
RESTORE_QUEUED_RECORDS_MIN = 1_000_000
RESTORE_QUEUE_BACKOFF_MS = 10
# An empty fetch at a partition's end returns after this; librdkafka reports the end of a
# partition only from such an empty fetch, so each restored partition waited it once (20 ms
# before decision 0091). Only a restore's reader fetches with it, for well under a second.
RESTORE_FETCH_WAIT_MS_MAX = 2
# A new client asks for no connection to "any broker" (a metadata or leader query) within
# reconnect.backoff.ms / 2 of the last one (librdkafka's sparse-connection interval, 50 ms at
# the default 100): a fresh restore reader's first metadata request, made while its bootstrap
# connection was being replaced by the broker's own, waited that ~50 ms, half the fixed cost of
# a restore (decision 0112). At 20 ms the wait is ~11 ms (librdkafka's floor); backoff after a
# failed connection still doubles up to reconnect.backoff.max.ms.
RESTORE_RECONNECT_BACKOFF_MS = 20
EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]
METADATA_TIMEOUT_S = 5.0  # the topics' metadata before a read (_learn_topics)
LEADERSHIP_RETRY_S = 1.0  # a refused listing is asked again (by a new admin client) after this
# listing errors of a leader that has just lost (or not yet won) the partition after a broker
# failure: librdkafka does not flag every one retriable (FENCED_LEADER_EPOCH stopped a restore
# in make chaos-ha)
LEADERSHIP_MOVING_ERRORS = frozenset(
    {
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
    }
)


class RestoreError(StreamLedgerError):
    """A partition's state could not be read back in time; the process must not go on."""


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """The latest value per key of each state topic for one partition (tombstones removed).

    ``header_values`` holds, per topic and key, the value of the header named at
    ``read_partitions`` on that key's latest record, when the record carries it.
    ``duration_s``: from the start of the read pass that read this partition (with the listing,
    for the first pass) to its end; the partitions of one pass share it (``read_partitions``).
    """

    partition: int
    records: dict[str, dict[bytes, bytes]]  # topic -> key -> latest value
    header_values: dict[str, dict[bytes, bytes]]  # topic -> key -> the named header's value
    records_read: int
    duration_s: float


def admin_for(processor_settings: ProcessorSettings) -> AdminClient:
    return AdminClient(
        {
            **processor_settings.kafka_connection,
            "reconnect.backoff.ms": RESTORE_RECONNECT_BACKOFF_MS,
        }
    )


def restore_consumer(processor_settings: ProcessorSettings) -> Consumer:
    """A group-less reader: ``assign()`` only, never commits, read_committed."""
    return Consumer(restore_consumer_config(processor_settings))


def restore_consumer_config(processor_settings: ProcessorSettings) -> dict[str, object]:
    """``restore_consumer``'s client configuration (a native reader takes the same pairs,
    decision 0133)."""
    return {
        **processor_settings.kafka_connection,
        "group.id": processor_settings.group_id + "-restore",  # required, never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "max.partition.fetch.bytes": RESTORE_FETCH_BYTES_MAX,
        "fetch.max.bytes": RESTORE_FETCH_BYTES_MAX * 4,
        "queued.min.messages": RESTORE_QUEUED_RECORDS_MIN,
        "fetch.queue.backoff.ms": RESTORE_QUEUE_BACKOFF_MS,
        "fetch.wait.max.ms": RESTORE_FETCH_WAIT_MS_MAX,
        "reconnect.backoff.ms": RESTORE_RECONNECT_BACKOFF_MS,
    }


def read_partitions(
    consumer: Consumer,
    admin: AdminClient,
    *,
    topics: Sequence[str],
    partitions: Sequence[int],
    timeout_s: float,
    header_name: str | None = None,
    renew_admin: Callable[[], AdminClient] | None = None,
    known_topics: set[str] | None = None,
) -> Iterator[PartitionSnapshot]:
    """Steps 1 and 2 above for ``partitions``, yielded in order as they are read; raises
    ``RestoreError`` on timeout.

    One listing for all of them, then read passes: consecutive partitions whose records (by
    offsets) together stay under ``RESTORE_PASS_RECORDS_MAX`` are assigned and read to their
    end together, a larger one alone (decision 0124: each partition read apart paid its own
    listing, first fetch and end-of-partition fetch, half of a small restore's wall time).
    The listing and the first pass must finish within ``timeout_s``, each later pass within
    ``timeout_s`` of its start: a bound per pass, as there was one per partition.

    ``known_topics``: the topics whose metadata ``consumer`` has already fetched (updated here);
    a reader that restores several times asks for each topic's metadata once (decision 0112)."""
    if not partitions:
        return
    started = time.monotonic()
    wanted = [TopicPartition(topic, partition) for partition in partitions for topic in topics]
    ends = stable_ends(admin, wanted, started + timeout_s, renew_admin)
    for group in _passes(partitions, topics, ends):
        deadline = started + timeout_s
        to_read = [
            TopicPartition(topic, partition)
            for partition in group
            for topic in topics
            if ends[topic, partition][1] > ends[topic, partition][0]
        ]
        latest = _Latest.empty(topics, group, header_name)
        if to_read:
            learned = known_topics if known_topics is not None else set()
            unknown = list(dict.fromkeys(tp.topic for tp in to_read if tp.topic not in learned))
            learned.update(_learn_topics(consumer, unknown, deadline))
            _read_to_end(consumer, to_read, ends, latest, deadline)
        duration_s = time.monotonic() - started
        for partition in group:
            yield latest.snapshot(partition, topics, duration_s)
        started = time.monotonic()


def _passes(
    partitions: Sequence[int], topics: Sequence[str], ends: dict[tuple[str, int], tuple[int, int]]
) -> list[list[int]]:
    """``partitions`` in order, cut into read passes of at most ``RESTORE_PASS_RECORDS_MAX``
    records (offsets: transaction markers count too) unless one partition alone is larger."""
    passes: list[list[int]] = []
    records_in_pass = 0
    for partition in partitions:
        records = sum(ends[topic, partition][1] - ends[topic, partition][0] for topic in topics)
        if not passes or records_in_pass + records > RESTORE_PASS_RECORDS_MAX:
            passes.append([])
            records_in_pass = 0
        passes[-1].append(partition)
        records_in_pass += records
    return passes


def wait_until_stable(
    admin: AdminClient,
    partitions: list[TopicPartition],
    deadline: float,
    renew_admin: Callable[[], AdminClient] | None = None,
) -> dict[str, tuple[int, int]]:
    """``stable_ends`` of one partition's topics, by topic."""
    ends = stable_ends(admin, partitions, deadline, renew_admin)
    return {topic: offsets for (topic, _), offsets in ends.items()}


def stable_ends(
    admin: AdminClient,
    partitions: list[TopicPartition],
    deadline: float,
    renew_admin: Callable[[], AdminClient] | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """Wait until LSO == high watermark on each partition; return (topic, partition) ->
    (earliest, end).

    A listing refused while leadership moves is asked again (until ``deadline``) through a new
    admin client from ``renew_admin``: the old one can keep a stale leader epoch and be refused
    ``FENCED_LEADER_EPOCH`` until the deadline (seen in the chaos test).
    """
    while True:
        # the three requests are sent at once, then awaited: one round trip, not three
        listed = _list_offsets(
            admin,
            partitions,
            [
                (EARLIEST, IsolationLevel.READ_COMMITTED),
                (LATEST, IsolationLevel.READ_COMMITTED),
                (LATEST, IsolationLevel.READ_UNCOMMITTED),
            ],
            deadline,
        )
        if listed is None:
            time.sleep(LEADERSHIP_RETRY_S)
            if renew_admin is not None:
                admin = renew_admin()
            continue
        earliest, committed, uncommitted = listed
        unknown = [
            _name(topic)
            for offsets in (earliest, committed, uncommitted)
            for topic, offset in offsets.items()
            if offset < 0
        ]
        # A listing can come back without a real offset (-1) while leadership moves after a
        # broker failure: that is "not known yet", never "empty" — reading nothing would start
        # the partition's tenants over at sequence 1 (a fork, seen in make chaos-ha).
        if not unknown and committed == uncommitted:
            return {named: (earliest[named], committed[named]) for named in committed}
        if time.monotonic() >= deadline and unknown:
            raise RestoreError(
                f"{_named(partitions)}: no offsets known for"
                f" {', '.join(sorted(set(unknown)))} within the restore timeout"
                " [setting restore_timeout_s / --restore-timeout-s]"
            )
        if time.monotonic() >= deadline:
            open_topics = [_name(t) for t in committed if committed[t] != uncommitted[t]]
            raise RestoreError(
                f"{_named(partitions)}: a previous owner's transaction is still"
                f" open on {', '.join(open_topics)} after the restore timeout"
                " [setting restore_timeout_s / --restore-timeout-s]"
            )
        time.sleep(STABLE_WAIT_POLL_S)


def _list_offsets(
    admin: AdminClient,
    partitions: list[TopicPartition],
    queries: list[tuple[OffsetSpec, IsolationLevel]],
    deadline: float,
) -> list[dict[tuple[str, int], int]] | None:
    """The offsets per query, or None when the listing was refused because the partition's
    leadership is moving and ``deadline`` has not passed (ask again)."""
    remaining_s = max(1.0, deadline - time.monotonic())
    pending = [
        admin.list_offsets(
            {tp: spec for tp in partitions}, isolation_level=isolation, request_timeout=remaining_s
        )
        for spec, isolation in queries
    ]
    try:
        return [
            {
                (tp.topic, tp.partition): int(future.result().offset)
                for tp, future in futures.items()
            }
            for futures in pending
        ]
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and _is_leadership_moving(error) and time.monotonic() < deadline:
            # asked a leader that has just lost the partition: not known yet, ask again
            LOGGER.info("listing offsets of %s: %s; asking again", partitions, error)
            return None
        raise RestoreError(f"cannot list offsets of {partitions}: {exc}") from exc


def _named(partitions: list[TopicPartition]) -> str:
    numbers = sorted({tp.partition for tp in partitions})
    return ("partition " if len(numbers) == 1 else "partitions ") + ", ".join(map(str, numbers))


def _name(topic_partition: tuple[str, int]) -> str:
    return f"{topic_partition[0]}[{topic_partition[1]}]"


def _is_leadership_moving(error: KafkaError) -> bool:
    """True for a listing error that a broker failover causes and the next try does not."""
    return error.retriable() or error.code() in LEADERSHIP_MOVING_ERRORS


@dataclass(frozen=True, slots=True)
class _Latest:
    """Where ``_read_to_end`` keeps the latest value (and named header value) per key, and the
    records read, per topic partition."""

    values: dict[TopicPartitionKey, dict[bytes, bytes]]
    header_values: dict[TopicPartitionKey, dict[bytes, bytes]]
    header_name: str | None
    records_read: dict[TopicPartitionKey, int]

    @staticmethod
    def empty(topics: Sequence[str], partitions: Sequence[int], header_name: str | None) -> _Latest:
        named = [(topic, partition) for partition in partitions for topic in topics]
        return _Latest(
            {key: {} for key in named},
            {key: {} for key in named},
            header_name,
            dict.fromkeys(named, 0),
        )

    def snapshot(
        self, partition: int, topics: Sequence[str], duration_s: float
    ) -> PartitionSnapshot:
        records_read = sum(self.records_read[topic, partition] for topic in topics)
        values = {topic: self.values[topic, partition] for topic in topics}
        LOGGER.info(
            "restored partition %d: %d records in %.3f s (%s)",
            partition,
            records_read,
            duration_s,
            ", ".join(f"{topic}={len(latest)} keys" for topic, latest in values.items()),
        )
        header_values = {topic: self.header_values[topic, partition] for topic in topics}
        return PartitionSnapshot(partition, values, header_values, records_read, duration_s)


def _learn_topics(consumer: Consumer, topics: list[str], deadline: float) -> list[str]:
    """Ask for the topics' metadata before ``assign``: librdkafka learns the leader of a topic
    first met in ``assign()`` only at its next one-second topic scan, so the first partition
    read by a new reader waited up to a second for its first fetch (0.9 s of a 1.2 s restore of
    18.5k keys, bench/README.md 2026-12-06). A failure here only loses that shortcut. Returns
    the topics whose metadata came back."""
    learned = []
    for topic in topics:
        try:
            consumer.list_topics(
                topic, timeout=max(0.1, min(METADATA_TIMEOUT_S, deadline - time.monotonic()))
            )
        except KafkaException as exc:
            LOGGER.info("metadata of %s before reading it: %s", topic, exc)
        else:
            learned.append(topic)
    return learned


def _read_to_end(
    consumer: Consumer,
    partitions: list[TopicPartition],
    ends: dict[TopicPartitionKey, tuple[int, int]],
    latest: _Latest,
    deadline: float,
) -> None:
    # start at the earliest offsets listed above: no offset reset round trip per partition
    consumer.assign(
        [
            TopicPartition(tp.topic, tp.partition, ends[tp.topic, tp.partition][0])
            for tp in partitions
        ]
    )
    pending = {(tp.topic, tp.partition) for tp in partitions}
    try:
        while pending:
            if time.monotonic() >= deadline:
                raise RestoreError(
                    f"{_named(partitions)}: {', '.join(map(_name, sorted(pending)))} not read to"
                    " their end within the restore timeout [setting restore_timeout_s]"
                )
            messages = consumer.consume(RESTORE_CONSUME_RECORDS_MAX, RESTORE_POLL_S)
            _keep_latest(messages, ends, latest, pending)
    finally:
        consumer.unassign()


def _keep_latest(
    messages: list[Message],
    ends: dict[TopicPartitionKey, tuple[int, int]],
    latest: _Latest,
    pending: set[TopicPartitionKey],
) -> int:
    """Fold one consumed batch into ``latest``; returns the records read. The fold runs per
    restored record and is compiled with the core (``processors.restore_fold``, decision 0129);
    what it hands back (an end of partition, an error, a record without a key) is decided here,
    in the batch's order."""
    unusual: list[Message] = []
    records_read = keep_latest(
        messages,
        values_by_partition=latest.values,
        header_values_by_partition=latest.header_values,
        header_name=latest.header_name,
        records_read=latest.records_read,
        unusual=unusual,
    )
    for message in unusual:
        error = message.error()
        if error is not None:  # the end of a partition (anything else stops the restore)
            _mark_end(message, error, ends, pending)
        else:
            raise RestoreError(
                f"{message.topic()}[{message.partition()}]: a record without a key at"
                f" {message.offset()}"
            )
    return records_read


def _mark_end(
    message: Message,
    error: KafkaError,
    ends: dict[TopicPartitionKey, tuple[int, int]],
    pending: set[TopicPartitionKey],
) -> None:
    topic, partition = message.topic(), message.partition()
    if topic is None or partition is None or error.code() != KafkaError._PARTITION_EOF:
        # None: an error of the client, not of a partition (a broker unreachable, ...)
        raise RestoreError(f"reading {topic}[{partition}]: {error.str()}")
    # EOF is reported at the stable end we waited for; anything short of it is a bug.
    offset = message.offset() or 0
    if offset < ends[topic, partition][1]:
        raise RestoreError(
            f"{_name((topic, partition))}: end of partition at {offset},"
            f" expected {ends[topic, partition][1]}"
        )
    pending.discard((topic, partition))
