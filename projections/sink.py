"""``streamledger project``: ledger.events → PostgreSQL, exactly once, in batches.

The loop, top to bottom (one pass of ``run_once``):

    take the batch the previous pass prepared (or prepare one now)
    → hand it to the writer thread: one DB transaction: check positions + tenant heads,
      write rows, store next offsets
    → meanwhile, on this thread, prepare the next batch: take every record that arrives until
      the write finishes (at most batch_records_max, fewer while the pipeline ramps up,
      decision 0111; when idle, wait up to batch_interval_ms for the first; never held back to
      fill up, decision 0109) → decode (an undecodable event is corrupt state: stop) → plan
      the rows (pure, ``projections.batch``)
    → wait for the writer; on commit: commit the same offsets to Kafka

Pipelining (decision 0016): at most one batch is prepared ahead of the one being written, and
the writer thread touches nothing but the database connection; the consumer, every seek and
every position belong to the calling thread. A prepared batch assumes the batch in flight will
commit: it is tagged with the seek epoch it was consumed in, and every seek (assignment,
revocation, re-seek) first waits for the write in flight and then moves to a new epoch, so a
batch consumed before a seek is dropped, never written. Whatever the timing, a batch commits
only if ``projection_offsets`` still holds the offsets it was consumed from (checked under the
projection's lock in the same transaction), so a stale batch cannot write twice or skip.
Between two passes nothing is in flight: the connection is idle and ``positions`` is what
PostgreSQL holds.

Quarantine (decision 0019): a tenant whose next event does not continue its chain (another
tenant's partition, a repeated or missing sequence, a broken hash chain, an effective time before
its previous event, an event that cannot apply) is quarantined at that event, in the same
transaction: that event and the tenant's later ones are not projected, every other tenant's are,
and the offsets move on. The sink plans each batch against the quarantines and operator releases
it read at assignment (so a known quarantined tenant costs nothing); the write transaction checks
again under the projection's lock and plans the batch once more if it finds a new one.

Commit order: PostgreSQL first, Kafka second. The database transaction is the source of truth
(rows and offsets commit together); Kafka's committed offsets are only for lag monitoring. A
crash between the two leaves Kafka's offsets behind, which is harmless: on assignment this
process seeks to the offsets stored in PostgreSQL, never to Kafka's.

Lag: ``ledger.events`` is written in transactions, so the last records of a partition are commit
markers the consumer never returns; ``high watermark - positions[p]`` would stay at the number of
markers when caught up. The consumer therefore reports end-of-partition (``end_reached``, the
offset past the markers) and the lag is measured from the larger of the two.

Positions: ``positions[p]`` is the offset up to which this process has committed partition
``p`` (what the ``projection_offsets`` row holds); ``prepared_positions[p]`` is where the next
prepared batch starts (past the batch in flight). A batch's ``consumed_from`` must still be in
the table when it commits. If it is not (a rebalance gave the partition to someone else who
wrote, or a rebuild swapped a new generation in), the batch and the one prepared after it are
dropped and every assigned partition is re-seeked to the stored offsets.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from kafka_adapter.batches import take_batch
from kafka_adapter.security import (
    PROJECTION_PRINCIPAL,
    client_config,
    principal_label,
    refused,
)
from projections.batch import BatchPlan, Location, Quarantine, plan_records
from projections.event_records import EventRecord, decode_event_record
from projections.metrics import ProjectionMetrics
from projections.settings import ProjectionSettings
from projections.store import (
    LIVE_SCHEMA,
    BatchTarget,
    FormattedRows,
    PositionMovedError,
    ProjectionDatabaseError,
    QuarantineState,
    WrittenBatch,
    format_rows,
    prepare_session,
    quarantine_context,
    read_offsets,
    read_quarantine_state,
    write_batch,
)
from schemas.codec import DecodeError
from schemas.topics import EVENTS_TOPIC
from streamledger.errors import InfraError, InvariantViolationError
from streamledger.settings import Settings

LOG = logging.getLogger("streamledger.projection")
WRITER_THREADS = 1  # one transaction at a time: batches of a partition commit in order
# While a write is in flight the next batch takes what arrives in waits this short, so it is
# handed over at most this long after the write finished (``consume`` returns early only once it
# has every record it asked for). ~10 µs per wait: ~0.5 % of a core while writes run back to back.
WRITE_POLL_INTERVAL_S = 0.002
# A written batch is freed this many rows at a time (``release_retired``): ~0.5 ms of holding
# the GIL per step, after which the interpreter may hand it to the writer thread.
RELEASE_ROWS_STEP = 256


@dataclass(slots=True)
class PreparedBatch:
    """A batch consumed, decoded and planned, not written yet.

    ``consumed_from``/``next_offsets``: per partition, the first offset the batch covers (what the
    table must hold) and the offset after its last record. ``ends_reached``: end-of-partition
    offsets seen while consuming it, published once the batch is committed (the rebuild stops
    on them). ``seek_epoch``: the sink's epoch when it was consumed.
    """

    seek_epoch: int
    events: list[EventRecord]
    locations: list[Location]  # (partition, offset) of each event
    consumed_from: dict[int, int]
    next_offsets: dict[int, int]
    ends_reached: dict[int, int]
    plan: BatchPlan | None  # None when the batch holds no event
    formatted: FormattedRows | None = None  # the plan's COPY data, formatted by this thread

    def replan(self, held: Mapping[str, int]) -> BatchPlan:
        """The same records planned again, holding back each tenant in ``held`` from that batch
        index on (the write transaction found new quarantines)."""
        assert self.plan is not None, "only a planned batch is planned again"
        context = replace(self.plan.context, held=dict(held))
        return plan_records(self.events, self.locations, context)


@dataclass(slots=True)
class InFlight:
    """The batch the writer thread is writing and what it will answer."""

    batch: PreparedBatch
    written: Future[tuple[WrittenBatch, float]]  # what the transaction wrote, its seconds


@dataclass(slots=True)
class BatchOutcome:
    """What one pass of the loop did (for tests, the rebuild and the benchmark)."""

    events: int = 0
    partitions: dict[int, int] = field(default_factory=dict)  # partition -> next offset


# A batch keeps every record it decodes and every row it plans alive until it is written (10k
# events: some 250k objects), so with CPython's default youngest-generation threshold (700
# allocations) the collector runs every few events and its older-generation passes walk the
# batch again and again. Decode + plan + fold of 10k-event batches, per event (bench/README.md,
# "Projection write path"): 35.5 µs by default, 34.1 at 50k (the processor's), 31.8 at 200k,
# 31.5 with the collector off. The garbage is acyclic almost always (reference counts free it);
# the collector still runs, every 200k net allocations.
GC_THRESHOLDS = (200_000, 20, 100)  # (youngest, middle, oldest), see gc.set_threshold


# The pipeline's ramp (decision 0111). A batch is prepared while the one before it is written,
# except the first after the pipeline ran dry (start-up, a seek, an idle spell): nothing is
# written while it is prepared. So that first batch is kept short, and each next one grows by
# at most PIPELINE_RAMP_GROWTH over the batch in flight, about what can be prepared beside that
# write (measured: ~27 µs of client per event to prepare, ~32 µs of server to write, bench/README
# "Projection write path"): the writer waits on the client for one short batch instead of a
# full one. A backlog reaches batch_records_max in a few batches (10k: 1,250 → 1,875 → 2,812 →
# 4,218 → 6,327 → 9,490 → 10,000); a trickle stays below the start anyway.
PIPELINE_RAMP_DIVISOR = 8  # the first batch: at most batch_records_max / 8 records
PIPELINE_RAMP_GROWTH = 1.5  # each next batch: at most 1.5 times the batch being written


def ramp_records_max(batch_records_max: int, in_flight_events: int | None) -> int:
    """How many records the next batch may hold: ``in_flight_events`` is the size of the batch
    being written beside its preparation, ``None`` when nothing is (the pipeline ran dry)."""
    start = max(1, batch_records_max // PIPELINE_RAMP_DIVISOR)
    if in_flight_events is None:
        return start
    grown = int(in_flight_events * PIPELINE_RAMP_GROWTH)
    return min(batch_records_max, max(start, grown))


# The writer thread waits on PostgreSQL several times per batch (11 for a small batch of new
# transfers, 5 with staged_rows_max; decision 0127: the pipelined locking reads, each COPY's
# start and end, the pipelined merges, COMMIT) and needs the GIL back after each wait, while this
# thread decodes, plans and formats the next batch. CPython hands the GIL over only after the
# switch interval (5 ms by default): a round trip of 0.07 ms took 5.2 ms (median) beside a
# planning thread, 0.07 ms with 0.5 ms, and the backend sat idle meanwhile (decision 0119).
# 0.5 ms: at most 2,000 forced hand-overs a second.
THREAD_SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Fewer collector passes for the projection's allocation pattern and a shorter thread switch
    interval for its writer thread (process-wide: called by ``streamledger project`` and the
    projection bench, not by the sink itself)."""
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(THREAD_SWITCH_INTERVAL_S)


def connect_writer(settings: Settings, projection: ProjectionSettings) -> psycopg.Connection[Any]:
    """The projection's own connection: autocommit, explicit transactions only."""
    try:
        connection = psycopg.connect(
            settings.database_dsn,
            autocommit=True,
            options=f"-c statement_timeout={projection.statement_timeout_ms}",
            application_name="streamledger-projection",
        )
        prepare_session(connection)
        return connection
    except psycopg.Error as exc:
        raise ProjectionDatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc


def consumer_config(
    settings: Settings,
    group: str,
    *,
    partition_eof: bool = False,
    session_timeout_ms: int = ProjectionSettings().session_timeout_ms,
) -> dict[str, object]:
    """``partition_eof``: report reaching the end of a partition (read_committed: past the last
    transaction marker, which the consumer position alone never passes)."""
    return {
        "enable.partition.eof": partition_eof,
        "session.timeout.ms": session_timeout_ms,
        **client_config(settings, PROJECTION_PRINCIPAL),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "client.id": "streamledger-projection",
    }


class ProjectionSink:
    """Projects ``ledger.events`` into one schema generation. One per process; call it from one
    thread (it starts its own writer thread).

    ``subscribe=True`` joins the consumer group (the live projection); ``False`` assigns every
    partition itself (a rebuild, which must see the whole log).
    """

    def __init__(
        self,
        settings: Settings,
        projection: ProjectionSettings,
        *,
        schema: str = LIVE_SCHEMA,
        subscribe: bool = True,
        metrics: ProjectionMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.projection = projection
        self.target = BatchTarget(schema, projection.projection_name, settings.topic(EVENTS_TOPIC))
        self.subscribe = subscribe
        self.metrics = metrics or ProjectionMetrics()
        self.positions: dict[int, int] = {}  # partition -> committed next offset
        self.prepared_positions: dict[int, int] = {}  # partition -> next offset to prepare
        self.end_reached: dict[int, int] = {}  # partition -> offset of the last end-of-partition
        self.seek_epoch = 0
        self.partition_count: int | None = None  # of the events topic, read at start
        self.quarantine = QuarantineState(frozenset(), {})  # as of the last seek or commit
        self.prepared: PreparedBatch | None = None
        self.in_flight: InFlight | None = None
        # The write that finished last, kept until the next one is under way, then freed a slice
        # at a time beside it (``release_rows``).
        self.retired: InFlight | None = None
        self.settled = BatchOutcome()  # what the last write that finished committed
        self.connection = connect_writer(settings, projection)
        # Formats COPY data on the preparing thread with the connection's adapters; it never
        # executes anything, so the connection stays the writer thread's alone.
        self.formatting_cursor = self.connection.cursor()
        group = projection.consumer_group if subscribe else f"{projection.consumer_group}-{schema}"
        config = consumer_config(
            settings,
            group,
            partition_eof=True,  # the rebuild's stop condition and the lag (module docstring)
            session_timeout_ms=projection.session_timeout_ms,
        )
        self.consumer = Consumer(config)
        self.consumer_started = False
        self.writer = ThreadPoolExecutor(
            max_workers=WRITER_THREADS, thread_name_prefix="projection-writer"
        )

    # ----------------------------------------------------------------- assignment

    def start(self) -> None:
        if self.consumer_started:
            return
        self.consumer_started = True
        metadata = self.consumer.list_topics(self.target.topic, timeout=30)
        topic = metadata.topics.get(self.target.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise InfraError(f"topic {self.target.topic} not found")
        # A tenant's events belong on its partition of this many (schemas.keys.partition_for).
        self.partition_count = len(topic.partitions)
        if self.subscribe:
            self.consumer.subscribe(
                [self.target.topic], on_assign=self.on_assign, on_revoke=self.on_revoke
            )
            return
        partitions = [TopicPartition(self.target.topic, p) for p in sorted(topic.partitions)]
        self.on_assign(self.consumer, partitions)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Seek to the offsets stored in PostgreSQL, not to Kafka's committed offsets."""
        stored = self.stored_offsets()  # waits for the write in flight, then a new epoch
        for partition in partitions:
            offset = stored.get(partition.partition)
            partition.offset = OFFSET_BEGINNING if offset is None else offset
            self.positions[partition.partition] = 0 if offset is None else offset
            self.prepared_positions[partition.partition] = self.positions[partition.partition]
            self.end_reached.pop(partition.partition, None)
        consumer.assign(partitions)
        self.metrics.set_assigned(len(self.positions))
        LOG.info("assigned %s at %s", self.target.topic, self.positions)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.begin_seek()
        for partition in partitions:
            self.positions.pop(partition.partition, None)
            self.prepared_positions.pop(partition.partition, None)
            self.end_reached.pop(partition.partition, None)
        consumer.unassign()
        self.metrics.set_assigned(len(self.positions))

    def reseek(self) -> None:
        """The stored offsets moved under us: continue from what PostgreSQL holds."""
        self.metrics.position_resets.labels(self.target.schema).inc()
        stored = self.stored_offsets()
        for partition in list(self.positions):
            offset = stored.get(partition, 0)
            self.consumer.seek(TopicPartition(self.target.topic, partition, offset))
            self.positions[partition] = offset
            self.prepared_positions[partition] = offset
            self.end_reached.pop(partition, None)
        LOG.warning("re-seeked %s to the stored offsets %s", self.target.topic, self.positions)

    def begin_seek(self) -> None:
        """Before any seek: let the write in flight finish, drop what was prepared after it."""
        self.settle()
        self.seek_epoch += 1
        self.prepared = None

    def stored_offsets(self) -> dict[int, int]:
        """The offsets stored in PostgreSQL, and (again) the quarantines and releases."""
        self.begin_seek()
        assert self.in_flight is None, "the writer connection is busy"
        self.quarantine = read_quarantine_state(self.connection, self.target)
        self.metrics.quarantined_tenants.labels(self.target.schema).set(
            len(self.quarantine.tenants)
        )
        return read_offsets(self.connection, self.target)

    # ----------------------------------------------------------------- the loop

    def run(self, stop: threading.Event, *, until: Callable[[], bool] | None = None) -> None:
        """Project until ``stop`` is set (or ``until()`` is true after a pass)."""
        self.start()
        while not stop.is_set():
            self.metrics.loop_heartbeat()
            self.run_once()
            if until is not None and until():
                return

    def run_once(self) -> BatchOutcome:
        """Write one batch while the next one is consumed, decoded and planned; return what
        was committed (nothing when the batch was dropped or empty)."""
        assert self.in_flight is None, "run_once is not re-entrant"
        records_max = self.projection.batch_records_max
        if self.prepared is not None:
            batch = self.prepared
        else:  # the pipeline ran dry: a short batch first, so the writer starts early
            batch = self.prepare(ramp_records_max(records_max, None))
        self.prepared = None
        if batch.seek_epoch != self.seek_epoch:
            LOG.info("dropped a batch prepared before a seek")  # consumed again from the table
            return BatchOutcome()
        if batch.plan is None:
            self.end_reached.update(batch.ends_reached)
            self.observe_lag()
            return BatchOutcome()
        self.in_flight = InFlight(batch, self.writer.submit(self.store, batch))
        try:
            self.release_retired()
            # overlaps the write; a rebalance in here settles it first
            prepared = self.prepare(ramp_records_max(records_max, len(batch.events)))
        except BaseException:
            self.settle()  # never leave a write running behind a failure
            raise
        if prepared.seek_epoch == self.seek_epoch:
            self.prepared = prepared
        self.settle()
        outcome, self.settled = self.settled, BatchOutcome()
        self.observe_lag()
        return outcome

    def release_retired(self) -> None:
        """Free the batch written before the one in flight, a slice at a time: CPython frees a
        list's items in one call holding the GIL (10 to 20 ms for a planned batch of 6k events),
        and the writer thread needs the GIL back after each round trip to PostgreSQL."""
        retired, self.retired = self.retired, None
        if retired is None:
            return
        batch, plan = retired.batch, retired.batch.plan
        rows: list[list[Any]] = [batch.events, batch.locations]
        if plan is not None:  # the plan holds the records too: its lists first
            rows[:0] = [plan.entries, plan.chain, plan.transfer_events, plan.transfer_locations]
        for listed in rows:
            while listed:
                del listed[-RELEASE_ROWS_STEP:]

    def prepare(self, records_max: int) -> PreparedBatch:
        """Take (at most ``records_max`` records), decode and plan the next batch (this thread;
        no database)."""
        records = self.take_records(records_max)
        batch = self.decode(records)  # after consume: its rebalance callbacks have run
        if batch.events:
            context = quarantine_context(self.quarantine, self.partition_count)
            batch.plan = plan_records(batch.events, batch.locations, context)
            batch.formatted = format_rows(
                self.formatting_cursor,
                batch.plan,
                staged_rows_max=self.projection.staged_rows_max,
            )
            self.prepared_positions.update(batch.next_offsets)
        return batch

    def take_records(self, records_max: int) -> list[Message]:
        """The next batch's records, never held back to fill up (decision 0109).

        With no write in flight: every record already fetched, or the first to arrive within
        ``batch_interval_ms`` and those fetched with it (``take_batch``). With a write in flight:
        every record that arrives until that write finishes (at most ``records_max``: the
        pipeline's ramp, decision 0111), so what becomes visible during a write goes into the
        next one, not the one after it — unless the batch already holds the ramp's start and
        nothing arrives within a poll: caught up (the end of a backlog), it is decoded and
        planned beside the write instead of after it (decision 0119). The loop is bounded by the
        write, which ``statement_timeout_ms`` bounds."""
        if self.in_flight is None:
            return take_batch(self.consumer, records_max, self.projection.batch_interval_ms / 1000)
        records = self.consumer.consume(records_max, 0)
        epoch = self.seek_epoch
        caught_up_at = ramp_records_max(self.projection.batch_records_max, None)
        while len(records) < records_max and self.write_in_flight():
            more = self.consumer.consume(records_max - len(records), WRITE_POLL_INTERVAL_S)
            if self.seek_epoch != epoch:  # a rebalance ran in there: what came before is stale
                epoch, records = self.seek_epoch, more
            else:
                records.extend(more)
            if not more and len(records) >= caught_up_at:
                break
        return records

    def write_in_flight(self) -> bool:
        return self.in_flight is not None and not self.in_flight.written.done()

    def decode(self, records: Sequence[Message]) -> PreparedBatch:
        batch = PreparedBatch(self.seek_epoch, [], [], {}, {}, {}, None)
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.note_end(record, batch)
                    continue
                label = principal_label(self.settings, PROJECTION_PRINCIPAL)
                doing = f"consuming {self.target.topic} (group {self.projection.consumer_group})"
                raise refused(label, doing, error) or InfraError(f"{doing}: {error}")
            partition, offset, value = record.partition(), record.offset(), record.value()
            if partition is None or offset is None or value is None:
                raise InvariantViolationError(f"{self.target.topic}: a record without a value")
            position = self.prepared_positions.get(partition)
            if position is None or offset < batch.next_offsets.get(partition, position):
                continue  # fetched before a revoke or a seek; PostgreSQL decides, not us
            try:
                batch.events.append(decode_event_record(value))
            except DecodeError as exc:
                raise InvariantViolationError(
                    f"{self.target.topic}[{partition}]@{offset} is not a ledger event: {exc}"
                ) from exc
            batch.locations.append((partition, offset))
            batch.consumed_from.setdefault(partition, position)
            batch.next_offsets[partition] = offset + 1
        return batch

    def note_end(self, record: Message, batch: PreparedBatch) -> None:
        partition, offset = record.partition(), record.offset()
        if partition is not None and offset is not None and partition in self.prepared_positions:
            batch.ends_reached[partition] = offset

    def store(self, batch: PreparedBatch) -> tuple[WrittenBatch, float]:
        """The writer thread: one transaction, rows and offsets; what it wrote and its seconds.
        It reads only its argument and writes only through the connection: no consumer, no
        positions."""
        assert batch.plan is not None, "an empty batch is never written"
        started = time.perf_counter()
        try:
            written = write_batch(
                self.connection,
                self.target,
                batch.plan,
                consumed_from=batch.consumed_from,
                next_offsets=batch.next_offsets,
                replan=batch.replan,
                formatted=batch.formatted,
            )
        except psycopg.errors.UniqueViolation as exc:
            raise InvariantViolationError(
                f"projection {self.target.schema}: a row already exists: {exc}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise ProjectionDatabaseError(f"PostgreSQL failed during a batch: {exc}") from exc
        return written, time.perf_counter() - started

    def settle(self) -> None:
        """Wait for the write in flight (if any); record its outcome in ``settled``. A moved
        position drops what was prepared after it and re-seeks; any other failure is raised."""
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is None:
            return
        self.retired = in_flight
        try:
            written, seconds = in_flight.written.result()
        except PositionMovedError as exc:
            LOG.warning("%s", exc)
            self.reseek()  # a new epoch: the batch prepared after this one is dropped
            return
        self.committed(in_flight.batch, written, seconds)

    def committed(self, batch: PreparedBatch, written: WrittenBatch, seconds: float) -> None:
        """After the DB commit: positions, quarantines, metrics, then Kafka's offsets (lag
        monitoring)."""
        plan = written.plan
        for partition, offset in batch.next_offsets.items():
            assert self.positions.get(partition, -1) == batch.consumed_from[partition], (
                f"partition {partition} committed from {batch.consumed_from[partition]}, "
                f"this process was at {self.positions.get(partition)}"
            )
            self.positions[partition] = offset
        self.end_reached.update(batch.ends_reached)
        self.settled = BatchOutcome(events=len(batch.events), partitions=dict(batch.next_offsets))
        self.note_quarantines(written)
        if self.subscribe:  # the live projection: commit time minus each event's effective time
            self.metrics.observe_freshness(
                (record["effective_at_us"] for record in batch.events), time.time()
            )
        schema = self.target.schema
        self.metrics.transaction_seconds.labels(schema).observe(seconds)
        self.metrics.batch_size.labels(schema).observe(len(batch.events))
        self.metrics.events_applied.labels(schema).inc(plan.event_count)
        if plan.last_effective_at_us:
            lag_s = time.time() - plan.last_effective_at_us / 1_000_000
            self.metrics.lag_seconds.labels(schema).set(max(lag_s, 0.0))
        if self.subscribe:
            # After the DB commit, for lag monitoring only (see the module docstring).
            offsets = [
                TopicPartition(self.target.topic, p, o) for p, o in batch.next_offsets.items()
            ]
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def note_quarantines(self, written: WrittenBatch) -> None:
        """Remember the tenants the batch quarantined (later batches hold them back as they are
        planned); count them and the records held back; log each new one."""
        schema, plan = self.target.schema, written.plan
        held = sum(plan.held_events.values())
        if held:
            self.metrics.held_events.labels(schema).inc(held)
        if plan.excluded_events:
            self.metrics.excluded_events.labels(schema).inc(plan.excluded_events)
        if not written.quarantines:
            return
        tenants = self.quarantine.tenants | written.quarantines.keys()
        self.quarantine = QuarantineState(frozenset(tenants), self.quarantine.releases)
        self.metrics.quarantined_tenants.labels(schema).set(len(tenants))
        self.metrics.quarantines.labels(schema).inc(len(written.quarantines))
        for quarantine in written.quarantines.values():
            LOG.error("%s", describe_quarantine(self.target, quarantine))

    def observe_lag(self) -> None:
        """High watermark minus how far this consumer has read, past the commit markers once it
        reported the end of the partition (0 when caught up)."""
        for partition, position in self.positions.items():
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.target.topic, partition), cached=True
            )
            if high >= 0:
                read_up_to = max(position, self.end_reached.get(partition, -1))
                lag = max(high - read_up_to, 0)
                self.metrics.lag_records.labels(self.target.schema, str(partition)).set(lag)

    def close(self) -> None:
        try:
            self.writer.shutdown(wait=True)  # nothing is in flight between passes
            self.consumer.close()
        finally:
            self.connection.close()


def describe_quarantine(target: BatchTarget, quarantine: Quarantine) -> str:
    return (
        f"projection {target.schema}: tenant {quarantine.tenant_id!r} quarantined at "
        f"{target.topic}[{quarantine.partition}]@{quarantine.offset} (sequence "
        f"{quarantine.sequence}): {quarantine.reason}: {quarantine.detail}; its events are "
        "held back, every other tenant goes on (docs/runbook.md#streamledgertenantquarantined)"
    )
