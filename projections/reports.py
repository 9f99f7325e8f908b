"""Reports an auditor can tie back to the log: account statements and the trial balance.

Every report covers a tenant's log up to one event and names it: the ``(sequence, hash)`` of the
last event included, from ``event_chain`` (migration 0006). Every figure is read from the journal
(``entries``: each row carries the account's four counters after its event) bounded by that
sequence, so a report is a function of the events ``1..sequence`` alone; anyone can recompute it
from ``ledger.events`` and check the hash against the chain (decision 0032).

- **Statement** of an account for the period ``[from, to)``: opening balance = after every event
  effective before ``from``; closing = after every event effective before ``to``; the journal
  rows with ``from <= effective_at < to``, each with the balance after it; totals per side and
  kind. The builder checks that opening + the rows = closing, row by row, and stops loudly if not.
- **Trial balance** as of ``T`` (inclusive, like ``balance --as-of``): every account opened by
  then with its balance, and per currency the totals, whose net posted and net pending must be
  zero (``OutOfBalanceError`` otherwise: never printed as if it were fine).

The reads are written once, as generators of ``(statement, parameters)`` that receive each
statement's rows (``statement_steps``, ``trial_balance_steps``); ``run_report`` drives one with a
synchronous ``fetch`` (``LedgerReader.fetch``: the CLI), ``api.reports`` with the API's async
reader. The rest is pure.

Errors::

    StreamLedgerError
    ├── QueryError (projections.queries)     a bad period, too many rows for one report
    └── InvariantViolationError
        ├── OutOfBalanceError                a currency's totals do not net to zero
        ├── StatementMismatchError           opening + entries != closing
        └── ChainIncompleteError             event_chain lacks links (migrated after events)
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from projections.queries import QueryError
from schemas.model import GENESIS_HASH
from streamledger.errors import InvariantViolationError

# Limits, all finite. A statement or trial balance larger than these is refused with the
# parameter to change, never cut short silently.
STATEMENT_ENTRIES_MAX = 100_000
TRIAL_BALANCE_ACCOUNTS_MAX = 200_000
REPORT_QUERIES_MAX = 8  # statements one report runs (a bound on the driver's loop)

Query = tuple[str, tuple[Any, ...]]
ReportT = TypeVar("ReportT")
ReportSteps = Generator[Query, list[Any], ReportT]

# The newest link of the tenant's chain at or before / strictly before an instant, with what
# tells a complete chain: the stored head and the first link held.
SELECT_LINK_TEMPLATE = (
    "SELECT h.last_sequence, f.first_sequence, l.sequence, l.hash, l.effective_at"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN ledger.tenant_heads AS h ON h.tenant_id = %s"
    " LEFT JOIN LATERAL (SELECT min(sequence) AS first_sequence FROM ledger.event_chain"
    "   WHERE tenant_id = %s) AS f ON true"
    " LEFT JOIN LATERAL (SELECT sequence, hash, effective_at FROM ledger.event_chain"
    "   WHERE tenant_id = %s AND effective_at {bound} %s"
    "   ORDER BY effective_at DESC, sequence DESC LIMIT 1) AS l ON true"
)
SELECT_LINK_AT_OR_BEFORE = SELECT_LINK_TEMPLATE.format(bound="<=")
AFTER_COLUMNS = (
    "debits_posted_after, credits_posted_after, debits_pending_after, credits_pending_after"
)
# The newest journal row of the account before an instant and within a sequence.
LATEST_ROW_TEMPLATE = (
    "SELECT " + AFTER_COLUMNS + ", sequence FROM ledger.entries"
    " WHERE tenant_id = a.tenant_id AND account_id = a.account_id"
    " AND effective_at {bound} %s AND sequence <= {within}"
    " ORDER BY effective_at DESC, sequence DESC, kind DESC, transfer_id DESC LIMIT 1"
)
LATEST_ROW = LATEST_ROW_TEMPLATE.replace("{within}", "%s")
# A statement's head in one statement (one round trip): what tells a complete chain, the last
# link before ``from`` (o) and before ``to`` (l), the account if it was open by l, and its
# counters after the last journal row before each bound within that link's sequence.
SELECT_STATEMENT_HEAD = (
    "SELECT h.last_sequence, f.first_sequence, o.sequence, o.hash, o.effective_at,"
    " l.sequence, l.hash, l.effective_at,"
    " a.currency, a.asset_scale, a.normal_side, a.opened_at, a.opened_sequence,"
    " ob.debits_posted_after, ob.credits_posted_after, ob.debits_pending_after,"
    " ob.credits_pending_after, cb.debits_posted_after, cb.credits_posted_after,"
    " cb.debits_pending_after, cb.credits_pending_after"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN ledger.tenant_heads AS h ON h.tenant_id = %s"
    " LEFT JOIN LATERAL (SELECT min(sequence) AS first_sequence FROM ledger.event_chain"
    "   WHERE tenant_id = %s) AS f ON true"
    " LEFT JOIN LATERAL (SELECT sequence, hash, effective_at FROM ledger.event_chain"
    "   WHERE tenant_id = %s AND effective_at < %s"
    "   ORDER BY effective_at DESC, sequence DESC LIMIT 1) AS o ON true"
    " LEFT JOIN LATERAL (SELECT sequence, hash, effective_at FROM ledger.event_chain"
    "   WHERE tenant_id = %s AND effective_at < %s"
    "   ORDER BY effective_at DESC, sequence DESC LIMIT 1) AS l ON true"
    " LEFT JOIN ledger.accounts AS a ON a.tenant_id = %s AND a.account_id = %s"
    "   AND a.opened_sequence <= coalesce(l.sequence, 0)"
    " LEFT JOIN LATERAL ("
    + LATEST_ROW_TEMPLATE.format(bound="<", within="coalesce(o.sequence, 0)")
    + ") AS ob ON true"
    " LEFT JOIN LATERAL ("
    + LATEST_ROW_TEMPLATE.format(bound="<", within="coalesce(l.sequence, 0)")
    + ") AS cb ON true"
)
SELECT_STATEMENT_ENTRIES = (
    "SELECT sequence, kind, side, transfer_id, event_type, amount, " + AFTER_COLUMNS + ","
    " effective_at, actor FROM ledger.entries"
    " WHERE tenant_id = %s AND account_id = %s AND effective_at >= %s AND effective_at < %s"
    " AND sequence <= %s ORDER BY effective_at, sequence, kind, transfer_id LIMIT %s"
)
SELECT_TRIAL_BALANCE = (
    "SELECT a.account_id, a.currency, a.asset_scale, a.normal_side,"
    " coalesce(e.debits_posted_after, 0), coalesce(e.credits_posted_after, 0),"
    " coalesce(e.debits_pending_after, 0), coalesce(e.credits_pending_after, 0),"
    " coalesce(e.sequence, a.opened_sequence)"
    " FROM ledger.accounts AS a"
    " LEFT JOIN LATERAL (" + LATEST_ROW.format(bound="<=") + ") AS e ON true"
    " WHERE a.tenant_id = %s AND a.opened_sequence <= %s"
    " ORDER BY a.currency, a.account_id LIMIT %s"
)

KIND_PENDING = "pending"
KIND_POSTED = "posted"
KIND_RELEASED = "released"


class OutOfBalanceError(InvariantViolationError):
    """A currency's account balances do not sum to zero in a trial balance."""


class StatementMismatchError(InvariantViolationError):
    """A statement's opening balance and entries do not add up to its closing balance."""


class ChainIncompleteError(InvariantViolationError):
    """The projection holds a tenant's rows without the chain links that name them."""


@dataclass(frozen=True, slots=True)
class ChainLink:
    """An event's place in its tenant's hash chain; sequence 0 = before the first event."""

    sequence: int
    hash: bytes
    effective_at: datetime | None


GENESIS_LINK = ChainLink(0, GENESIS_HASH, None)


class Counters(NamedTuple):
    """An account's four counters, and what they mean on its normal side.

    A ``NamedTuple`` (immutable, typed) rather than a frozen dataclass: a statement builds one
    per journal row, thousands for a busy account's day, and a tuple is built in a third of the
    time (bench/README.md, decision 0078)."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def posted(self, normal_side: str) -> int:
        """Net posted on the normal side: the balance."""
        net = self.credits_posted - self.debits_posted
        return net if normal_side == "credit" else -net

    def pending(self, normal_side: str) -> int:
        """Net reserved by pending transfers, on the normal side (not yet in ``posted``)."""
        net = self.credits_pending - self.debits_pending
        return net if normal_side == "credit" else -net

    def available(self, normal_side: str) -> int:
        """Posted on the normal side minus the other side's posted and pending (the same rule
        as ``balances.available``)."""
        if normal_side == "credit":
            return self.credits_posted - self.debits_posted - self.debits_pending
        return self.debits_posted - self.credits_posted - self.credits_pending

    def moved(self, side: str, kind: str, amount: int) -> Counters:
        """These counters after one journal row (``kind`` on ``side`` by ``amount``)."""
        debit = side == "debit"
        posted = amount if kind == KIND_POSTED else 0
        pending = {KIND_PENDING: amount, KIND_RELEASED: -amount}.get(kind, 0)
        return Counters(
            self.debits_posted + (posted if debit else 0),
            self.credits_posted + (0 if debit else posted),
            self.debits_pending + (pending if debit else 0),
            self.credits_pending + (0 if debit else pending),
        )


def counters_of(values: Sequence[Any]) -> Counters:
    """Four counters from a row slice; all NULL (no journal row) reads as zero."""
    return Counters(*(int(value or 0) for value in values))


class StatementEntry(NamedTuple):
    """One journal row of a statement (a ``NamedTuple`` for the reason ``Counters`` is one)."""

    sequence: int
    kind: str
    side: str
    transfer_id: str
    event_type: str
    amount: int
    after: Counters  # the account's counters after the whole event
    effective_at: datetime
    actor: str  # who issued the event (contract v1.7, decision 0093; "system": an expiry)


@dataclass(frozen=True, slots=True)
class StatementTotals:
    """Sums of the period's journal rows by side and kind."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0  # reserved by pending transfers
    credits_pending: int = 0
    debits_released: int = 0  # reservations posted, voided or expired
    credits_released: int = 0
    entries: int = 0


@dataclass(frozen=True, slots=True)
class AccountStatement:
    tenant_id: str
    account_id: str
    currency: str
    asset_scale: int
    normal_side: str
    opened_at: datetime
    period_from: datetime
    period_to: datetime
    opening: Counters
    opening_link: ChainLink  # the last event before ``period_from``
    closing: Counters
    last_event: ChainLink  # the last event before ``period_to``: the statement covers 1..it
    entries: tuple[StatementEntry, ...]
    totals: StatementTotals


@dataclass(frozen=True, slots=True)
class TrialBalanceLine:
    account_id: str
    currency: str
    asset_scale: int
    normal_side: str
    counters: Counters
    last_sequence: int  # the event that left these counters (or opened the account)


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    currency: str
    asset_scale: int | None  # None when the currency's accounts use different scales
    accounts: int
    counters: Counters

    @property
    def net_posted(self) -> int:
        return self.counters.credits_posted - self.counters.debits_posted

    @property
    def net_pending(self) -> int:
        return self.counters.credits_pending - self.counters.debits_pending


@dataclass(frozen=True, slots=True)
class TrialBalance:
    tenant_id: str
    as_of: datetime
    last_event: ChainLink  # the last event at or before ``as_of``: the report covers 1..it
    lines: tuple[TrialBalanceLine, ...]
    totals: tuple[CurrencyTotal, ...]


def run_report(
    steps: ReportSteps[ReportT], fetch: Callable[[str, tuple[Any, ...]], list[Any]]
) -> ReportT:
    """Drive a report's reads with a synchronous ``fetch(statement, parameters) -> rows``."""
    query = next(steps)
    for _ in range(REPORT_QUERIES_MAX):
        try:
            query = steps.send(fetch(*query))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
    raise InvariantViolationError(f"a report ran more than {REPORT_QUERIES_MAX} statements")


def link_steps(tenant_id: str, statement: str, moment: datetime) -> ReportSteps[ChainLink]:
    """The newest link at (or before) ``moment``; a chain missing links stops loudly."""
    rows = yield statement, (tenant_id, tenant_id, tenant_id, moment)
    head_sequence, first_sequence, *link = rows[0]
    return chain_link(tenant_id, (head_sequence, first_sequence), link)


def chain_link(
    tenant_id: str, completeness: tuple[int | None, int | None], link: Sequence[Any]
) -> ChainLink:
    """The link ``(sequence, hash, effective_at)`` a row found (NULLs: before the first event);
    ``completeness`` is the tenant's (head sequence, first link held): a chain that lacks its
    first links while the projection holds events stops loudly."""
    head_sequence, first_sequence = completeness
    sequence, link_hash, effective_at = link
    if head_sequence is not None and first_sequence != 1:
        raise ChainIncompleteError(
            f"tenant {tenant_id!r}: the projection holds events up to sequence {head_sequence}"
            f" but event_chain starts at {first_sequence}; it was migrated after they were"
            " projected: run `streamledger project --rebuild` to replay them"
        )
    if sequence is None or link_hash is None:
        return GENESIS_LINK
    return ChainLink(int(sequence), bytes(link_hash), effective_at)


def statement_steps(
    tenant_id: str, account_id: str, period_from: datetime, period_to: datetime
) -> ReportSteps[AccountStatement | None]:
    """The statement of ``account_id`` for ``[period_from, period_to)``; None if the account
    was not open before ``period_to``."""
    if period_from >= period_to:
        raise QueryError(
            f"from: {period_from.isoformat()} is not before to: {period_to.isoformat()}"
        )
    links = (*(tenant_id,) * 3, period_from, tenant_id, period_to)  # head, first, o, l
    account_and_probes = (tenant_id, account_id, period_from, period_to)  # a, ob, cb
    heads = yield SELECT_STATEMENT_HEAD, (*links, *account_and_probes)
    head = heads[0]
    completeness = (head[0], head[1])
    opening_link = chain_link(tenant_id, completeness, head[2:5])
    last_event = chain_link(tenant_id, completeness, head[5:8])
    account = head[8:]
    if account[0] is None:  # no such account open by the last event before ``to``
        return None
    entry_rows = yield (
        SELECT_STATEMENT_ENTRIES,
        (*account_and_probes, last_event.sequence, STATEMENT_ENTRIES_MAX + 1),
    )
    if len(entry_rows) > STATEMENT_ENTRIES_MAX:
        raise QueryError(
            f"to: the period holds more than {STATEMENT_ENTRIES_MAX} entries of account"
            f" {account_id!r}; ask for a shorter period"
        )
    return build_statement(
        (tenant_id, account_id, period_from, period_to),
        account,
        (opening_link, last_event),
        statement_entries(entry_rows),
    )


def statement_entries(rows: Sequence[Sequence[Any]]) -> list[StatementEntry]:
    """The journal rows as entries; their four counters are NOT NULL bigints (no
    ``counters_of``). One comprehension with the columns unpacked by name: a busy account's day
    is thousands of rows, and a function call (or a ``*rest`` list) per row doubles this step
    (decision 0078)."""
    return [
        StatementEntry(
            sequence, kind, side, transfer, event, amount, Counters(dp, cp, dq, cq), at, actor
        )
        for sequence, kind, side, transfer, event, amount, dp, cp, dq, cq, at, actor in rows
    ]


def build_statement(
    subject: tuple[str, str, datetime, datetime],
    account: Sequence[Any],
    links: tuple[ChainLink, ChainLink],
    entries: Sequence[StatementEntry],
) -> AccountStatement:
    """The statement from its rows, checked: opening + each event's rows = that row's balance
    after, and the last = closing (``StatementMismatchError`` otherwise)."""
    tenant_id, account_id, period_from, period_to = subject
    currency, asset_scale, normal_side, opened_at, _opened_sequence = account[:5]
    opening, closing = counters_of(account[5:9]), counters_of(account[9:13])
    statement = AccountStatement(
        tenant_id,
        account_id,
        currency,
        int(asset_scale),
        normal_side,
        opened_at,
        period_from,
        period_to,
        opening,
        links[0],
        closing,
        links[1],
        tuple(entries),
        totals_of(entries),
    )
    check_statement(statement)
    return statement


def totals_of(entries: Sequence[StatementEntry]) -> StatementTotals:
    sums = {
        (side, kind): 0
        for side in ("debit", "credit")
        for kind in (KIND_POSTED, KIND_PENDING, KIND_RELEASED)
    }
    for entry in entries:
        sums[(entry.side, entry.kind)] += entry.amount
    return StatementTotals(
        sums[("debit", KIND_POSTED)],
        sums[("credit", KIND_POSTED)],
        sums[("debit", KIND_PENDING)],
        sums[("credit", KIND_PENDING)],
        sums[("debit", KIND_RELEASED)],
        sums[("credit", KIND_RELEASED)],
        len(entries),
    )


def check_statement(statement: AccountStatement) -> None:
    """Replays the rows on four integers (no ``Counters`` per row: a day of a busy account is
    thousands of rows, bench/README.md) and compares them at each event's last row."""
    opening = statement.opening
    running = [
        opening.debits_posted,
        opening.credits_posted,
        opening.debits_pending,
        opening.credits_pending,
    ]
    entries = statement.entries
    for index, entry in enumerate(entries):
        column = 0 if entry.side == "debit" else 1
        if entry.kind == KIND_POSTED:
            running[column] += entry.amount
        elif entry.kind == KIND_PENDING:
            running[column + 2] += entry.amount
        elif entry.kind == KIND_RELEASED:
            running[column + 2] -= entry.amount
        if index + 1 < len(entries) and entries[index + 1].sequence == entry.sequence:
            continue  # not the event's last row: its balance after is the event's
        after = entry.after
        if running != [
            after.debits_posted,
            after.credits_posted,
            after.debits_pending,
            after.credits_pending,
        ]:
            raise StatementMismatchError(
                f"statement of {statement.tenant_id}/{statement.account_id}: after sequence"
                f" {entry.sequence} the rows add up to {Counters(*running)}, the journal holds"
                f" {entry.after}"
            )
    if Counters(*running) != statement.closing:
        raise StatementMismatchError(
            f"statement of {statement.tenant_id}/{statement.account_id}: opening + entries ="
            f" {Counters(*running)}, closing = {statement.closing}"
        )


def trial_balance_steps(tenant_id: str, as_of: datetime) -> ReportSteps[TrialBalance]:
    """Every account of the tenant opened by ``as_of`` with its balance as of then."""
    last_event = yield from link_steps(tenant_id, SELECT_LINK_AT_OR_BEFORE, as_of)
    last = last_event.sequence
    rows = yield (
        SELECT_TRIAL_BALANCE,
        (
            as_of,
            last,
            tenant_id,
            last,
            TRIAL_BALANCE_ACCOUNTS_MAX + 1,
        ),
    )
    if len(rows) > TRIAL_BALANCE_ACCOUNTS_MAX:
        raise QueryError(
            f"as_of: the tenant has more than {TRIAL_BALANCE_ACCOUNTS_MAX} accounts, more than"
            " one trial balance shows"
        )
    lines = tuple(
        TrialBalanceLine(row[0], row[1], int(row[2]), row[3], counters_of(row[4:8]), int(row[8]))
        for row in rows
    )
    return build_trial_balance(tenant_id, as_of, last_event, lines)


def build_trial_balance(
    tenant_id: str, as_of: datetime, last_event: ChainLink, lines: tuple[TrialBalanceLine, ...]
) -> TrialBalance:
    """The per-currency totals of ``lines``; ``OutOfBalanceError`` if one does not net to zero."""
    by_currency: dict[str, list[TrialBalanceLine]] = {}
    for line in lines:
        by_currency.setdefault(line.currency, []).append(line)
    totals = tuple(
        currency_total(currency, by_currency[currency]) for currency in sorted(by_currency)
    )
    broken = [total for total in totals if total.net_posted != 0 or total.net_pending != 0]
    if broken:
        described = "; ".join(
            f"{total.currency}: net posted {total.net_posted}, net pending {total.net_pending}"
            for total in broken
        )
        raise OutOfBalanceError(
            f"trial balance of tenant {tenant_id!r} as of {as_of.isoformat()} (through sequence"
            f" {last_event.sequence}) does not net to zero: {described}"
        )
    return TrialBalance(tenant_id, as_of, last_event, lines, totals)


def currency_total(currency: str, lines: Sequence[TrialBalanceLine]) -> CurrencyTotal:
    scales = {line.asset_scale for line in lines}
    return CurrencyTotal(
        currency,
        scales.pop() if len(scales) == 1 else None,
        len(lines),
        Counters(
            sum(line.counters.debits_posted for line in lines),
            sum(line.counters.credits_posted for line in lines),
            sum(line.counters.debits_pending for line in lines),
            sum(line.counters.credits_pending for line in lines),
        ),
    )
