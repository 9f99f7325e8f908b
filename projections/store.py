"""The projection's writes to PostgreSQL: one batch, one transaction, offsets included.

``write_batch`` is the whole write side. Inside one ``with conn.transaction():`` it

1. locks this projection's rows of ``projection_offsets`` and checks they still hold the
   positions the sink consumed from (another instance, or a rebuild swapped in, moved them:
   ``PositionMovedError``, the sink re-seeks; nothing is written);
2. locks the batch's tenants in ``tenant_heads`` and checks each tenant's first sequence is
   exactly the stored last sequence + 1 (a gap or a repeat is ``InvariantViolationError``);
3. reads the transfers the batch finalizes or reverses, folds their new state (pure);
4. writes with binary ``COPY`` only — no round trip per row, no per-row parameter arrays:
   accounts, the transfers the batch creates and the journal straight into their tables (a row
   that already exists is a ``UniqueViolation``: a repeat, never overwritten); balances and the
   transfers it changes into session-local staging tables, then one ``INSERT … ON CONFLICT`` /
   ``UPDATE … FROM`` each, whose row count must equal the staged rows;
5. stores the next offset of every partition in the batch.

Foreign keys per row are gone from entries and transfers (migration 0002, decision 0007); this
module proves the same facts once per batch: every account a batch touches is in its
balances-after (``projections.batch``), and the balances upsert joins ``accounts`` and must
write one row per staged balance, so a missing account fails the batch.

All SQL lives in the constants below; the schema (``ledger`` or a rebuild generation) is the
only identifier, composed with ``psycopg.sql``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from projections.batch import BatchPlan, TransferRow, fold_transfers, to_datetime
from schemas.model import GENESIS_HASH
from streamledger.errors import InfraError, InvariantViolationError, StreamLedgerError

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
STAGING_EXISTS = "SELECT to_regclass('pg_temp.transfers_staging') IS NOT NULL"
ACCOUNT_COLUMNS = (
    "tenant_id, account_id, currency, asset_scale, debits_must_not_exceed_credits,"
    " credits_must_not_exceed_debits, overdraft_limit, opened_sequence, opened_at"
)
ACCOUNT_TYPES = ("text", "text", "text", "int2", "bool", "bool", "int8", "int8", "timestamptz")
COPY_ACCOUNTS = sql.SQL(
    "COPY {schema}.accounts (" + ACCOUNT_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
BALANCE_COLUMNS = (
    "tenant_id, account_id, debits_posted, credits_posted, debits_pending, credits_pending,"
    " last_sequence, updated_at"
)
BALANCE_TYPES = ("text", "text", "int8", "int8", "int8", "int8", "int8", "timestamptz")
COPY_BALANCES_STAGING = sql.SQL(
    "COPY pg_temp.balances_staging (" + BALANCE_COLUMNS + ") FROM STDIN (FORMAT BINARY)"
)
# normal_side comes from the account (the foreign key insists they agree); the JOIN also makes
# a balance of an account that was never opened write nothing, which the row count catches.
UPSERT_BALANCES = sql.SQL(
    "INSERT INTO {schema}.balances (tenant_id, account_id, normal_side, debits_posted,"
    " credits_posted, debits_pending, credits_pending, last_sequence, updated_at)"
    " SELECT s.tenant_id, s.account_id, a.normal_side, s.debits_posted, s.credits_posted,"
    " s.debits_pending, s.credits_pending, s.last_sequence, s.updated_at"
    " FROM pg_temp.balances_staging AS s"
    " JOIN {schema}.accounts AS a USING (tenant_id, account_id)"
    " ON CONFLICT (tenant_id, account_id) DO UPDATE SET"
    " debits_posted = excluded.debits_posted, credits_posted = excluded.credits_posted,"
    " debits_pending = excluded.debits_pending, credits_pending = excluded.credits_pending,"
    " last_sequence = excluded.last_sequence, updated_at = excluded.updated_at"
    " WHERE balances.last_sequence < excluded.last_sequence"
)
ENTRY_COLUMNS = (
    "tenant_id, account_id, sequence, kind, side, transfer_id, event_type, currency, amount,"
    " debits_posted_after, credits_posted_after, debits_pending_after, credits_pending_after,"
    " effective_at"
)
ENTRY_TYPES = (
    *("text", "text", "int8", "text", "text", "text", "text", "text"),
    *("int8", "int8", "int8", "int8", "int8", "timestamptz"),
)
COPY_ENTRIES = sql.SQL("COPY {schema}.entries (" + ENTRY_COLUMNS + ") FROM STDIN (FORMAT BINARY)")
TRANSFER_COLUMNS = (
    "tenant_id, transfer_id, debit_account_id, credit_account_id, currency, amount, pending,"
    " status, amount_posted, amount_reversed, reverses, expires_at, created_sequence,"
    " last_sequence, created_at, updated_at"
)
TRANSFER_TYPES = (
    *("text", "text", "text", "text", "text", "int8", "bool", "text", "int8", "int8", "text"),
    *("timestamptz", "int8", "int8", "timestamptz", "timestamptz"),
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
UPDATE_TRANSFERS = sql.SQL(
    "UPDATE {schema}.transfers AS t SET status = s.status, amount_posted = s.amount_posted,"
    " amount_reversed = s.amount_reversed, last_sequence = s.last_sequence,"
    " updated_at = s.updated_at FROM pg_temp.transfers_staging AS s"
    " WHERE t.tenant_id = s.tenant_id AND t.transfer_id = s.transfer_id"
    " AND t.last_sequence < s.last_sequence"
)


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


def write_batch(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    *,
    consumed_from: Mapping[int, int],
    next_offsets: Mapping[int, int],
) -> None:
    """Write one batch and its next offsets atomically (see the module docstring).

    ``consumed_from`` is, per partition of the batch, the offset the sink positioned itself at
    (what the table must still hold); ``next_offsets`` is the offset after the batch's last record.
    """
    with conn.transaction():
        check_positions(conn, target, consumed_from)
        check_tenant_heads(conn, target, plan)
        transfers = final_transfers(conn, target, plan)
        write_rows(conn, target, plan, transfers)
        partitions = sorted(next_offsets)
        conn.execute(
            target.compose(UPSERT_OFFSETS),
            (
                target.projection_name,
                target.topic,
                partitions,
                [next_offsets[partition] for partition in partitions],
            ),
        )


def check_positions(
    conn: psycopg.Connection[Any], target: BatchTarget, consumed_from: Mapping[int, int]
) -> None:
    conn.execute(LOCK_PROJECTION, (target.lock_key,))
    rows = conn.execute(
        target.compose(SELECT_OFFSETS_FOR_UPDATE), (target.projection_name, target.topic)
    ).fetchall()
    stored = {int(partition): int(offset) for partition, offset in rows}
    for partition, offset in consumed_from.items():
        if stored.get(partition, 0) != offset:
            raise PositionMovedError(
                f"{target.schema}.projection_offsets holds {stored.get(partition, 0)} for "
                f"{target.topic}[{partition}], this process consumed from {offset}"
            )


def check_tenant_heads(conn: psycopg.Connection[Any], target: BatchTarget, plan: BatchPlan) -> None:
    tenants = sorted(plan.tenant_runs)
    rows = conn.execute(target.compose(SELECT_TENANT_HEADS), (tenants,)).fetchall()
    stored = {str(tenant): (int(sequence), bytes(link), at) for tenant, sequence, link, at in rows}
    for tenant_id in tenants:
        run = plan.tenant_runs[tenant_id]
        last, last_hash, last_at = stored.get(tenant_id, (0, GENESIS_HASH, None))
        if run.first_sequence != last + 1:
            kind = "repeat" if run.first_sequence <= last else "gap"
            raise InvariantViolationError(
                f"projection {target.schema}: tenant {tenant_id!r} continues at sequence "
                f"{run.first_sequence} but the table's last sequence is {last} ({kind})"
            )
        if run.first_prev_hash != last_hash:
            raise InvariantViolationError(
                f"projection {target.schema}: tenant {tenant_id!r} sequence {run.first_sequence} "
                f"does not chain onto the stored hash of sequence {last}"
            )
        if last_at is not None and to_datetime(run.first_effective_at_us) < last_at:
            raise InvariantViolationError(
                f"projection {target.schema}: tenant {tenant_id!r} sequence "
                f"{run.first_sequence} is effective before sequence {last} ({last_at})"
            )


def final_transfers(
    conn: psycopg.Connection[Any], target: BatchTarget, plan: BatchPlan
) -> dict[tuple[str, str], TransferRow]:
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


def prepare_session(conn: psycopg.Connection[Any]) -> None:
    """Create this connection's staging tables (once per session; idempotent)."""
    row = conn.execute(STAGING_EXISTS).fetchone()
    if row is None or not row[0]:
        with conn.transaction():
            conn.execute(CREATE_STAGING)


def write_rows(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    transfers: Mapping[tuple[str, str], TransferRow],
) -> None:
    # Accounts before balances: the balances upsert joins accounts for their normal side.
    if plan.accounts:
        copy_rows(conn, target.compose(COPY_ACCOUNTS), ACCOUNT_TYPES, plan.accounts)
    if plan.balances:
        balances = plan.balances.values()
        copy_rows(conn, COPY_BALANCES_STAGING, BALANCE_TYPES, balances)
        cursor = conn.execute(target.compose(UPSERT_BALANCES))
        expect_rows("balances", cursor.rowcount, len(plan.balances))
    created = [row for key, row in transfers.items() if key in plan.created_transfers]
    changed = [row for key, row in transfers.items() if key not in plan.created_transfers]
    if created:
        copy_rows(conn, target.compose(COPY_TRANSFERS), TRANSFER_TYPES, created)
    if changed:
        copy_rows(conn, COPY_TRANSFERS_STAGING, TRANSFER_CHANGE_TYPES, map(change_tuple, changed))
        cursor = conn.execute(target.compose(UPDATE_TRANSFERS))
        expect_rows("transfers", cursor.rowcount, len(changed))
    if plan.entries:
        copy_rows(conn, target.compose(COPY_ENTRIES), ENTRY_TYPES, plan.entries)
    runs = [plan.tenant_runs[tenant] for tenant in sorted(plan.tenant_runs)]
    conn.execute(
        target.compose(UPSERT_TENANT_HEADS),
        (
            [run.tenant_id for run in runs],
            [run.last_sequence for run in runs],
            [run.last_hash for run in runs],
            [to_datetime(run.last_effective_at_us) for run in runs],
        ),
    )


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
