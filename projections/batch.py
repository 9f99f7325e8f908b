"""Pure planning of one projection batch: ledger events in, table rows out.

No I/O here: the sink reads records, decodes them, hands the events to ``plan_batch`` and writes
the rows the plan holds in one database transaction. Everything a batch must satisfy before it
is written is asserted here and raised as ``InvariantViolationError``:

- per tenant, the batch's sequences are consecutive (the sink checks the first one against the
  table's ``tenant_heads``);
- every money event names both of its accounts in its balances-after;
- a transfer only moves pending → posted | voided | expired, once, and is never created twice.

Rows are plain tuples in the column order of the ``COPY``/``unnest`` statements in
``projections.store``, so no per-row object survives the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from schemas.model import (
    AccountOpened,
    Event,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    TransferPending,
    TransferPosted,
)
from streamledger.errors import InvariantViolationError

MoneyEvent = TransferPosted | TransferPending | PendingPosted | PendingVoided | PendingExpired
FinalizingEvent = PendingPosted | PendingVoided | PendingExpired

STATUS_PENDING = "pending"
STATUS_POSTED = "posted"
STATUS_VOIDED = "voided"
STATUS_EXPIRED = "expired"

KIND_PENDING = "pending"  # the side's pending counter grew by amount
KIND_POSTED = "posted"  # the side's posted counter grew by amount
KIND_RELEASED = "released"  # the side's pending counter shrank by amount

FINAL_STATUS: Mapping[type[Event], str] = {
    PendingPosted: STATUS_POSTED,
    PendingVoided: STATUS_VOIDED,
    PendingExpired: STATUS_EXPIRED,
}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(microseconds: int) -> datetime:
    """Event times (int microseconds since the epoch) as the ``timestamptz`` columns hold them."""
    return EPOCH + timedelta(microseconds=microseconds)


# (tenant_id, account_id, currency, asset_scale, debits_must_not_exceed_credits,
#  credits_must_not_exceed_debits, overdraft_limit, opened_sequence, opened_at)
AccountRow = tuple[str, str, str, int, bool, bool, int | None, int, datetime]
# (tenant_id, account_id, debits_posted, credits_posted, debits_pending, credits_pending,
#  last_sequence, updated_at)
BalanceRow = tuple[str, str, int, int, int, int, int, datetime]
# (tenant_id, account_id, sequence, kind, side, transfer_id, event_type, currency, amount,
#  debits_posted_after, credits_posted_after, debits_pending_after, credits_pending_after,
#  effective_at)
EntryRow = tuple[str, str, int, str, str, str, str, str, int, int, int, int, int, datetime]


@dataclass(frozen=True, slots=True)
class TransferRow:
    """A transfer's state in the column order of the ``transfers`` table."""

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

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.transfer_id)

    def as_tuple(self) -> tuple[object, ...]:
        return (
            self.tenant_id,
            self.transfer_id,
            self.debit_account_id,
            self.credit_account_id,
            self.currency,
            self.amount,
            self.pending,
            self.status,
            self.amount_posted,
            self.amount_reversed,
            self.reverses,
            self.expires_at,
            self.created_sequence,
            self.last_sequence,
            self.created_at,
            self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class TenantRun:
    """The consecutive sequences one batch holds for one tenant."""

    tenant_id: str
    first_sequence: int
    first_effective_at_us: int
    first_prev_hash: bytes
    last_sequence: int
    last_hash: bytes
    last_effective_at_us: int


@dataclass(slots=True)
class BatchPlan:
    """Everything one database transaction writes, except the transfers' final states."""

    tenant_runs: dict[str, TenantRun] = field(default_factory=dict)
    accounts: list[AccountRow] = field(default_factory=list)
    balances: dict[tuple[str, str], BalanceRow] = field(default_factory=dict)
    entries: list[EntryRow] = field(default_factory=list)
    transfer_events: list[MoneyEvent] = field(default_factory=list)
    created_transfers: set[tuple[str, str]] = field(default_factory=set)
    event_count: int = 0
    last_effective_at_us: int = 0

    def existing_transfer_keys(self) -> set[tuple[str, str]]:
        """Transfers this batch changes but did not create: their state must be read first."""
        keys: set[tuple[str, str]] = set()
        for event in self.transfer_events:
            if isinstance(event, TransferPosted):
                if event.reverses is not None:
                    keys.add((event.tenant_id, event.reverses))
            elif not isinstance(event, TransferPending):
                keys.add((event.tenant_id, event.transfer_id))
        return keys - self.created_transfers


def plan_batch(events: Iterable[Event]) -> BatchPlan:
    """The rows of a batch of events in log order. Raises ``InvariantViolationError``."""
    plan = BatchPlan()
    for event in events:
        note_sequence(plan, event)
        plan.event_count += 1
        plan.last_effective_at_us = max(plan.last_effective_at_us, event.effective_at_us)
        effective_at = to_datetime(event.effective_at_us)
        for balance in event.balances:
            plan.balances[(event.tenant_id, balance.account_id)] = (
                event.tenant_id,
                balance.account_id,
                balance.debits_posted,
                balance.credits_posted,
                balance.debits_pending,
                balance.credits_pending,
                event.sequence,
                effective_at,
            )
        if isinstance(event, AccountOpened):
            plan.accounts.append(account_row(event, effective_at))
            continue
        plan.entries.extend(entry_rows(event, effective_at))
        plan.transfer_events.append(event)
        if isinstance(event, TransferPosted | TransferPending):
            key = (event.tenant_id, event.transfer_id)
            if key in plan.created_transfers:
                raise InvariantViolationError(
                    f"tenant {event.tenant_id!r}: transfer {event.transfer_id!r} created twice "
                    f"in one batch (sequence {event.sequence})"
                )
            plan.created_transfers.add(key)
    return plan


def note_sequence(plan: BatchPlan, event: Event) -> None:
    run = plan.tenant_runs.get(event.tenant_id)
    if run is not None:
        if event.sequence != run.last_sequence + 1:
            raise InvariantViolationError(
                f"tenant {event.tenant_id!r}: sequence {event.sequence} follows "
                f"{run.last_sequence} in one batch (gap or repeat)"
            )
        if event.prev_hash != run.last_hash:
            raise InvariantViolationError(
                f"tenant {event.tenant_id!r}: sequence {event.sequence} does not chain onto "
                f"sequence {run.last_sequence} (prev_hash differs)"
            )
        if event.effective_at_us < run.last_effective_at_us:
            raise InvariantViolationError(
                f"tenant {event.tenant_id!r}: sequence {event.sequence} goes back in time "
                f"({event.effective_at_us} < {run.last_effective_at_us} us)"
            )
    plan.tenant_runs[event.tenant_id] = TenantRun(
        tenant_id=event.tenant_id,
        first_sequence=event.sequence if run is None else run.first_sequence,
        first_effective_at_us=event.effective_at_us if run is None else run.first_effective_at_us,
        first_prev_hash=event.prev_hash if run is None else run.first_prev_hash,
        last_sequence=event.sequence,
        last_hash=event.hash,
        last_effective_at_us=event.effective_at_us,
    )


def account_row(event: AccountOpened, opened_at: datetime) -> AccountRow:
    return (
        event.tenant_id,
        event.account_id,
        event.currency,
        event.asset_scale,
        event.debits_must_not_exceed_credits,
        event.credits_must_not_exceed_debits,
        event.overdraft_limit,
        event.sequence,
        opened_at,
    )


def postings(event: MoneyEvent) -> tuple[tuple[str, int], ...]:
    """(kind, amount) of each posting a money event makes on both of its accounts."""
    if isinstance(event, TransferPosted):
        return ((KIND_POSTED, event.amount),)
    if isinstance(event, TransferPending):
        return ((KIND_PENDING, event.amount),)
    if isinstance(event, PendingPosted):
        return ((KIND_POSTED, event.amount), (KIND_RELEASED, event.pending_amount))
    return ((KIND_RELEASED, event.amount),)


def entry_rows(event: MoneyEvent, effective_at: datetime) -> list[EntryRow]:
    """The journal rows of a money event: per side and kind, with the balances after it."""
    after = {balance.account_id: balance for balance in event.balances}
    event_type = type(event).__name__
    rows: list[EntryRow] = []
    for side, account_id in (
        ("debit", event.debit_account_id),
        ("credit", event.credit_account_id),
    ):
        balance = after.get(account_id)
        if balance is None:
            raise InvariantViolationError(
                f"tenant {event.tenant_id!r}: event {event.sequence} has no balance after for "
                f"{side} account {account_id!r}"
            )
        for kind, amount in postings(event):
            rows.append(
                (
                    event.tenant_id,
                    account_id,
                    event.sequence,
                    kind,
                    side,
                    event.transfer_id,
                    event_type,
                    event.currency,
                    amount,
                    balance.debits_posted,
                    balance.credits_posted,
                    balance.debits_pending,
                    balance.credits_pending,
                    effective_at,
                )
            )
    return rows


def fold_transfers(
    known: Mapping[tuple[str, str], TransferRow], events: Iterable[MoneyEvent]
) -> dict[tuple[str, str], TransferRow]:
    """The final state of every transfer the events touch, starting from ``known`` (read from
    the table). Returns only touched transfers. Raises ``InvariantViolationError``."""
    state = dict(known)
    touched: dict[tuple[str, str], TransferRow] = {}
    for event in events:
        if isinstance(event, TransferPosted | TransferPending):
            row = created_transfer(event)
            if row.key in state:
                raise InvariantViolationError(
                    f"tenant {event.tenant_id!r}: transfer {event.transfer_id!r} already exists "
                    f"(sequence {event.sequence})"
                )
            state[row.key] = touched[row.key] = row
            if isinstance(event, TransferPosted) and event.reverses is not None:
                target = reversed_transfer(state, event, event.reverses)
                state[target.key] = touched[target.key] = target
        else:
            row = finalized_transfer(state, event)
            state[row.key] = touched[row.key] = row
    return touched


def created_transfer(event: TransferPosted | TransferPending) -> TransferRow:
    posted = isinstance(event, TransferPosted)
    at = to_datetime(event.effective_at_us)
    expires_at_us = None if isinstance(event, TransferPosted) else event.expires_at_us
    return TransferRow(
        tenant_id=event.tenant_id,
        transfer_id=event.transfer_id,
        debit_account_id=event.debit_account_id,
        credit_account_id=event.credit_account_id,
        currency=event.currency,
        amount=event.amount,
        pending=not posted,
        status=STATUS_POSTED if posted else STATUS_PENDING,
        amount_posted=event.amount if posted else 0,
        amount_reversed=0,
        reverses=event.reverses if isinstance(event, TransferPosted) else None,
        expires_at=None if expires_at_us is None else to_datetime(expires_at_us),
        created_sequence=event.sequence,
        last_sequence=event.sequence,
        created_at=at,
        updated_at=at,
    )


def reversed_transfer(
    state: Mapping[tuple[str, str], TransferRow], event: TransferPosted, target_id: str
) -> TransferRow:
    target = state.get((event.tenant_id, target_id))
    if target is None or target.status != STATUS_POSTED:
        raise InvariantViolationError(
            f"tenant {event.tenant_id!r}: transfer {event.transfer_id!r} (sequence "
            f"{event.sequence}) reverses {target_id!r}, which is not a posted transfer here"
        )
    return replace(
        target,
        amount_reversed=target.amount_reversed + event.amount,
        last_sequence=event.sequence,
        updated_at=to_datetime(event.effective_at_us),
    )


def finalized_transfer(
    state: Mapping[tuple[str, str], TransferRow], event: FinalizingEvent
) -> TransferRow:
    current = state.get((event.tenant_id, event.transfer_id))
    if current is None or current.status != STATUS_PENDING:
        found = "missing" if current is None else current.status
        raise InvariantViolationError(
            f"tenant {event.tenant_id!r}: {type(event).__name__} (sequence "
            f"{event.sequence}) for transfer {event.transfer_id!r}, which is {found}"
        )
    return replace(
        current,
        status=FINAL_STATUS[type(event)],
        amount_posted=event.amount if isinstance(event, PendingPosted) else 0,
        last_sequence=event.sequence,
        updated_at=to_datetime(event.effective_at_us),
    )
