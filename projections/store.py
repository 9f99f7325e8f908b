"""The projection's writes to PostgreSQL: one batch, one transaction, offsets included.

``write_batch`` is the whole write side. In one transaction (begun and ended by hand: the
connection is in autocommit) it

1. locks this projection's rows of ``projection_offsets`` and checks they still hold the
   positions the sink consumed from (another instance, or a rebuild swapped in, moved them:
   ``PositionMovedError``, the sink re-seeks; nothing is written);
2. locks the batch's tenants in ``quarantined_tenants`` and ``tenant_heads`` and settles the
   plan (``settle_plan``): a tenant quarantined before is held back whole; a tenant whose first
   record does not continue its stored head (sequence, hash, time), or whose record cannot
   apply to the transfers' state, is quarantined at that record and the batch is planned again
   without it (pure, ``projections.batch``; decision 0019). Every other tenant is written;
3. reads the transfers the batch finalizes or reverses, folds their new state (pure);
4. writes with binary ``COPY`` only — no round trip per row, no per-row parameter arrays:
   accounts, the transfers the batch creates, the journal and the chain straight into their
   tables (a row that already exists is a ``UniqueViolation``: a repeat, never overwritten);
   balances and the transfers it changes into session-local staging tables, then one
   ``INSERT … ON CONFLICT`` / ``UPDATE … FROM`` each, whose row count must equal the staged
   rows. A batch of at most ``staged_rows_max`` journal, chain, created-transfer and balance rows
   sends those in one ``COPY`` into one session-local table instead, and from there one
   ``INSERT`` each (the balances: the same upsert, the same count; decision 0127). The
   ``COPY`` data of the journal, the chain and the created transfers (and of a small batch's
   staged rows) may come formatted by the thread that planned the batch (``format_rows``,
   decision 0111): then this thread only sends bytes;
5. records new quarantines and counts the records held back for quarantined tenants;
6. stores the next offset of every partition in the batch, held records included: a quarantined
   tenant never stops the projection.

Round trips (decision 0127): steps 1 and 2's ``BEGIN``, lock and three locking reads go to
PostgreSQL in one pipeline (one wait); step 3's read, when there is one, is one more; each
``COPY`` is two (its start, its end; ``COPY`` cannot be pipelined); the merges, step 5 and step
6 go in a second pipeline, their row counts checked before ``COMMIT``. A small batch of new
transfers: 11 round trips (18 before), or with the setting ``staged_rows_max`` 5 (pipeline, the
one ``COPY``'s two, pipeline, ``COMMIT``).

Foreign keys per row are gone from entries and transfers (migration 0002, decision 0007); this
module proves the same facts once per batch: every account a batch touches is in its
balances-after (``projections.batch``), and the balances upsert joins ``accounts`` and must
write one row per staged balance, so a missing account fails the batch.

All SQL lives in the constants below; the schema (``ledger`` or a rebuild generation) is the
only identifier, composed with ``psycopg.sql``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.copy import Copy, Writer
from psycopg.types.json import JsonbBinaryDumper

from projections.batch import (
    REASON_FOLD_FAILED,
    BatchPlan,
    EventCannotApplyError,
    PlanContext,
    Quarantine,
    StoredHead,
    TransferRow,
    fold_transfers,
    head_problems,
)
from schemas.event_time import to_datetime, to_microseconds
from streamledger.errors import InfraError, InvariantViolationError, StreamLedgerError

LOG = logging.getLogger("streamledger.projection")

LIVE_SCHEMA = "ledger"
REBUILD_SCHEMA_PREFIX = "ledger_rebuild_"
RETIRED_SCHEMA_PREFIX = "ledger_retired_"
READER_ROLE = "streamledger_reader"


class PositionMovedError(StreamLedgerError):
    """The stored offsets are not where this process left them: re-seek, write nothing."""


class ProjectionDatabaseError(InfraError):
    """PostgreSQL failed or could not be reached while projecting or reading."""


SELECT_OFFSETS = sql.SQL(
    "SELECT partition, next_offset FROM {schema}.projection_offsets"
    " WHERE projection_name = %s AND topic = %s ORDER BY partition"
)
# One writer per (schema, projection) at a time, also before its offset rows exist; a rebuild
# takes the live projection's lock to swap generations between two batches.
LOCK_PROJECTION = "SELECT pg_advisory_xact_lock(hashtext(%s))"
SELECT_OFFSETS_FOR_UPDATE = sql.SQL(
    "SELECT partition, next_offset FROM {schema}.projection_offsets"
    " WHERE projection_name = %s AND topic = %s ORDER BY partition FOR UPDATE"
)
UPSERT_OFFSETS = sql.SQL(
    "INSERT INTO {schema}.projection_offsets (projection_name, topic, partition, next_offset)"
    " SELECT %s, %s, p, o FROM unnest(%s::integer[], %s::bigint[]) AS u(p, o)"
    " ON CONFLICT (projection_name, topic, partition) DO UPDATE"
    " SET next_offset = excluded.next_offset, updated_at = now()"
    " WHERE projection_offsets.next_offset < excluded.next_offset"
)
SELECT_TENANT_HEADS = sql.SQL(
    "SELECT tenant_id, last_sequence, last_hash, last_effective_at FROM {schema}.tenant_heads"
    " WHERE tenant_id = ANY(%s::text[]) ORDER BY tenant_id FOR UPDATE"
)
UPSERT_TENANT_HEADS = sql.SQL(
    "INSERT INTO {schema}.tenant_heads (tenant_id, last_sequence, last_hash, last_effective_at)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bytea[], %s::timestamptz[])"
    " ON CONFLICT (tenant_id) DO UPDATE SET last_sequence = excluded.last_sequence,"
    " last_hash = excluded.last_hash, last_effective_at = excluded.last_effective_at"
)
SELECT_QUARANTINED_FOR_UPDATE = sql.SQL(
    "SELECT tenant_id FROM {schema}.quarantined_tenants"
    " WHERE tenant_id = ANY(%s::text[]) ORDER BY tenant_id FOR UPDATE"
)
INSERT_QUARANTINES = sql.SQL(
    "INSERT INTO {schema}.quarantined_tenants (tenant_id, reason, detail, topic, partition,"
    " record_offset, sequence, projected_sequence, held_events)"
    " SELECT t, r, d, %s, p, o, s, h, n FROM unnest(%s::text[], %s::text[], %s::text[],"
    " %s::integer[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])"
    " AS u(t, r, d, p, o, s, h, n)"
)
COUNT_HELD_EVENTS = sql.SQL(
    "UPDATE {schema}.quarantined_tenants AS q SET held_events = q.held_events + u.n,"
    " last_seen_at = now() FROM unnest(%s::text[], %s::bigint[]) AS u(t, n) WHERE q.tenant_id = u.t"
)
SELECT_QUARANTINES = sql.SQL(
    "SELECT tenant_id, reason, detail, topic, partition, record_offset, sequence,"
    " projected_sequence, held_events, first_seen_at FROM {schema}.quarantined_tenants"
    " ORDER BY tenant_id"
)
SELECT_RELEASES = sql.SQL(
    "SELECT tenant_id, partition, before_offset FROM {schema}.tenant_releases"
    " ORDER BY tenant_id, partition"
)
# Session-local staging tables (one set per writer connection, emptied at every commit).
# Rows are COPY'd in, then merged into the schema's tables by one statement each.
CREATE_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS balances_staging (tenant_id text NOT NULL,"
    " account_id text NOT NULL, debits_posted bigint NOT NULL, credits_posted bigint NOT NULL,"
    " debits_pending bigint NOT NULL, credits_pending bigint NOT NULL,"
    " last_sequence bigint NOT NULL, updated_at timestamptz NOT NULL) ON COMMIT DELETE ROWS;"
    " CREATE TEMPORARY TABLE IF NOT EXISTS transfers_staging (tenant_id text NOT NULL,"
    " transfer_id text NOT NULL, status text NOT NULL, amount_posted bigint NOT NULL,"
    " amount_reversed bigint NOT NULL, last_sequence bigint NOT NULL,"
    " updated_at timestamptz NOT NULL) ON COMMIT DELETE ROWS"
)
STAGING_EXISTS = "SELECT to_regclass('pg_temp.rows_staging') IS NOT NULL"
ACCOUNT_COLUMNS = (
    "tenant_id, account_id, currency, asset_scale, debits_must_not_exceed_credits,"
    " credits_must_not_exceed_debits, overdraft_limit, opened_sequence, opened_at, metadata"
)
ACCOUNT_TYPES = (
    *("text", "text", "text", "int2", "bool", "bool", "int8", "int8", "timestamptz", "jsonb"),
)
COPY_ACCOUNTS = sql.SQL(
    "COPY {schema}.accounts (" + ACCOUNT_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
BALANCE_COLUMNS = (
    "tenant_id, account_id, debits_posted, credits_posted, debits_pending, credits_pending,"
    " last_sequence, updated_at"
)
BALANCE_TYPES = ("text", "text", "int8", "int8", "int8", "int8", "int8", "timestamptz")
# normal_side comes from the account (the foreign key insists they agree); the JOIN also makes
# a balance of an account that was never opened write nothing, which the row count catches.
COPY_BALANCES_STAGING = sql.SQL(
    "COPY pg_temp.balances_staging (" + BALANCE_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
# {source}: the staged balances, balances_staging or those of rows_staging (decision 0127).
UPSERT_BALANCES = (
    "INSERT INTO {schema}.balances (tenant_id, account_id, normal_side, debits_posted,"
    " credits_posted, debits_pending, credits_pending, last_sequence, updated_at)"
    " SELECT s.tenant_id, s.account_id, a.normal_side, s.debits_posted, s.credits_posted,"
    " s.debits_pending, s.credits_pending, s.last_sequence, s.updated_at"
    " FROM {source} AS s"
    " JOIN {schema}.accounts AS a USING (tenant_id, account_id)"
    " ON CONFLICT (tenant_id, account_id) DO UPDATE SET"
    " debits_posted = excluded.debits_posted, credits_posted = excluded.credits_posted,"
    " debits_pending = excluded.debits_pending, credits_pending = excluded.credits_pending,"
    " last_sequence = excluded.last_sequence, updated_at = excluded.updated_at"
    " WHERE balances.last_sequence < excluded.last_sequence"
)
UPSERT_BALANCES_STAGING = sql.SQL(UPSERT_BALANCES.replace("{source}", "pg_temp.balances_staging"))
ENTRY_COLUMNS = (
    "tenant_id, account_id, sequence, kind, side, transfer_id, event_type, currency, amount,"
    " debits_posted_after, credits_posted_after, debits_pending_after, credits_pending_after,"
    " effective_at, actor"
)
ENTRY_TYPES = (
    *("text", "text", "int8", "text", "text", "text", "text", "text"),
    *("int8", "int8", "int8", "int8", "int8", "timestamptz", "text"),
)
COPY_ENTRIES = sql.SQL("COPY {schema}.entries (" + ENTRY_COLUMNS + ") FROM STDIN (FORMAT BINARY)")
CHAIN_TYPES = ("text", "int8", "bytea", "timestamptz", "text")
METADATA_TYPES = ("text", "text", "text", "int8", "text")
COPY_TRANSFER_METADATA = sql.SQL(
    "COPY {schema}.transfer_metadata (tenant_id, key, value, created_sequence, transfer_id)"
    " FROM STDIN (FORMAT BINARY)"
)
COPY_TRANSACTION_METADATA = sql.SQL(
    "COPY {schema}.transaction_metadata (tenant_id, key, value, created_sequence, transaction_id)"
    " FROM STDIN (FORMAT BINARY)"
)
COPY_ACCOUNT_METADATA = sql.SQL(
    "COPY {schema}.account_metadata (tenant_id, key, value, opened_sequence, account_id)"
    " FROM STDIN (FORMAT BINARY)"
)
COPY_CHAIN = sql.SQL(
    "COPY {schema}.event_chain (tenant_id, sequence, hash, effective_at, actor)"
    " FROM STDIN (FORMAT BINARY)"
)  # the columns of CHAIN_COLUMNS
TRANSFER_COLUMNS = (
    "tenant_id, transfer_id, debit_account_id, credit_account_id, currency, amount, pending,"
    " status, amount_posted, amount_reversed, reverses, expires_at, created_sequence,"
    " last_sequence, created_at, updated_at, metadata"
)
TRANSFER_TYPES = (
    *("text", "text", "text", "text", "text", "int8", "bool", "text", "int8", "int8", "text"),
    *("timestamptz", "int8", "int8", "timestamptz", "timestamptz", "jsonb"),
)
SELECT_TRANSFERS_FOR_UPDATE = sql.SQL(
    "SELECT " + TRANSFER_COLUMNS + " FROM {schema}.transfers"
    " WHERE (tenant_id, transfer_id) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[])) FOR UPDATE"
)
COPY_TRANSFERS = sql.SQL(
    "COPY {schema}.transfers (" + TRANSFER_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
# What changes on a transfer after it was created: its status and amounts (a finalization or a
# reversal). Everything else is immutable and not staged.
TRANSFER_CHANGE_COLUMNS = (
    "tenant_id, transfer_id, status, amount_posted, amount_reversed, last_sequence, updated_at"
)
TRANSFER_CHANGE_TYPES = ("text", "text", "text", "int8", "int8", "int8", "timestamptz")
COPY_TRANSFERS_STAGING = sql.SQL(
    "COPY pg_temp.transfers_staging (" + TRANSFER_CHANGE_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
TRANSACTION_COLUMNS = (
    "tenant_id, transaction_id, posting_count, currencies, pending, status, reverses,"
    " expires_at, created_sequence, last_sequence, created_at, updated_at, metadata"
)
TRANSACTION_TYPES = (
    *("text", "text", "int4", "text[]", "bool", "text", "text", "timestamptz"),
    *("int8", "int8", "timestamptz", "timestamptz", "jsonb"),
)
COPY_TRANSACTIONS = sql.SQL(
    "COPY {schema}.transactions (" + TRANSACTION_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
# Balance monitors (migration 0010): deletes of monitors created before the batch first, then
# the batch's creations (an id used again after a delete is a new row).
MONITOR_COLUMNS = (
    "tenant_id, monitor_id, account_id, field, operator, threshold, metadata, created_sequence,"
    " created_at"
)
MONITOR_TYPES = ("text", "text", "text", "text", "text", "int8", "jsonb", "int8", "timestamptz")
COPY_MONITORS = sql.SQL(
    "COPY {schema}.monitors (" + MONITOR_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
DELETE_MONITORS = sql.SQL(
    "DELETE FROM {schema}.monitors AS m USING unnest(%s::text[], %s::text[])"
    " AS d(tenant_id, monitor_id) WHERE m.tenant_id = d.tenant_id AND m.monitor_id = d.monitor_id"
)
# A transaction created before the batch and ended by it: at most one per batch and transaction
# (its postings' transfer rows were checked by the fold), so array parameters, no staging.
UPDATE_TRANSACTIONS = sql.SQL(
    "UPDATE {schema}.transactions AS t SET status = u.status, last_sequence = u.last_sequence,"
    " updated_at = u.updated_at FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[],"
    " %s::timestamptz[]) AS u(tenant_id, transaction_id, status, last_sequence, updated_at)"
    " WHERE t.tenant_id = u.tenant_id AND t.transaction_id = u.transaction_id"
    " AND t.last_sequence < u.last_sequence"
)
UPDATE_TRANSFERS = sql.SQL(
    "UPDATE {schema}.transfers AS t SET status = s.status, amount_posted = s.amount_posted,"
    " amount_reversed = s.amount_reversed, last_sequence = s.last_sequence,"
    " updated_at = s.updated_at FROM pg_temp.transfers_staging AS s"
    " WHERE t.tenant_id = s.tenant_id AND t.transfer_id = s.transfer_id"
    " AND t.last_sequence < s.last_sequence"
)


# A small batch (decision 0127; at most ``staged_rows_max`` rows, a projection setting, 0 by
# default) sends its journal, chain, created transfers and balances in one ``COPY`` into one
# session-local table, then each into its table by one ``INSERT`` (the balances: the upsert) in
# the pipeline that ends the transaction: one ``COPY`` (two round trips) instead of four (eight).
# A row carries its table's columns (``kind``: 1 journal, 2 chain, 3 transfer, 4 balance) and
# NULL in the others. Larger batches ``COPY`` straight into each table: there the extra pass
# through the staging table would cost more server time than the round trips it saves.
CHAIN_COLUMNS = "tenant_id, sequence, hash, effective_at, actor"
STAGED_ENTRY, STAGED_CHAIN, STAGED_TRANSFER, STAGED_BALANCE = 1, 2, 3, 4
STAGED_PARTS = (  # (kind, table, its columns, their types, the prefix of their staged columns)
    (STAGED_ENTRY, "entries", ENTRY_COLUMNS, ENTRY_TYPES, "e_"),
    (STAGED_CHAIN, "event_chain", CHAIN_COLUMNS, CHAIN_TYPES, "c_"),
    (STAGED_TRANSFER, "transfers", TRANSFER_COLUMNS, TRANSFER_TYPES, "t_"),
    (STAGED_BALANCE, "balances", BALANCE_COLUMNS, BALANCE_TYPES, "b_"),
)


def staged_columns(columns: str, prefix: str) -> list[str]:
    return [prefix + column.strip() for column in columns.split(",")]


STAGED_TYPES = ("int2", *(kind for part in STAGED_PARTS for kind in part[3]))
CREATE_ROWS_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS rows_staging (kind int2 NOT NULL, "
    + ", ".join(
        f"{column} {kind}"
        for _, _, columns, types, prefix in STAGED_PARTS
        for column, kind in zip(staged_columns(columns, prefix), types, strict=True)
    )
    + ") ON COMMIT DELETE ROWS"
)
COPY_ROWS_STAGING = sql.SQL("COPY pg_temp.rows_staging FROM STDIN (FORMAT BINARY)")
INSERT_STAGED = {
    kind: sql.SQL(
        "INSERT INTO {schema}."
        + table
        + " ("
        + columns
        + ") SELECT "
        + ", ".join(staged_columns(columns, prefix))
        + " FROM pg_temp.rows_staging WHERE kind = "
        + str(kind)
    )
    for kind, table, columns, _, prefix in STAGED_PARTS
    if kind != STAGED_BALANCE
}
INSERT_STAGED[STAGED_BALANCE] = sql.SQL(
    UPSERT_BALANCES.replace(
        "{source}",
        "(SELECT "
        + ", ".join(
            f"{staged} AS {column}"
            for staged, column in zip(
                staged_columns(BALANCE_COLUMNS, "b_"),
                staged_columns(BALANCE_COLUMNS, ""),
                strict=True,
            )
        )
        + " FROM pg_temp.rows_staging WHERE kind = "
        + str(STAGED_BALANCE)
        + ")",
    )
)
STAGED_TABLES = {kind: table for kind, table, _, _, _ in STAGED_PARTS}


@dataclass(frozen=True, slots=True)
class BatchTarget:
    """Where a batch goes: the schema generation and the projection's offset rows."""

    schema: str
    projection_name: str
    topic: str

    @property
    def lock_key(self) -> str:
        return f"streamledger.projection:{self.schema}:{self.projection_name}"

    def compose(self, statement: sql.SQL) -> sql.Composed:
        return statement.format(schema=sql.Identifier(self.schema))


def read_offsets(conn: psycopg.Connection[Any], target: BatchTarget) -> dict[int, int]:
    """The stored next offset of every partition this projection has written."""
    with conn.transaction():
        rows = conn.execute(
            target.compose(SELECT_OFFSETS), (target.projection_name, target.topic)
        ).fetchall()
    return {int(partition): int(offset) for partition, offset in rows}


@dataclass(slots=True)
class WrittenBatch:
    """What a batch's transaction wrote: the plan as settled (quarantined tenants left out) and
    the tenants it quarantined."""

    plan: BatchPlan
    quarantines: dict[str, Quarantine] = field(default_factory=dict)


Replan = Callable[[Mapping[str, int]], BatchPlan]  # held-from indexes per tenant -> a new plan


@dataclass(frozen=True, slots=True)
class QuarantineState:
    """A schema generation's quarantined tenants and operator releases (read at assignment)."""

    tenants: frozenset[str]
    releases: dict[str, dict[int, int]]  # tenant -> partition -> before offset


class CollectedCopyData(Writer):
    """A ``COPY`` writer that keeps the binary data instead of sending it (psycopg's
    ``Writer`` interface, as its ``FileWriter``)."""

    def __init__(self) -> None:
        self.chunks: list[Buffer] = []

    def write(self, data: Buffer) -> None:
        self.chunks.append(data)


@dataclass(frozen=True, slots=True)
class FormattedRows:
    """The binary ``COPY`` data of a plan's journal and chain rows, formatted by the thread that
    planned it (decision 0111): the writer thread then sends bytes and holds the GIL far less
    while the next batch is prepared. Only for ``plan`` itself: a batch planned again in the
    write transaction (a new quarantine) has its rows formatted there."""

    plan: BatchPlan
    entries: bytes
    chain: bytes
    # When the batch changes no transfer it did not create: the fold (it reads nothing from
    # the table then) and the created rows' COPY data; else None, and the writer folds.
    transfers: dict[tuple[str, str], TransferRow] | None = None
    created_transfers: bytes = b""
    # A small batch: all of the above in one ``COPY`` into ``rows_staging`` (decision 0127),
    # ``entries``, ``chain`` and ``created_transfers`` then empty; the rows of each kind.
    staged: bytes = b""
    staged_rows: tuple[tuple[int, int], ...] = ()


def format_rows(
    cursor: psycopg.Cursor[Any], plan: BatchPlan, *, staged_rows_max: int
) -> FormattedRows:
    """``plan``'s ``entries`` and ``event_chain`` rows as binary ``COPY`` data, formatted with
    ``cursor``'s adapters (a cursor of the writer connection that never executes: no I/O), and
    its transfers folded and formatted too when none of them must be read from the table first
    (a record that cannot apply leaves that to the write transaction, which quarantines). At
    most ``staged_rows_max`` rows, the balances with them: one ``COPY`` into ``rows_staging``
    (never with ``staged_rows_max`` 0, the setting's "off")."""
    transfers: dict[tuple[str, str], TransferRow] | None = None
    created: list[TransferRow] = []
    if not plan.existing_transfer_keys():
        try:
            transfers = fold_transfers({}, plan.transfer_events)
        except EventCannotApplyError:
            transfers = None
        else:  # nothing existed before the batch: every transfer it touches, it creates
            created = list(transfers.values())
    parts = (
        (STAGED_ENTRY, plan.entries),
        (STAGED_CHAIN, plan.chain),
        (STAGED_TRANSFER, created),
        (STAGED_BALANCE, list(plan.balances.values())),
    )
    if staged_rows_max > 0 and sum(len(rows) for _, rows in parts) <= staged_rows_max:
        return FormattedRows(
            plan,
            b"",
            b"",
            transfers,
            staged=binary_copy_data(cursor, STAGED_TYPES, list(staged_rows(parts))),
            staged_rows=tuple((kind, len(rows)) for kind, rows in parts if rows),
        )
    return FormattedRows(
        plan,
        binary_copy_data(cursor, ENTRY_TYPES, plan.entries),
        binary_copy_data(cursor, CHAIN_TYPES, plan.chain),
        transfers,
        binary_copy_data(cursor, TRANSFER_TYPES, created),
    )


def staged_rows(
    parts: Iterable[tuple[int, Sequence[Sequence[object]]]],
) -> Iterator[tuple[object, ...]]:
    """The rows of ``rows_staging``: each row's kind, its columns where that kind's go, NULL in
    the others."""
    widths = {kind: len(types) for kind, _, _, types, _ in STAGED_PARTS}
    for kind, rows in parts:
        before = sum(width for other, width in widths.items() if other < kind)
        after = sum(width for other, width in widths.items() if other > kind)
        head, tail = (kind, *([None] * before)), (None,) * after
        for row in rows:
            yield (*head, *row, *tail)


def binary_copy_data(
    cursor: psycopg.Cursor[Any], types: Sequence[str], rows: Sequence[Sequence[object]]
) -> bytes:
    """The bytes ``copy_rows`` would send for ``rows``: signature, rows, trailer."""
    if not rows:
        return b""
    collected = CollectedCopyData()
    with Copy(cursor, binary=True, writer=collected) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    return b"".join(collected.chunks)


def write_batch(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    *,
    consumed_from: Mapping[int, int],
    next_offsets: Mapping[int, int],
    replan: Replan,
    formatted: FormattedRows | None = None,
) -> WrittenBatch:
    """Write one batch and its next offsets atomically (see the module docstring).

    ``consumed_from`` is, per partition of the batch, the offset the sink positioned itself at
    (what the table must still hold); ``next_offsets`` is the offset after the batch's last
    record. ``replan(held)`` plans the same records again holding back each tenant in ``held``
    from that batch index on. ``formatted``: ``plan``'s rows already formatted for ``COPY``.

    Round trips (decision 0127): ``BEGIN`` and the locking reads go in one pipeline, then each
    ``COPY`` (two: its start, its end), then the merges, quarantines and offsets in a second
    pipeline, then ``COMMIT``. The connection is in autocommit, so the transaction is begun and
    ended by hand: ``conn.transaction()`` would send its ``BEGIN`` on its own.
    """
    try:
        tenants = sorted(plan.tenants)
        with conn.pipeline():
            conn.execute(BEGIN)
            conn.execute(LOCK_PROJECTION, (target.lock_key,))
            offsets = conn.execute(
                target.compose(SELECT_OFFSETS_FOR_UPDATE), (target.projection_name, target.topic)
            )
            quarantined = conn.execute(target.compose(SELECT_QUARANTINED_FOR_UPDATE), (tenants,))
            stored_heads = conn.execute(target.compose(SELECT_TENANT_HEADS), (tenants,))
        check_positions(target, offsets.fetchall(), consumed_from)
        held = {str(tenant): 0 for (tenant,) in quarantined.fetchall()}
        heads = tenant_heads(stored_heads.fetchall())
        written, transfers = settle_plan(
            conn, target, plan, replan, held=held, heads=heads, formatted=formatted
        )
        if formatted is not None and formatted.plan is not written.plan:
            formatted = None  # planned again: those bytes are not this plan's rows
        expected = write_rows(
            conn, target, written.plan, transfers, formatted=formatted, next_offsets=next_offsets
        )
        with conn.pipeline():
            write_quarantines(conn, target, written, heads)
            merged = [
                (table, conn.execute(*statement), rows) for table, statement, rows in expected
            ]
        for table, cursor, rows in merged:
            if rows is not None:
                expect_rows(table, cursor.rowcount, rows)
        conn.commit()
    except BaseException:
        rollback(conn)
        raise
    return written


BEGIN = "BEGIN"


def rollback(conn: psycopg.Connection[Any]) -> None:
    """End a failed batch's transaction; a connection that cannot (it broke) leaves the error
    that broke it to the caller, as ``conn.transaction()`` does."""
    try:
        conn.rollback()
    except psycopg.Error as exc:
        LOG.warning("rollback of a failed batch failed: %s", exc)


def check_positions(
    target: BatchTarget, rows: Sequence[tuple[Any, ...]], consumed_from: Mapping[int, int]
) -> None:
    """``rows``: this projection's ``projection_offsets``, read locked."""
    stored = {int(partition): int(offset) for partition, offset in rows}
    for partition, offset in consumed_from.items():
        if stored.get(partition, 0) != offset:
            raise PositionMovedError(
                f"{target.schema}.projection_offsets holds {stored.get(partition, 0)} for "
                f"{target.topic}[{partition}], this process consumed from {offset}"
            )


def settle_plan(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    replan: Replan,
    *,
    held: dict[str, int],
    heads: Mapping[str, StoredHead],
    formatted: FormattedRows | None = None,
) -> tuple[WrittenBatch, dict[tuple[str, str], TransferRow]]:
    """Hold back the tenants quarantined before (``held``: the batch's tenants found in
    ``quarantined_tenants``, read locked, each from index 0); quarantine those whose first
    record does not continue the stored head (``heads``, read locked) or cannot apply; plan
    again until nothing new is found. Each round quarantines at least one more tenant of the
    batch, so at most one round per tenant."""
    tenants = plan.tenants
    found: dict[str, Quarantine] = {}
    for _ in range(len(tenants) + 1):
        planned_held = {t: i for t, i in plan.context.held.items() if t in plan.tenants}
        if planned_held != held:
            plan = replan(held)
        new = head_problems(plan, heads)
        if not new:
            try:
                transfers = final_transfers(conn, target, plan, formatted)
            except EventCannotApplyError as exc:
                new = {exc.tenant_id: fold_quarantine(plan, exc)}
            else:
                return WrittenBatch(plan, {**plan.quarantines, **found}), transfers
        found.update(new)
        held.update({tenant: quarantine.index for tenant, quarantine in new.items()})
    raise InvariantViolationError(
        f"projection {target.schema}: quarantining did not settle in {len(tenants) + 1} rounds"
    )


def fold_quarantine(plan: BatchPlan, exc: EventCannotApplyError) -> Quarantine:
    """The quarantine of the tenant whose transfer event ``exc`` names (found by the fold)."""
    index = plan.transfer_indexes[exc.position]
    partition, offset = plan.transfer_locations[exc.position]
    record = plan.transfer_events[exc.position]
    return Quarantine(
        exc.tenant_id, REASON_FOLD_FAILED, str(exc), index, partition, offset, record["sequence"]
    )


def tenant_heads(rows: Sequence[tuple[Any, ...]]) -> dict[str, StoredHead]:
    """The stored heads of ``SELECT_TENANT_HEADS``'s rows."""
    return {
        str(tenant): StoredHead(int(sequence), bytes(link), to_microseconds(at))
        for tenant, sequence, link, at in rows
    }


def write_quarantines(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    written: WrittenBatch,
    heads: Mapping[str, StoredHead],
) -> None:
    """Record the batch's new quarantines and count the records held back for the others."""
    plan, new = written.plan, written.quarantines
    if new:
        rows = [new[tenant] for tenant in sorted(new)]
        conn.execute(
            target.compose(INSERT_QUARANTINES),
            (
                target.topic,
                [q.tenant_id for q in rows],
                [q.reason for q in rows],
                [q.detail for q in rows],
                [q.partition for q in rows],
                [q.offset for q in rows],
                [q.sequence for q in rows],
                [projected_sequence(plan, heads, q.tenant_id) for q in rows],
                [plan.held_events.get(q.tenant_id, 0) for q in rows],
            ),
        )
    older = sorted(tenant for tenant in plan.held_events if tenant not in new)
    if older:
        conn.execute(
            target.compose(COUNT_HELD_EVENTS),
            (older, [plan.held_events[tenant] for tenant in older]),
        )


def projected_sequence(plan: BatchPlan, heads: Mapping[str, StoredHead], tenant_id: str) -> int:
    """The last sequence of ``tenant_id`` this batch leaves projected."""
    run = plan.tenant_runs.get(tenant_id)
    if run is not None:
        return run.last_sequence
    head = heads.get(tenant_id)
    return 0 if head is None else head.sequence


def read_quarantine_state(conn: psycopg.Connection[Any], target: BatchTarget) -> QuarantineState:
    """The generation's quarantined tenants and releases (the sink plans batches against them;
    the write transaction checks again)."""
    with conn.transaction():
        quarantined = conn.execute(target.compose(SELECT_QUARANTINES)).fetchall()
        released = conn.execute(target.compose(SELECT_RELEASES)).fetchall()
    releases: dict[str, dict[int, int]] = {}
    for tenant, partition, before_offset in released:
        releases.setdefault(str(tenant), {})[int(partition)] = int(before_offset)
    return QuarantineState(frozenset(str(row[0]) for row in quarantined), releases)


def quarantine_context(state: QuarantineState, partitions: int | None) -> PlanContext:
    return PlanContext(
        partitions=partitions,
        held={tenant: 0 for tenant in state.tenants},
        releases=state.releases,
    )


def final_transfers(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    formatted: FormattedRows | None = None,
) -> dict[tuple[str, str], TransferRow]:
    if formatted is not None and formatted.plan is plan and formatted.transfers is not None:
        return formatted.transfers  # folded while the batch was prepared: nothing to read
    keys = sorted(plan.existing_transfer_keys())
    known: dict[tuple[str, str], TransferRow] = {}
    if keys:
        rows = conn.execute(
            target.compose(SELECT_TRANSFERS_FOR_UPDATE),
            ([tenant for tenant, _ in keys], [transfer for _, transfer in keys]),
        ).fetchall()
        for row in rows:
            transfer = TransferRow(*row)
            known[transfer.key] = transfer
    return fold_transfers(known, plan.transfer_events)


class MetadataJsonbDumper(JsonbBinaryDumper):
    """psycopg's binary ``jsonb`` dumper, with the empty metadata most events carry written
    without ``json.dumps`` (~4 µs a call on this machine: one per account and transfer row;
    bench/README.md, "Projection write path"). The bytes are the same: version 1, then ``{}``."""

    def dump(self, obj: Any) -> Buffer | None:
        if type(obj) is dict and not obj:
            return EMPTY_JSONB
        return super().dump(obj)


EMPTY_JSONB = b"\x01{}"  # jsonb's binary format: a version byte (1), then the JSON text


def prepare_session(conn: psycopg.Connection[Any]) -> None:
    """Create this connection's staging tables (once per session; idempotent), and have its
    ``COPY`` of ``jsonb`` columns use ``MetadataJsonbDumper`` (by oid only: ``set_types``)."""
    conn.adapters.register_dumper(None, MetadataJsonbDumper)
    row = conn.execute(STAGING_EXISTS).fetchone()
    if row is None or not row[0]:
        with conn.transaction():
            conn.execute(CREATE_STAGING)
            conn.execute(CREATE_ROWS_STAGING)


Merge = tuple[str, tuple[Any, ...], int | None]  # table, (statement, parameters), rows to write


def write_rows(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    transfers: Mapping[tuple[str, str], TransferRow],
    *,
    formatted: FormattedRows | None,
    next_offsets: Mapping[int, int],
) -> list[Merge]:
    """``COPY`` the batch's rows; return the statements that merge what was staged, move the
    tenant heads and store the next offsets, with the rows each must write (``None``: not
    counted). The caller runs them in one pipeline after the last ``COPY`` (decision 0127)."""
    merges: list[Merge] = []
    # Accounts before balances: the balances upsert joins accounts for their normal side.
    if plan.accounts:
        copy_rows(conn, target.compose(COPY_ACCOUNTS), ACCOUNT_TYPES, plan.accounts)
    if plan.balances and not (formatted is not None and formatted.staged):
        balances = plan.balances.values()
        copy_rows(conn, COPY_BALANCES_STAGING, BALANCE_TYPES, balances)
        upsert = target.compose(UPSERT_BALANCES_STAGING)
        merges.append(("balances", (upsert,), len(plan.balances)))
    merges += write_transfers(conn, target, plan, transfers, formatted)
    write_transactions(conn, target, plan)
    write_monitors(conn, target, plan)
    if formatted is not None:
        copy_data(conn, target.compose(COPY_ENTRIES), formatted.entries)
        copy_data(conn, target.compose(COPY_CHAIN), formatted.chain)
    else:
        if plan.entries:
            copy_rows(conn, target.compose(COPY_ENTRIES), ENTRY_TYPES, plan.entries)
        if plan.chain:
            copy_rows(conn, target.compose(COPY_CHAIN), CHAIN_TYPES, plan.chain)
    if plan.account_metadata:
        statement = target.compose(COPY_ACCOUNT_METADATA)
        copy_rows(conn, statement, METADATA_TYPES, plan.account_metadata)
    if plan.transfer_metadata:
        statement = target.compose(COPY_TRANSFER_METADATA)
        copy_rows(conn, statement, METADATA_TYPES, plan.transfer_metadata)
    if plan.transaction_metadata:
        statement = target.compose(COPY_TRANSACTION_METADATA)
        copy_rows(conn, statement, METADATA_TYPES, plan.transaction_metadata)
    runs = [plan.tenant_runs[tenant] for tenant in sorted(plan.tenant_runs)]
    heads = (
        [run.tenant_id for run in runs],
        [run.last_sequence for run in runs],
        [run.last_hash for run in runs],
        [to_datetime(run.last_effective_at_us) for run in runs],
    )
    merges.append(("tenant_heads", (target.compose(UPSERT_TENANT_HEADS), heads), None))
    partitions = sorted(next_offsets)
    offsets = (
        target.projection_name,
        target.topic,
        partitions,
        [next_offsets[partition] for partition in partitions],
    )
    merges.append(("projection_offsets", (target.compose(UPSERT_OFFSETS), offsets), None))
    return merges


def write_transfers(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    transfers: Mapping[tuple[str, str], TransferRow],
    formatted: FormattedRows | None,
) -> list[Merge]:
    """``COPY`` the small batch's staged rows or the transfers it creates; stage the transfers
    it changes. Return the statements that move them into their tables."""
    merges: list[Merge] = []
    if formatted is not None and formatted.staged:
        copy_data(conn, COPY_ROWS_STAGING, formatted.staged)
        for kind, rows in formatted.staged_rows:
            merges.append((STAGED_TABLES[kind], (target.compose(INSERT_STAGED[kind]),), rows))
    created = [row for key, row in transfers.items() if key in plan.created_transfers]
    changed = [row for key, row in transfers.items() if key not in plan.created_transfers]
    if formatted is not None and formatted.transfers is not None:
        copy_data(conn, target.compose(COPY_TRANSFERS), formatted.created_transfers)
    elif created:
        copy_rows(conn, target.compose(COPY_TRANSFERS), TRANSFER_TYPES, created)
    if changed:
        copy_rows(conn, COPY_TRANSFERS_STAGING, TRANSFER_CHANGE_TYPES, map(change_tuple, changed))
        merges.append(("transfers", (target.compose(UPDATE_TRANSFERS),), len(changed)))
    return merges


def write_transactions(conn: psycopg.Connection[Any], target: BatchTarget, plan: BatchPlan) -> None:
    """The ``transactions`` rows the batch creates (in creation order: a reversal after the
    transaction it reverses) and the ends of those created before it."""
    if plan.transactions:
        rows = plan.transactions.values()
        copy_rows(conn, target.compose(COPY_TRANSACTIONS), TRANSACTION_TYPES, rows)
    if plan.transaction_changes:
        changes = list(plan.transaction_changes.values())
        cursor = conn.execute(
            target.compose(UPDATE_TRANSACTIONS),
            tuple(list(column) for column in zip(*changes, strict=True)),
        )
        expect_rows("transactions", cursor.rowcount, len(changes))


def write_monitors(conn: psycopg.Connection[Any], target: BatchTarget, plan: BatchPlan) -> None:
    """The monitors the batch deletes (created before it), then the ones it creates."""
    if plan.deleted_monitors:
        keys = sorted(plan.deleted_monitors)
        cursor = conn.execute(
            target.compose(DELETE_MONITORS),
            ([tenant for tenant, _ in keys], [monitor for _, monitor in keys]),
        )
        expect_rows("monitors", cursor.rowcount, len(keys))
    if plan.monitors:
        copy_rows(conn, target.compose(COPY_MONITORS), MONITOR_TYPES, plan.monitors.values())


def copy_rows(
    conn: psycopg.Connection[Any],
    statement: sql.SQL | sql.Composed,
    types: Sequence[str],
    rows: Iterable[Sequence[object]],
) -> None:
    """Binary ``COPY`` of ``rows`` (tuples in the statement's column order)."""
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def copy_data(
    conn: psycopg.Connection[Any], statement: sql.SQL | sql.Composed, data: bytes
) -> None:
    """Binary ``COPY`` of data ``binary_copy_data`` formatted (nothing when it holds no row)."""
    if data:
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(data)


def change_tuple(row: TransferRow) -> tuple[object, ...]:
    return (
        row.tenant_id,
        row.transfer_id,
        row.status,
        row.amount_posted,
        row.amount_reversed,
        row.last_sequence,
        row.updated_at,
    )


def expect_rows(table: str, written: int, expected: int) -> None:
    """A merge that skipped a row met a newer sequence already there, or (balances) an account
    that was never opened: corrupt state either way."""
    if written != expected:
        raise InvariantViolationError(
            f"{table}: wrote {written} of {expected} rows; the table already holds newer "
            "sequences or lacks the accounts they belong to"
        )
