"""Reads of the projection: current balance, balance as of a time, history, a transfer.

Every read runs as the tenant-scoped reader role, inside one transaction that first sets
``streamledger.tenant_id`` (``set_config(..., is_local => true)``, i.e. ``SET LOCAL``), so the
row-level security policies of the view tables apply: a session can only ever see its tenant's
rows, whatever the query. Readers name the live generation ``ledger.<table>``; a rebuild swaps a
new generation in under that name atomically, so reads never stop.

- current balance: the ``balances`` row (primary key lookup);
- balance as of time T: the newest journal row of the account with ``effective_at <= T``,
  ordered by (effective time, sequence, kind) — one backward index scan, no fold. An
  account opened at or before T without any posting yet has zero balances; before it was opened
  it has none (``None``);
- history: journal rows newest first, before a cursor (keyset pagination on the primary key);
- a transfer by id;
- a multi-leg transaction by id, with its postings (the transfers ``{transaction_id}/{i}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger.monitors import evaluate, is_credit_normal, parse_condition
from projections.batch import TransferRow
from projections.migrations import describe_dsn, first_line
from projections.settings import ProjectionSettings
from projections.store import ProjectionDatabaseError
from schemas.event_time import to_datetime, to_microseconds
from schemas.model import AccountBalance
from streamledger.errors import InvariantViolationError, StreamLedgerError
from streamledger.settings import Settings

READER_ROLE = "streamledger_reader"
READER_PASSWORD = "streamledger_reader"  # noqa: S105  the local stack's reader (infra/postgres_server.py)
HISTORY_LIMIT_MAX = 1_000
# A command-line read gives up on an unreachable PostgreSQL after this, naming the address.
CONNECT_TIMEOUT_S = 5
DATABASE_SETTING_HINT = (
    "setting database_url: STREAMLEDGER_DATABASE_URL / --database-url, or --reader-url"
)
POOL_TIMEOUT_S = 10.0  # waiting for a free connection once the pool is open

SET_TENANT = "SELECT set_config('streamledger.tenant_id', %s, true)"
BALANCE_COLUMNS = (
    "a.account_id, a.currency, a.normal_side, b.debits_posted, b.credits_posted,"
    " b.debits_pending, b.credits_pending, b.available, b.last_sequence, b.updated_at"
)
SELECT_BALANCE = (
    "SELECT " + BALANCE_COLUMNS + " FROM ledger.balances AS b"
    " JOIN ledger.accounts AS a USING (tenant_id, account_id)"
    " WHERE b.tenant_id = %s AND b.account_id = %s"
)
# One primary-key lookup of the account and one backward scan of entries_account_time_idx.
SELECT_BALANCE_AS_OF = (
    "SELECT a.account_id, a.currency, a.normal_side, coalesce(e.debits_posted_after, 0),"
    " coalesce(e.credits_posted_after, 0), coalesce(e.debits_pending_after, 0),"
    " coalesce(e.credits_pending_after, 0), NULL::numeric,"
    " coalesce(e.sequence, a.opened_sequence), coalesce(e.effective_at, a.opened_at)"
    " FROM ledger.accounts AS a LEFT JOIN LATERAL ("
    "   SELECT debits_posted_after, credits_posted_after, debits_pending_after,"
    "   credits_pending_after, sequence, effective_at FROM ledger.entries"
    "   WHERE tenant_id = a.tenant_id AND account_id = a.account_id AND effective_at <= %s"
    "   ORDER BY effective_at DESC, sequence DESC, kind DESC, transfer_id DESC LIMIT 1) AS e"
    " ON true"
    " WHERE a.tenant_id = %s AND a.account_id = %s AND a.opened_at <= %s"
)
# Newest first; the cursor is the (sequence, kind, transfer_id) of the last row seen: the
# primary key's order (migration 0008: a transaction event has one row per posting side, so
# (sequence, kind) alone is not unique), so each page is one backward index range scan.
ENTRY_COLUMNS = (
    "sequence, kind, side, transfer_id, event_type, currency, amount, debits_posted_after,"
    " credits_posted_after, debits_pending_after, credits_pending_after, effective_at, actor"
)
SELECT_HISTORY_FIRST = (
    "SELECT " + ENTRY_COLUMNS + " FROM ledger.entries"
    " WHERE tenant_id = %s AND account_id = %s"
    " ORDER BY sequence DESC, kind DESC, transfer_id DESC LIMIT %s"
)
SELECT_HISTORY_AFTER = (
    "SELECT " + ENTRY_COLUMNS + " FROM ledger.entries"
    " WHERE tenant_id = %s AND account_id = %s AND (sequence, kind, transfer_id) < (%s, %s, %s)"
    " ORDER BY sequence DESC, kind DESC, transfer_id DESC LIMIT %s"
)
# Who issued the events that created and last changed a transfer or a transaction (contract
# v1.7, migration 0014): two primary-key lookups of event_chain ('' before v1.7).
SELECT_TRANSFER = (
    "SELECT t.transfer_id, t.debit_account_id, t.credit_account_id, t.currency, t.amount,"
    " t.pending, t.status, t.amount_posted, t.amount_reversed, t.reverses, t.expires_at,"
    " t.created_sequence, t.last_sequence, t.created_at, t.updated_at, t.metadata,"
    " coalesce(c.actor, ''), coalesce(u.actor, '')"
    " FROM ledger.transfers AS t"
    " LEFT JOIN ledger.event_chain AS c"
    " ON c.tenant_id = t.tenant_id AND c.sequence = t.created_sequence"
    " LEFT JOIN ledger.event_chain AS u"
    " ON u.tenant_id = t.tenant_id AND u.sequence = t.last_sequence"
    " WHERE t.tenant_id = %s AND t.transfer_id = %s"
)
# A transaction and its postings in one statement: primary-key lookups of the transaction and
# of each posting's transfer row ``{transaction_id}/{i}`` (decision 0042), in posting order.
SELECT_TRANSACTION = (
    "SELECT x.transaction_id, x.posting_count, x.currencies, x.pending, x.status, x.reverses,"
    " x.expires_at, x.created_sequence, x.last_sequence, x.created_at, x.updated_at,"
    " coalesce(c.actor, ''), coalesce(u.actor, ''),"
    " p.posting_index, t.debit_account_id, t.credit_account_id, t.currency, t.amount,"
    " t.amount_posted, t.amount_reversed"
    " FROM ledger.transactions AS x"
    " LEFT JOIN ledger.event_chain AS c"
    " ON c.tenant_id = x.tenant_id AND c.sequence = x.created_sequence"
    " LEFT JOIN ledger.event_chain AS u"
    " ON u.tenant_id = x.tenant_id AND u.sequence = x.last_sequence"
    " CROSS JOIN LATERAL generate_series(0, x.posting_count - 1) AS p(posting_index)"
    " JOIN ledger.transfers AS t ON t.tenant_id = x.tenant_id"
    " AND t.transfer_id = x.transaction_id || '/' || p.posting_index"
    " WHERE x.tenant_id = %s AND x.transaction_id = %s ORDER BY p.posting_index"
)
TRANSACTION_COLUMNS_COUNT = 13  # the transaction's columns before each posting's
# A tenant's balance monitors (migration 0010, at most monitors_per_tenant_max) with their
# account's counters, in creation order; FROM in the lock order (balances, accounts, monitors).
SELECT_MONITORS = (
    "SELECT m.monitor_id, m.account_id, a.currency, m.field, m.operator, m.threshold,"
    " m.metadata, m.created_sequence, m.created_at, a.debits_must_not_exceed_credits,"
    " a.credits_must_not_exceed_debits, b.debits_posted, b.credits_posted, b.debits_pending,"
    " b.credits_pending, b.last_sequence"
    " FROM ledger.balances AS b"
    " JOIN ledger.accounts AS a ON a.tenant_id = b.tenant_id AND a.account_id = b.account_id"
    " JOIN ledger.monitors AS m ON m.tenant_id = b.tenant_id AND m.account_id = b.account_id"
    " WHERE b.tenant_id = %s ORDER BY m.created_sequence, m.monitor_id"
)
CURSOR_SEPARATOR = ":"
CURSOR_KINDS = ("pending", "posted", "released")
CURSOR_TRANSFER_ID_LENGTH_MAX = 255  # the column's limit
SEQUENCE_MAX = 2**63 - 1  # the column is a bigint
# Only ASCII digits are numbers: int() would also read "٣" (3) from other scripts.
DIGITS_PATTERN = re.compile(r"[0-9]+")
DIGITS_MAX = 19  # longer digit strings are out of range before int() reads them
MOMENT_TEXT_LENGTH_MAX = 64
MOMENT_MAX = datetime.max.replace(tzinfo=UTC)


class QueryError(StreamLedgerError):
    """A read was asked for something malformed (e.g. a limit out of range, a bad cursor)."""


MICROSECONDS_MAX = to_microseconds(MOMENT_MAX)  # 9999-12-31T23:59:59.999999Z


def parse_moment(text: str, name: str) -> datetime:
    """A point in time given as RFC 3339 / ISO 8601 (UTC when no offset is given) or as whole
    microseconds since the epoch (ASCII digits), in UTC; ``QueryError`` naming ``name`` else.
    Every instant from 0001-01-01 to 9999-12-31 UTC is accepted, nothing outside it."""
    shown = repr(text[:MOMENT_TEXT_LENGTH_MAX])
    if DIGITS_PATTERN.fullmatch(text):
        if len(text) > DIGITS_MAX or int(text) > MICROSECONDS_MAX:
            raise QueryError(
                f"{name}: {shown} microseconds is after 9999-12-31 (at most {MICROSECONDS_MAX})"
            )
        return to_datetime(int(text))
    if len(text) > MOMENT_TEXT_LENGTH_MAX or not text.isascii():
        raise QueryError(f"{name}: {shown} is neither RFC 3339 nor microseconds (ASCII digits)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{name}: {shown} is neither RFC 3339 nor microseconds") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise QueryError(f"{name}: {shown} is outside 0001-01-01..9999-12-31 UTC") from None


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's four counters (now, or as of a time), with the event that left them."""

    tenant_id: str
    account_id: str
    currency: str
    normal_side: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    stored_available: Decimal | None  # the table's derived column (current balance only)
    last_sequence: int  # the event that left these balances
    effective_at: datetime  # that event's effective time

    def counters(self) -> tuple[int, int, int, int]:
        """(debits_posted, credits_posted, debits_pending, credits_pending)."""
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    @property
    def available(self) -> int:
        """What the owner can use: posted on the normal side minus the other side's posted and
        pending (``balances.available``, recomputed here so as-of balances have it too)."""
        if self.normal_side == "credit":
            return self.credits_posted - self.debits_posted - self.debits_pending
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(frozen=True, slots=True)
class Entry:
    sequence: int
    kind: str
    side: str
    transfer_id: str
    event_type: str
    currency: str
    amount: int
    debits_posted_after: int
    credits_posted_after: int
    debits_pending_after: int
    credits_pending_after: int
    effective_at: datetime
    actor: str  # who issued the row's event (contract v1.7; "system": an expiry)

    @property
    def cursor(self) -> str:
        return CURSOR_SEPARATOR.join((str(self.sequence), self.kind, self.transfer_id))


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: tuple[Entry, ...]
    next_cursor: str | None  # pass as ``after`` for the next (older) page; None = no more rows


class TransferView(NamedTuple):
    """A transfer as read back: the ``transfers`` row (``TransferRow``'s columns, in its order)
    and who issued the events that created it and last changed it (contract v1.7)."""

    tenant_id: str
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int
    pending: bool
    status: str
    amount_posted: int
    amount_reversed: int
    reverses: str | None
    expires_at: datetime | None
    created_sequence: int
    last_sequence: int
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str]
    created_by: str  # the actor of the event at created_sequence
    updated_by: str  # the actor of the event at last_sequence ("system": it expired)


assert TransferView._fields[: len(TransferRow._fields)] == TransferRow._fields


@dataclass(frozen=True, slots=True)
class PostingView:
    """One posting of a transaction as read back (its transfer row ``{transaction_id}/{i}``)."""

    index: int
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int  # as created (reserved, when pending)
    amount_posted: int
    amount_reversed: int


@dataclass(frozen=True, slots=True)
class TransactionView:
    """A multi-leg transaction as read back: the ``transactions`` row and its postings."""

    tenant_id: str
    transaction_id: str
    posting_count: int
    currencies: tuple[str, ...]
    pending: bool
    status: str
    reverses: str | None
    expires_at: datetime | None
    created_sequence: int
    last_sequence: int
    created_at: datetime
    updated_at: datetime
    created_by: str  # the actor of the event at created_sequence (contract v1.7)
    updated_by: str  # the actor of the event at last_sequence
    postings: tuple[PostingView, ...]


@dataclass(frozen=True, slots=True)
class MonitorView:
    """A live balance monitor and whether its condition holds on the projected balance (the
    ledger's own definition, ``ledger.monitors``; as of the balance's ``balance_sequence``)."""

    monitor_id: str
    account_id: str
    currency: str
    field: str
    operator: str
    threshold: int
    metadata: dict[str, str]
    created_sequence: int
    created_at: datetime
    value: int
    holds: bool
    balance_sequence: int


def monitor_from_row(row: Any) -> MonitorView:
    """A ``SELECT_MONITORS`` row, evaluated."""
    (monitor_id, account_id, currency, field, operator, threshold, metadata) = row[:7]
    (created_sequence, created_at, debits_flag, credits_flag) = row[7:11]
    debits_posted, credits_posted, debits_pending, credits_pending, balance_sequence = row[11:]
    balance = AccountBalance(
        account_id=account_id,
        currency=currency,
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        credits_pending=credits_pending,
    )
    credit_normal = is_credit_normal(
        debits_must_not_exceed_credits=debits_flag, credits_must_not_exceed_debits=credits_flag
    )
    holds, value = evaluate(
        parse_condition(field, operator, threshold), balance, credit_normal=credit_normal
    )
    return MonitorView(
        monitor_id,
        account_id,
        currency,
        field,
        operator,
        threshold,
        metadata,
        created_sequence,
        created_at,
        value,
        holds,
        balance_sequence,
    )


def transaction_from_rows(tenant_id: str, rows: list[Any]) -> TransactionView | None:
    """The transaction in ``SELECT_TRANSACTION``'s rows (one per posting), or None (no rows).
    A transaction without every one of its postings is corrupt state."""
    if not rows:
        return None
    (transaction_id, posting_count, currencies, pending, status, reverses, expires_at) = rows[0][:7]
    created_sequence, last_sequence, created_at, updated_at, created_by, updated_by = rows[0][
        7:TRANSACTION_COLUMNS_COUNT
    ]
    postings = tuple(PostingView(*row[TRANSACTION_COLUMNS_COUNT:]) for row in rows)
    if [posting.index for posting in postings] != list(range(posting_count)):
        raise InvariantViolationError(
            f"transaction {tenant_id}/{transaction_id}: {posting_count} postings, "
            f"{len(postings)} posting transfer rows"
        )
    return TransactionView(
        tenant_id,
        transaction_id,
        posting_count,
        tuple(currencies),
        pending,
        status,
        reverses,
        expires_at,
        created_sequence,
        last_sequence,
        created_at,
        updated_at,
        created_by,
        updated_by,
        postings,
    )


def parse_cursor(cursor: str, name: str = "after") -> tuple[int, str, str]:
    """``SEQUENCE:KIND:TRANSFER_ID`` as printed by a previous page, as (sequence, kind,
    transfer_id); ``QueryError`` naming ``name`` else. A cursor of an older page
    (``SEQUENCE:KIND``) reads as transfer_id ``""``: the rows before every row of that
    (sequence, kind), which is what it meant when those were unique."""
    sequence, separator, rest = cursor.partition(CURSOR_SEPARATOR)
    kind, _, transfer_id = rest.partition(CURSOR_SEPARATOR)
    if (
        separator
        and DIGITS_PATTERN.fullmatch(sequence)
        and len(sequence) <= DIGITS_MAX
        and int(sequence) <= SEQUENCE_MAX
        and kind in CURSOR_KINDS
        and len(transfer_id) <= CURSOR_TRANSFER_ID_LENGTH_MAX
    ):
        return int(sequence), kind, transfer_id
    raise QueryError(
        f"{name}: cursor {cursor[:64]!r} is not SEQUENCE:KIND:TRANSFER_ID from a previous page"
        f" (SEQUENCE in 0..{SEQUENCE_MAX} in ASCII digits, KIND one of {', '.join(CURSOR_KINDS)})"
    )


def reader_dsn(settings: Settings, reader_url: str | None = None) -> str:
    """The reader role's DSN: given, or the app's DSN with the reader's credentials."""
    if reader_url:
        return reader_url
    return make_conninfo(settings.database_dsn, user=READER_ROLE, password=READER_PASSWORD)


def check_reachable(dsn: str) -> None:
    """One direct connection first, so an unreachable or refusing PostgreSQL is named at once
    (within ``CONNECT_TIMEOUT_S``) with its reason, instead of after the pool's retries."""
    try:
        psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        raise ProjectionDatabaseError(
            f"cannot reach PostgreSQL at {describe_dsn(dsn)} as {role_of(dsn)}:"
            f" {first_line(exc)} [{DATABASE_SETTING_HINT}]"
        ) from exc


def role_of(dsn: str) -> str:
    try:
        return str(conninfo_to_dict(dsn).get("user", "the default role"))
    except psycopg.ProgrammingError:
        return "the configured role"


class LedgerReader:
    """Tenant-scoped reads through a bounded connection pool of the reader role."""

    def __init__(self, dsn: str, projection: ProjectionSettings) -> None:
        check_reachable(dsn)
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=projection.pool_size_max,
            timeout=POOL_TIMEOUT_S,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": f"-c statement_timeout={projection.statement_timeout_ms}",
                "application_name": "streamledger-reader",
            },
            open=False,
        )
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as exc:
            self.pool.close()
            raise ProjectionDatabaseError(
                f"cannot reach PostgreSQL at {describe_dsn(dsn)} as the reader role within"
                f" {CONNECT_TIMEOUT_S} s [{DATABASE_SETTING_HINT}]"
            ) from exc

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fetch(self, tenant_id: str, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Run one read-only statement as ``tenant_id``; rows as tuples."""
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(SET_TENANT, (tenant_id,))
                with conn.cursor(row_factory=tuple_row) as cursor:
                    return cursor.execute(statement, parameters).fetchall()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise ProjectionDatabaseError(f"reading the ledger failed: {exc}") from exc

    def balance(
        self, tenant_id: str, account_id: str, *, as_of: datetime | None = None
    ) -> Balance | None:
        """The current balance, or the balance as of ``as_of``; None if there was no account."""
        if as_of is None:
            rows = self.fetch(tenant_id, SELECT_BALANCE, (tenant_id, account_id))
        else:
            parameters = (as_of, tenant_id, account_id, as_of)
            rows = self.fetch(tenant_id, SELECT_BALANCE_AS_OF, parameters)
        return Balance(tenant_id, *rows[0]) if rows else None

    def history(
        self, tenant_id: str, account_id: str, *, after: str | None = None, limit: int = 100
    ) -> HistoryPage:
        """Journal rows, newest first, older than the cursor ``after``."""
        if not 1 <= limit <= HISTORY_LIMIT_MAX:
            raise QueryError(f"limit: {limit} is outside 1..{HISTORY_LIMIT_MAX}")
        if after is None:
            rows = self.fetch(tenant_id, SELECT_HISTORY_FIRST, (tenant_id, account_id, limit))
        else:
            sequence, kind, transfer_id = parse_cursor(after)
            parameters = (tenant_id, account_id, sequence, kind, transfer_id, limit)
            rows = self.fetch(tenant_id, SELECT_HISTORY_AFTER, parameters)
        entries = tuple(Entry(*row) for row in rows)
        next_cursor = entries[-1].cursor if len(entries) == limit else None
        return HistoryPage(entries, next_cursor)

    def transfer(self, tenant_id: str, transfer_id: str) -> TransferView | None:
        rows = self.fetch(tenant_id, SELECT_TRANSFER, (tenant_id, transfer_id))
        return TransferView(tenant_id, *rows[0]) if rows else None

    def transaction(self, tenant_id: str, transaction_id: str) -> TransactionView | None:
        rows = self.fetch(tenant_id, SELECT_TRANSACTION, (tenant_id, transaction_id))
        return transaction_from_rows(tenant_id, rows)
