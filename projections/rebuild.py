"""``streamledger project --rebuild``: replay ledger.events into a fresh generation, then swap.

Blue/green on schemas. Readers always name ``ledger.<table>``.

1. create ``ledger_rebuild_<n>`` with the migrations (the same files as the live schema);
2. replay ``ledger.events`` from the beginning into it (a sink that assigns every partition
   itself, no consumer group) until it reaches the end offsets taken at the start;
3. in ONE transaction: take the live projection's lock (so no live batch is half-way), lock the
   live tables in the readers' lock order (no deadlock with a reader), rename
   ``ledger`` → ``ledger_retired_<n>``, ``ledger_rebuild_<n>`` → ``ledger``, drop the retired
   schema. Readers never see a missing schema: a query that resolved the old tables waits for the
   commit and is then re-planned against the new ones. Dropping the retired generation in the
   same transaction also invalidates every prepared plan that still pointed at it.

A live projection keeps running through this: its next batch finds the new generation's offsets
differ from its own position (``PositionMovedError``) and it re-seeks to them.

Quarantines (decision 0019): a tenant whose log does not continue its chain is quarantined in the
new generation as in the live one, and the rebuild completes for every other tenant. The live
generation's operator releases (``tenant_releases``) are copied into the new generation before
the replay; ``release_tenants`` adds one for each named tenant, which must be quarantined in the
live generation: its records already in the log (up to each partition's end offset now) that are
on a partition that is not its own are left out, and the ones on its own partition may go back
in time. Whatever else is wrong with its chain quarantines it again, and the report says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from projections.metrics import ProjectionMetrics
from projections.migrations import apply_migrations
from projections.settings import ProjectionSettings
from projections.sink import ProjectionSink
from projections.store import (
    LIVE_SCHEMA,
    LOCK_PROJECTION,
    REBUILD_SCHEMA_PREFIX,
    RETIRED_SCHEMA_PREFIX,
    BatchTarget,
    ProjectionDatabaseError,
)
from streamledger.errors import InfraError, SettingError
from streamledger.settings import Settings

LOG = logging.getLogger("streamledger.projection.rebuild")
WATERMARK_TIMEOUT_S = 30
SWAP_LOCK_TIMEOUT_MS = 5_000
SWAP_ATTEMPTS_MAX = 10

TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
COPY_RELEASES = (
    "INSERT INTO {generation}.tenant_releases"
    " (tenant_id, partition, before_offset, quarantine, released_at)"
    " SELECT tenant_id, partition, before_offset, quarantine, released_at"
    " FROM {live}.tenant_releases"
)
SELECT_LIVE_QUARANTINE = (
    "SELECT reason || ': ' || detail || ' (' || topic || '[' || partition || ']@'"
    " || record_offset || ')' FROM {live}.quarantined_tenants WHERE tenant_id = %s"
)
UPSERT_RELEASES = (
    "INSERT INTO {generation}.tenant_releases (tenant_id, partition, before_offset, quarantine)"
    " SELECT %s, p, o, %s FROM unnest(%s::integer[], %s::bigint[]) AS u(p, o)"
    " ON CONFLICT (tenant_id, partition) DO UPDATE SET before_offset = excluded.before_offset,"
    " quarantine = excluded.quarantine, released_at = excluded.released_at"
)
SELECT_QUARANTINED = (
    "SELECT tenant_id, reason, detail, partition, record_offset, sequence"
    " FROM {generation}.quarantined_tenants ORDER BY tenant_id"
)
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"
SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
RENAME_SCHEMA = "ALTER SCHEMA {old} RENAME TO {new}"
DROP_SCHEMA = "DROP SCHEMA {schema} CASCADE"
LOCK_TABLES = "LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"
# The order every reader query takes its locks in (FROM order: balances before accounts before
# entries); the swap takes them in that same order, all at once, so it can wait for a reader but
# never deadlock with one.
LIVE_TABLES_IN_LOCK_ORDER = (
    "balances",
    "account_metadata",  # a metadata search reads it before accounts (migration 0009)
    "accounts",
    "entries",
    "transaction_metadata",  # a transaction search reads it before transactions (0013)
    "transactions",  # a transaction's read joins its postings' transfers after it (0008)
    "monitors",  # read after balances and accounts, joined to them (0010)
    "transfer_metadata",  # and this one before transfers
    "transfers",
    "statements",  # the reconciliation projection's (0012), read alone
    "statement_lines",
    "reconciliation_results",
    "reconciliation_refusals",  # refused manual requests (0016), read alone
    "tenant_heads",
    "event_chain",
    "projection_offsets",
    "quarantined_tenants",  # written under the projection's lock, read by verify alone
    "tenant_releases",
)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    generation: str
    events: int
    seconds: float
    quarantined: tuple[str, ...] = ()  # one line per tenant quarantined in the new generation


def rebuild(
    settings: Settings,
    projection: ProjectionSettings,
    *,
    metrics: ProjectionMetrics | None = None,
    stop: threading.Event | None = None,
    release_tenants: Sequence[str] = (),
) -> RebuildReport:
    """Rebuild the projection from the log into a fresh schema and swap it in."""
    started = time.monotonic()
    generation = f"{REBUILD_SCHEMA_PREFIX}{time.time_ns() // 1000}"
    apply_migrations(settings, schema=generation)
    metrics = metrics or ProjectionMetrics()
    sink = ProjectionSink(settings, projection, schema=generation, subscribe=False, metrics=metrics)
    try:
        carry_releases(sink, release_tenants)  # before the sink reads them at assignment
        events = replay(sink, projection, metrics, stop or threading.Event())
        quarantined = quarantined_lines(sink)
        swap(sink.connection, generation, projection)
    finally:
        sink.close()
    metrics.rebuild_progress.labels(generation).set(1.0)
    return RebuildReport(generation, events, time.monotonic() - started, quarantined)


def carry_releases(sink: ProjectionSink, release_tenants: Sequence[str]) -> None:
    """Copy the live generation's releases into the new one, and release ``release_tenants``
    for every record the log holds now (each must be quarantined in the live generation)."""
    conn, generation = sink.connection, sql.Identifier(sink.target.schema)
    live = sql.Identifier(LIVE_SCHEMA)
    with conn.transaction():
        row = conn.execute(TABLE_EXISTS, (f"{LIVE_SCHEMA}.tenant_releases",)).fetchone()
        if row is None or not row[0]:
            if release_tenants:
                raise SettingError("--release-tenant: the live projection quarantines no tenant")
            return
        conn.execute(sql.SQL(COPY_RELEASES).format(generation=generation, live=live))
        if not release_tenants:
            return
        ends = topic_end_offsets(sink.consumer, sink.target.topic)
        for tenant_id in release_tenants:
            quarantine = conn.execute(
                sql.SQL(SELECT_LIVE_QUARANTINE).format(live=live), (tenant_id,)
            ).fetchone()
            if quarantine is None:
                raise SettingError(f"--release-tenant: {tenant_id!r} is not quarantined")
            partitions = sorted(ends)
            conn.execute(
                sql.SQL(UPSERT_RELEASES).format(generation=generation),
                (tenant_id, quarantine[0], partitions, [ends[p] for p in partitions]),
            )
            LOG.warning("released %r up to the end offsets %s", tenant_id, ends)


def topic_end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """The high watermark of every partition of ``topic`` now."""
    metadata = consumer.list_topics(topic, timeout=WATERMARK_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise InfraError(f"topic {topic} not found")
    return {
        partition: consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=WATERMARK_TIMEOUT_S
        )[1]
        for partition in sorted(metadata.partitions)
    }


def quarantined_lines(sink: ProjectionSink) -> tuple[str, ...]:
    statement = sql.SQL(SELECT_QUARANTINED).format(generation=sql.Identifier(sink.target.schema))
    with sink.connection.transaction():
        rows = sink.connection.execute(statement).fetchall()
    return tuple(
        f"tenant {tenant} quarantined at {sink.target.topic}[{partition}]@{offset} "
        f"(sequence {sequence}): {reason}: {detail}"
        for tenant, reason, detail, partition, offset, sequence in rows
    )


def end_offsets(sink: ProjectionSink) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition in sink.positions:
        _, high = sink.consumer.get_watermark_offsets(
            TopicPartition(sink.target.topic, partition), timeout=WATERMARK_TIMEOUT_S
        )
        ends[partition] = high
    return ends


def replay(
    sink: ProjectionSink,
    projection: ProjectionSettings,
    metrics: ProjectionMetrics,
    stop: threading.Event,
) -> int:
    """Run the sink until every partition reached the end offsets taken now."""
    sink.start()
    ends = end_offsets(sink)
    total = max(sum(ends.values()), 1)
    events = 0
    idle_since = time.monotonic()
    while not caught_up(sink, ends):
        if stop.is_set():
            raise InfraError("rebuild interrupted; the live projection was not touched")
        outcome = sink.run_once()
        events += outcome.events
        if outcome.events:
            idle_since = time.monotonic()
        elif (time.monotonic() - idle_since) * 1000 > projection.rebuild_idle_ms_max:
            raise InfraError(
                f"rebuild stalled at {sink.positions} before the end offsets {ends} "
                f"(rebuild_idle_ms_max={projection.rebuild_idle_ms_max})"
            )
        done = sum(min(sink.positions.get(p, 0), end) for p, end in ends.items())
        metrics.rebuild_progress.labels(sink.target.schema).set(done / total)
    return events


def caught_up(sink: ProjectionSink, ends: dict[int, int]) -> bool:
    """Every partition is written up to its end offset, or the consumer reported its end there
    (read_committed: the last record may be a transaction marker the sink never sees)."""
    for partition, end in ends.items():
        reached = max(sink.positions.get(partition, 0), sink.end_reached.get(partition, -1))
        if reached < end:
            return False
    return True


def swap(conn: psycopg.Connection[object], generation: str, projection: ProjectionSettings) -> None:
    """Make ``generation`` the live schema in one transaction (see the module docstring)."""
    retired = RETIRED_SCHEMA_PREFIX + generation.removeprefix(REBUILD_SCHEMA_PREFIX)
    live_lock = BatchTarget(LIVE_SCHEMA, projection.projection_name, "").lock_key
    for attempt in range(1, SWAP_ATTEMPTS_MAX + 1):
        try:
            with conn.transaction():
                conn.execute(SET_LOCK_TIMEOUT, (f"{SWAP_LOCK_TIMEOUT_MS}ms",))
                conn.execute(LOCK_PROJECTION, (live_lock,))
                if conn.execute(SCHEMA_EXISTS, (LIVE_SCHEMA,)).fetchone() is not None:
                    lock_live_tables(conn)
                    rename(conn, LIVE_SCHEMA, retired)
                    rename(conn, generation, LIVE_SCHEMA)
                    conn.execute(sql.SQL(DROP_SCHEMA).format(schema=sql.Identifier(retired)))
                else:
                    rename(conn, generation, LIVE_SCHEMA)
            LOG.info("swapped %s in as %s (attempt %d)", generation, LIVE_SCHEMA, attempt)
            return
        except psycopg.errors.LockNotAvailable:
            LOG.warning("swap attempt %d: readers held the live tables; retrying", attempt)
    raise ProjectionDatabaseError(
        f"could not take the live tables' locks in {SWAP_ATTEMPTS_MAX} attempts of "
        f"{SWAP_LOCK_TIMEOUT_MS} ms; {generation} is built but not swapped in"
    )


def lock_live_tables(conn: psycopg.Connection[object]) -> None:
    tables = sql.SQL(", ").join(
        sql.Identifier(LIVE_SCHEMA, table) for table in LIVE_TABLES_IN_LOCK_ORDER
    )
    conn.execute(sql.SQL(LOCK_TABLES).format(tables=tables))


def rename(conn: psycopg.Connection[object], old: str, new: str) -> None:
    conn.execute(sql.SQL(RENAME_SCHEMA).format(old=sql.Identifier(old), new=sql.Identifier(new)))
