"""The projection's writes to PostgreSQL: one batch, one transaction, offsets included.

``write_batch`` is the whole write side. Inside one ``with conn.transaction():`` it

1. locks this projection's rows of ``projection_offsets`` and checks they still hold the
   positions the sink consumed from (another instance, or a rebuild swapped in, moved them:
   ``PositionMovedError``, the sink re-seeks; nothing is written);
2. locks the batch's tenants in ``tenant_heads`` and checks each tenant's first sequence is
   exactly the stored last sequence + 1 (a gap or a repeat is ``InvariantViolationError``);
3. reads the transfers the batch finalizes or reverses, folds their new state (pure);
4. writes entries with ``COPY``, accounts / balances / transfers / tenant heads with one
   ``unnest`` statement each — no round trip per row;
5. stores the next offset of every partition in the batch.

All SQL lives in the constants below; the schema (``ledger`` or a rebuild generation) is the
only identifier, composed with ``psycopg.sql``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
INSERT_ACCOUNTS = sql.SQL(
    "INSERT INTO {schema}.accounts (tenant_id, account_id, currency, asset_scale,"
    " debits_must_not_exceed_credits, credits_must_not_exceed_debits, overdraft_limit,"
    " opened_sequence, opened_at)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::smallint[], %s::boolean[],"
    " %s::boolean[], %s::bigint[], %s::bigint[], %s::timestamptz[])"
)
# normal_side comes from the account (the foreign key insists they agree).
UPSERT_BALANCES = sql.SQL(
    "INSERT INTO {schema}.balances (tenant_id, account_id, normal_side, debits_posted,"
    " credits_posted, debits_pending, credits_pending, last_sequence, updated_at)"
    " SELECT u.tenant_id, u.account_id, a.normal_side, u.debits_posted, u.credits_posted,"
    " u.debits_pending, u.credits_pending, u.last_sequence, u.updated_at"
    " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],"
    " %s::bigint[], %s::bigint[], %s::timestamptz[]) AS u(tenant_id, account_id, debits_posted,"
    " credits_posted, debits_pending, credits_pending, last_sequence, updated_at)"
    " JOIN {schema}.accounts AS a USING (tenant_id, account_id)"
    " ON CONFLICT (tenant_id, account_id) DO UPDATE SET"
    " debits_posted = excluded.debits_posted, credits_posted = excluded.credits_posted,"
    " debits_pending = excluded.debits_pending, credits_pending = excluded.credits_pending,"
    " last_sequence = excluded.last_sequence, updated_at = excluded.updated_at"
    " WHERE balances.last_sequence < excluded.last_sequence"
)
COPY_ENTRIES = sql.SQL(
    "COPY {schema}.entries (tenant_id, account_id, sequence, kind, side, transfer_id,"
    " event_type, currency, amount, debits_posted_after, credits_posted_after,"
    " debits_pending_after, credits_pending_after, effective_at) FROM STDIN"
)
TRANSFER_COLUMNS = (
    "tenant_id, transfer_id, debit_account_id, credit_account_id, currency, amount, pending,"
    " status, amount_posted, amount_reversed, reverses, expires_at, created_sequence,"
    " last_sequence, created_at, updated_at"
)
SELECT_TRANSFERS_FOR_UPDATE = sql.SQL(
    "SELECT " + TRANSFER_COLUMNS + " FROM {schema}.transfers"
    " WHERE (tenant_id, transfer_id) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[])) FOR UPDATE"
)
UPSERT_TRANSFERS = sql.SQL(
    "INSERT INTO {schema}.transfers (" + TRANSFER_COLUMNS + ")"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
    " %s::bigint[], %s::boolean[], %s::text[], %s::bigint[], %s::bigint[], %s::text[],"
    " %s::timestamptz[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])"
    " ON CONFLICT (tenant_id, transfer_id) DO UPDATE SET status = excluded.status,"
    " amount_posted = excluded.amount_posted, amount_reversed = excluded.amount_reversed,"
    " last_sequence = excluded.last_sequence, updated_at = excluded.updated_at"
    " WHERE transfers.last_sequence < excluded.last_sequence"
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


def write_rows(
    conn: psycopg.Connection[Any],
    target: BatchTarget,
    plan: BatchPlan,
    transfers: Mapping[tuple[str, str], TransferRow],
) -> None:
    # Order follows the foreign keys: accounts, balances, transfers, then the journal.
    if plan.accounts:
        conn.execute(target.compose(INSERT_ACCOUNTS), columns(plan.accounts, 9))
    if plan.balances:
        balances = list(plan.balances.values())
        cursor = conn.execute(target.compose(UPSERT_BALANCES), columns(balances, 8))
        expect_rows("balances", cursor.rowcount, len(balances))
    if transfers:
        rows = [transfer.as_tuple() for transfer in transfers.values()]
        cursor = conn.execute(target.compose(UPSERT_TRANSFERS), columns(rows, 16))
        expect_rows("transfers", cursor.rowcount, len(rows))
    if plan.entries:
        with conn.cursor() as cursor, cursor.copy(target.compose(COPY_ENTRIES)) as copy:
            for entry in plan.entries:
                copy.write_row(entry)
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


def expect_rows(table: str, written: int, expected: int) -> None:
    """An upsert that skipped a row met a newer sequence already there: corrupt state."""
    if written != expected:
        raise InvariantViolationError(
            f"{table}: wrote {written} of {expected} rows; the table already holds newer sequences"
        )


def columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """Rows to one list per column: the parameters of an ``unnest`` statement."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
