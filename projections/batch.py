"""Pure planning of one projection batch: ledger events in, table rows out.

No I/O here: the sink reads records, decodes them into event records
(``projections.event_records``: the Avro fields as a dict, no model objects), hands them to
``plan_records`` and writes the rows the plan holds in one database transaction. ``plan_batch``
does the same for model events (tests, the benchmark). Everything a batch must satisfy before it
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from projections.event_records import (
    AccountOpenedRecord,
    EventRecord,
    MoneyRecord,
    PendingExpiredRecord,
    PendingPostedRecord,
    PendingVoidedRecord,
    TransferPendingRecord,
    TransferPostedRecord,
    event_record,
)
from schemas.model import Event
from streamledger.errors import InvariantViolationError

FinalizingRecord = PendingPostedRecord | PendingVoidedRecord | PendingExpiredRecord

STATUS_PENDING = "pending"
STATUS_POSTED = "posted"
STATUS_VOIDED = "voided"
STATUS_EXPIRED = "expired"

KIND_PENDING = "pending"  # the side's pending counter grew by amount
KIND_POSTED = "posted"  # the side's posted counter grew by amount
KIND_RELEASED = "released"  # the side's pending counter shrank by amount

FINAL_STATUS: Mapping[str, str] = {
    "PendingPosted": STATUS_POSTED,
    "PendingVoided": STATUS_VOIDED,
    "PendingExpired": STATUS_EXPIRED,
}
CREATING_EVENT_TYPES = frozenset({"TransferPosted", "TransferPending"})

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


class TransferRow(NamedTuple):
    """A transfer's state in the column order of the ``transfers`` table (a tuple, so it is
    ``COPY``'d as it is; one is built per transfer a batch creates)."""

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
        return self


@dataclass(slots=True)
class TenantRun:
    """The consecutive sequences one batch holds for one tenant (the last ones move as the
    batch is planned)."""

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
    transfer_events: list[MoneyRecord] = field(default_factory=list)
    created_transfers: set[tuple[str, str]] = field(default_factory=set)
    event_count: int = 0
    last_effective_at_us: int = 0

    def existing_transfer_keys(self) -> set[tuple[str, str]]:
        """Transfers this batch changes but did not create: their state must be read first."""
        keys: set[tuple[str, str]] = set()
        for record in self.transfer_events:
            if record["event_type"] == "TransferPosted":
                if record["reverses"] is not None:
                    keys.add((record["tenant_id"], record["reverses"]))
            elif record["event_type"] != "TransferPending":
                keys.add((record["tenant_id"], record["transfer_id"]))
        return keys - self.created_transfers


def plan_batch(events: Iterable[Event]) -> BatchPlan:
    """``plan_records`` of model events (tests and the benchmark hold events, not records)."""
    return plan_records(event_record(event) for event in events)


def plan_records(records: Iterable[EventRecord]) -> BatchPlan:
    """The rows of a batch of event records in log order. Raises ``InvariantViolationError``."""
    plan = BatchPlan()
    balances = plan.balances
    for record in records:
        tenant_id = record["tenant_id"]
        sequence = record["sequence"]
        effective_at_us = record["effective_at_us"]
        note_sequence(plan, record)
        plan.event_count += 1
        plan.last_effective_at_us = max(plan.last_effective_at_us, effective_at_us)
        effective_at = to_datetime(effective_at_us)
        for balance in record["balances"]:
            account_id = balance["account_id"]
            balances[(tenant_id, account_id)] = (
                tenant_id,
                account_id,
                balance["debits_posted"],
                balance["credits_posted"],
                balance["debits_pending"],
                balance["credits_pending"],
                sequence,
                effective_at,
            )
        if record["event_type"] == "AccountOpened":
            plan.accounts.append(account_row(record, effective_at))
            continue
        plan.entries.extend(entry_rows(record, effective_at))
        plan.transfer_events.append(record)
        if record["event_type"] in CREATING_EVENT_TYPES:
            key = (tenant_id, record["transfer_id"])
            if key in plan.created_transfers:
                raise InvariantViolationError(
                    f"tenant {tenant_id!r}: transfer {record['transfer_id']!r} created twice "
                    f"in one batch (sequence {sequence})"
                )
            plan.created_transfers.add(key)
    return plan


def note_sequence(plan: BatchPlan, record: EventRecord) -> None:
    tenant_id, sequence = record["tenant_id"], record["sequence"]
    run = plan.tenant_runs.get(tenant_id)
    if run is None:
        plan.tenant_runs[tenant_id] = TenantRun(
            tenant_id=tenant_id,
            first_sequence=sequence,
            first_effective_at_us=record["effective_at_us"],
            first_prev_hash=record["prev_hash"],
            last_sequence=sequence,
            last_hash=record["hash"],
            last_effective_at_us=record["effective_at_us"],
        )
        return
    if sequence != run.last_sequence + 1:
        raise InvariantViolationError(
            f"tenant {tenant_id!r}: sequence {sequence} follows "
            f"{run.last_sequence} in one batch (gap or repeat)"
        )
    if record["prev_hash"] != run.last_hash:
        raise InvariantViolationError(
            f"tenant {tenant_id!r}: sequence {sequence} does not chain onto "
            f"sequence {run.last_sequence} (prev_hash differs)"
        )
    if record["effective_at_us"] < run.last_effective_at_us:
        raise InvariantViolationError(
            f"tenant {tenant_id!r}: sequence {sequence} goes back in time "
            f"({record['effective_at_us']} < {run.last_effective_at_us} us)"
        )
    run.last_sequence = sequence
    run.last_hash = record["hash"]
    run.last_effective_at_us = record["effective_at_us"]


def account_row(record: AccountOpenedRecord, opened_at: datetime) -> AccountRow:
    return (
        record["tenant_id"],
        record["account_id"],
        record["currency"],
        record["asset_scale"],
        record["debits_must_not_exceed_credits"],
        record["credits_must_not_exceed_debits"],
        record["overdraft_limit"],
        record["sequence"],
        opened_at,
    )


def postings(record: MoneyRecord) -> tuple[tuple[str, int], ...]:
    """(kind, amount) of each posting a money event makes on both of its accounts."""
    if record["event_type"] == "TransferPosted":
        return ((KIND_POSTED, record["amount"]),)
    if record["event_type"] == "TransferPending":
        return ((KIND_PENDING, record["amount"]),)
    if record["event_type"] == "PendingPosted":
        return ((KIND_POSTED, record["amount"]), (KIND_RELEASED, record["pending_amount"]))
    return ((KIND_RELEASED, record["amount"]),)


def entry_rows(record: MoneyRecord, effective_at: datetime) -> list[EntryRow]:
    """The journal rows of a money event: per side and kind, with the balances after it."""
    after = {balance["account_id"]: balance for balance in record["balances"]}
    tenant_id, sequence = record["tenant_id"], record["sequence"]
    kinds = postings(record)
    rows: list[EntryRow] = []
    for side, account_id in (
        ("debit", record["debit_account_id"]),
        ("credit", record["credit_account_id"]),
    ):
        balance = after.get(account_id)
        if balance is None:
            raise InvariantViolationError(
                f"tenant {tenant_id!r}: event {sequence} has no balance after for "
                f"{side} account {account_id!r}"
            )
        for kind, amount in kinds:
            rows.append(
                (
                    tenant_id,
                    account_id,
                    sequence,
                    kind,
                    side,
                    record["transfer_id"],
                    record["event_type"],
                    record["currency"],
                    amount,
                    balance["debits_posted"],
                    balance["credits_posted"],
                    balance["debits_pending"],
                    balance["credits_pending"],
                    effective_at,
                )
            )
    return rows


def fold_transfers(
    known: Mapping[tuple[str, str], TransferRow], records: Iterable[MoneyRecord]
) -> dict[tuple[str, str], TransferRow]:
    """The final state of every transfer the events touch, starting from ``known`` (read from
    the table). Returns only touched transfers. Raises ``InvariantViolationError``."""
    state = dict(known)
    touched: dict[tuple[str, str], TransferRow] = {}
    for record in records:
        if record["event_type"] == "TransferPosted" or record["event_type"] == "TransferPending":
            row = created_transfer(record)
            if row.key in state:
                raise InvariantViolationError(
                    f"tenant {record['tenant_id']!r}: transfer {record['transfer_id']!r} already "
                    f"exists (sequence {record['sequence']})"
                )
            state[row.key] = touched[row.key] = row
            if record["event_type"] == "TransferPosted" and record["reverses"] is not None:
                target = reversed_transfer(state, record, record["reverses"])
                state[target.key] = touched[target.key] = target
        else:
            row = finalized_transfer(state, record)
            state[row.key] = touched[row.key] = row
    return touched


def created_transfer(record: TransferPostedRecord | TransferPendingRecord) -> TransferRow:
    at = to_datetime(record["effective_at_us"])
    if record["event_type"] == "TransferPosted":
        return TransferRow(
            record["tenant_id"],
            record["transfer_id"],
            record["debit_account_id"],
            record["credit_account_id"],
            record["currency"],
            record["amount"],
            False,  # pending
            STATUS_POSTED,
            record["amount"],  # amount_posted
            0,  # amount_reversed
            record["reverses"],
            None,  # expires_at
            record["sequence"],  # created_sequence
            record["sequence"],  # last_sequence
            at,
            at,
        )
    expires_at_us = record["expires_at_us"]
    return TransferRow(
        record["tenant_id"],
        record["transfer_id"],
        record["debit_account_id"],
        record["credit_account_id"],
        record["currency"],
        record["amount"],
        True,  # pending
        STATUS_PENDING,
        0,  # amount_posted
        0,  # amount_reversed
        None,  # reverses
        None if expires_at_us is None else to_datetime(expires_at_us),
        record["sequence"],  # created_sequence
        record["sequence"],  # last_sequence
        at,
        at,
    )


def reversed_transfer(
    state: Mapping[tuple[str, str], TransferRow], record: TransferPostedRecord, target_id: str
) -> TransferRow:
    target = state.get((record["tenant_id"], target_id))
    if target is None or target.status != STATUS_POSTED:
        raise InvariantViolationError(
            f"tenant {record['tenant_id']!r}: transfer {record['transfer_id']!r} (sequence "
            f"{record['sequence']}) reverses {target_id!r}, which is not a posted transfer here"
        )
    return target._replace(
        amount_reversed=target.amount_reversed + record["amount"],
        last_sequence=record["sequence"],
        updated_at=to_datetime(record["effective_at_us"]),
    )


def finalized_transfer(
    state: Mapping[tuple[str, str], TransferRow], record: FinalizingRecord
) -> TransferRow:
    current = state.get((record["tenant_id"], record["transfer_id"]))
    if current is None or current.status != STATUS_PENDING:
        found = "missing" if current is None else current.status
        raise InvariantViolationError(
            f"tenant {record['tenant_id']!r}: {record['event_type']} (sequence "
            f"{record['sequence']}) for transfer {record['transfer_id']!r}, which is {found}"
        )
    return current._replace(
        status=FINAL_STATUS[record["event_type"]],
        amount_posted=record["amount"] if record["event_type"] == "PendingPosted" else 0,
        last_sequence=record["sequence"],
        updated_at=to_datetime(record["effective_at_us"]),
    )
