"""Pure planning of one projection batch: ledger events in, table rows out.

No I/O here: the sink reads records, decodes them into event records
(``projections.event_records``: the Avro fields as a dict, no model objects), hands them to
``plan_records`` and writes the rows the plan holds in one database transaction. ``plan_batch``
does the same for model events (tests, the benchmark).

A tenant's next record must continue its chain: on the tenant's own partition, sequence = the
previous + 1, ``prev_hash`` = the previous hash, not effective before the previous event, and
it must apply (a money event names both accounts in its balances-after; a transfer is created
once and only moves pending → posted | voided | expired, once). The previous link is the one
planned earlier in the batch, or the stored head (``head_problems``, checked by
``projections.store`` inside the write transaction). A record that does not continue is not a
crash: its tenant is **quarantined** at it (``Quarantine``), neither it nor any later record of
that tenant is projected, and every other tenant goes on (decision 0019). Only an operator's
release (``PlanContext.releases``) changes that, for records already in the log when it was
given.

Rows are plain tuples in the column order of the ``COPY``/``unnest`` statements in
``projections.store``, so no per-row object survives the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

from ledger.effects import (
    CREATED_STATUS,
    FINAL_STATUS,
    TRANSACTION_EVENT_TYPES,
    TRANSACTION_MEANING,
    PostingKind,
    amount_posted_after,
    next_status,
    reversed_total,
    reversible,
)
from ledger.effects import (
    postings as event_postings,
)
from projections.event_records import (
    AccountOpenedRecord,
    EventRecord,
    MoneyRecord,
    MonitorEventRecord,
    PendingExpiredRecord,
    PendingPostedRecord,
    PendingVoidedRecord,
    TransactionEventRecord,
    TransferPendingRecord,
    TransferPostedRecord,
    event_record,
)
from schemas.event_time import to_datetime as event_time_to_datetime
from schemas.keys import command_key, partition_for
from schemas.model import GENESIS_HASH, Event, TransferStatus
from streamledger.errors import InvariantViolationError

FinalizingRecord = PendingPostedRecord | PendingVoidedRecord | PendingExpiredRecord
MovingRecord = MoneyRecord | TransactionEventRecord  # an event that moves money

# What each event does to balances and to its transfer's status is ledger.effects (the core's
# fold uses the same definition); rows hold TransferStatus / PostingKind values as text.
CREATING_EVENT_TYPES = frozenset(CREATED_STATUS)
# events of balance monitors (schemas v1.5): in the chain, no journal, transfer or balance change
MONITOR_EVENT_TYPES = frozenset({"MonitorCreated", "MonitorDeleted"})

# (tenant_id, monitor_id, account_id, field, operator, threshold, metadata, created_sequence,
#  created_at): a live balance monitor (migration 0010)
MonitorRow = tuple[str, str, str, str, str, int, dict[str, str], int, datetime]
# (tenant_id, account_id, currency, asset_scale, debits_must_not_exceed_credits,
#  credits_must_not_exceed_debits, overdraft_limit, opened_sequence, opened_at, metadata)
AccountRow = tuple[str, str, str, int, bool, bool, int | None, int, datetime, dict[str, str]]
# (tenant_id, account_id, debits_posted, credits_posted, debits_pending, credits_pending,
#  last_sequence, updated_at)
BalanceRow = tuple[str, str, int, int, int, int, int, datetime]
# (tenant_id, account_id, sequence, kind, side, transfer_id, event_type, currency, amount,
#  debits_posted_after, credits_posted_after, debits_pending_after, credits_pending_after,
#  effective_at, actor)
EntryRow = tuple[str, str, int, str, str, str, str, str, int, int, int, int, int, datetime, str]
# (tenant_id, sequence, hash, effective_at, actor): one link of a tenant's hash chain per event
# (actor since contract v1.7, migration 0014: who issued the event's command)
ChainRow = tuple[str, int, bytes, datetime, str]
# (tenant_id, key, value, created/opened sequence, transfer/account id): one metadata entry of a
# transfer or an account as its search index holds it (migration 0009)
MetadataRow = tuple[str, str, str, int, str]
# (tenant_id, transaction_id, status, last_sequence, updated_at): a transaction created before
# the batch that the batch ends (posted, voided or expired)
TransactionChangeRow = tuple[str, str, str, int, datetime]

# Per event, its effective time is needed as a datetime by its rows (add_rows) and again by
# the fold of the transfer it creates or changes: ``to_datetime`` is ~2 µs on this machine
# (bench/README.md, "Projection write path"), so the conversions are kept in a bounded cache,
# emptied when full (like the Avro readers' string cache). Two batches of the default size fit
# (the writer thread folds one while the next is planned): at most ~3.8 MiB (traced).
EFFECTIVE_TIMES_CACHED_MAX = 32_768
_effective_times: dict[int, datetime] = {}
# A tenant's home partition (murmur2 of its key) per (tenant, partition count), bounded alike.
HOME_PARTITIONS_CACHED_MAX = 65_536
_home_partitions: dict[tuple[str, int], int] = {}
# The ``entries.kind`` text of each posting kind (an enum's ``.value`` is a descriptor call).
KIND_TEXT: dict[PostingKind, str] = {kind: kind.value for kind in PostingKind}
# A transfer's status as the ``status`` column holds it, and back (``TransferStatus(text)`` is
# an enum lookup by value, several times a dict's cost).
STATUS_TEXT: dict[TransferStatus, str] = {status: status.value for status in TransferStatus}
STATUS_BY_TEXT: dict[str, TransferStatus] = {status.value: status for status in TransferStatus}


def to_datetime(microseconds: int) -> datetime:
    """``schemas.event_time.to_datetime``, each value converted once while it stays cached."""
    moment = _effective_times.get(microseconds)
    if moment is None:
        if len(_effective_times) >= EFFECTIVE_TIMES_CACHED_MAX:
            _effective_times.clear()
        moment = _effective_times[microseconds] = event_time_to_datetime(microseconds)
    return moment


def home_partition_of(tenant_id: str, partitions: int) -> int:
    """``partition_for(command_key(tenant_id), partitions)``, computed once per tenant while it
    stays cached."""
    key = (tenant_id, partitions)
    home = _home_partitions.get(key)
    if home is None:
        if len(_home_partitions) >= HOME_PARTITIONS_CACHED_MAX:
            _home_partitions.clear()
        home = _home_partitions[key] = partition_for(command_key(tenant_id), partitions)
    return home


# A multi-leg transaction's posting i is projected as the transfer ``{transaction_id}/{i}``
# (decision 0042): no real id contains "/" (schemas.limits.ENTITY_ID_PATTERN).
POSTING_ID_SEPARATOR = "/"
# The fields every event has, copied onto each posting of a transaction event.
HEADER_FIELDS = (
    "tenant_id",
    "sequence",
    "event_id",
    "idempotency_key",
    "effective_at_us",
    "balances",
    "prev_hash",
    "hash",
    "metadata",  # since schemas v1.4: a posting's transfer row carries its transaction's
    "actor",  # since contract v1.7: a posting's journal rows carry its transaction's
)


def posting_transfer_id(transaction_id: str, index: int) -> str:
    """The id of the ``transfers`` row of a transaction's posting ``index`` (from 0)."""
    return f"{transaction_id}{POSTING_ID_SEPARATOR}{index}"


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
    metadata: dict[str, str]  # the creating command's (migration 0009); never changes

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.transfer_id)

    def as_tuple(self) -> tuple[object, ...]:
        return self


class TransactionRow(NamedTuple):
    """A transaction in the column order of the ``transactions`` table (migration 0008); its
    postings are the transfers ``posting_transfer_id(transaction_id, i)``."""

    tenant_id: str
    transaction_id: str
    posting_count: int
    currencies: list[str]  # each currency once, in first-posting order
    pending: bool
    status: str
    reverses: str | None
    expires_at: datetime | None
    created_sequence: int
    last_sequence: int
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str]  # the PostTransaction's (migration 0009)


class EventCannotApplyError(InvariantViolationError):
    """One event of one tenant cannot apply (a transfer created twice, a finalization of a transfer
    that is not pending, a money event without its balances-after). The projection quarantines
    that tenant at that event instead of stopping; ``position`` is the event's place in the
    records ``fold_transfers`` was given (set by it)."""

    def __init__(self, tenant_id: str, sequence: int, message: str) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.sequence = sequence
        self.position = -1


REASON_WRONG_PARTITION = "wrong_partition"
REASON_SEQUENCE_REPEAT = "sequence_repeat"
REASON_SEQUENCE_GAP = "sequence_gap"
REASON_CHAIN_BROKEN = "chain_broken"
REASON_TIME_WENT_BACK = "time_went_back"
REASON_FOLD_FAILED = "fold_failed"

Location = tuple[int, int]  # (partition, offset) of a record in ledger.events
NO_LOCATION: Location = (-1, -1)  # model events planned without a log (tests, the benchmark)


@dataclass(frozen=True, slots=True)
class Quarantine:
    """The first record of a tenant that did not continue its chain, and why. From ``index`` (its
    place in the batch) on, none of the tenant's records is projected."""

    tenant_id: str
    reason: str
    detail: str
    index: int
    partition: int
    offset: int
    sequence: int


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A tenant's projected head as ``tenant_heads`` holds it (``sequence`` 0: none yet)."""

    sequence: int
    hash: bytes
    effective_at_us: int | None


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a batch is planned against, beyond its own records.

    ``partitions``: the events topic's partition count; a tenant's events belong on
    ``partition_for(tenant)`` (``None``: not checked, for model events without a log).
    ``held``: per tenant, the batch index from which its records are held back (0: quarantined
    before this batch). ``releases``: per tenant, per partition, the offset before which an
    operator released its records (``tenant_releases``; decision 0019).
    """

    partitions: int | None = None
    held: Mapping[str, int] = field(default_factory=dict)
    releases: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def released(self, tenant_id: str, location: Location) -> bool:
        partition, offset = location
        before = self.releases.get(tenant_id, {}).get(partition)
        return before is not None and offset < before

    def home_partition(self, tenant_id: str) -> int | None:
        if self.partitions is None:
            return None
        return home_partition_of(tenant_id, self.partitions)


@dataclass(slots=True)
class TenantRun:
    """The consecutive sequences one batch holds for one tenant (the last ones move as the
    batch is planned)."""

    tenant_id: str
    first_index: int
    first_location: Location
    first_sequence: int
    first_effective_at_us: int
    first_prev_hash: bytes
    last_sequence: int
    last_hash: bytes
    last_effective_at_us: int


@dataclass(slots=True)
class BatchPlan:
    """Everything one database transaction writes, except the transfers' final states.

    ``quarantines``: tenants whose chain broke inside this batch (``context.held`` holds the ones
    known before it); ``held_events``: per tenant, records not projected because the tenant is
    quarantined (the offending one included); ``excluded_events``: records an operator's release
    took out of the ledger (on a partition that is not their tenant's)."""

    context: PlanContext = field(default_factory=PlanContext)
    tenants: set[str] = field(default_factory=set)  # every tenant the batch's records name
    tenant_runs: dict[str, TenantRun] = field(default_factory=dict)
    quarantines: dict[str, Quarantine] = field(default_factory=dict)
    held_events: dict[str, int] = field(default_factory=dict)
    excluded_events: int = 0
    accounts: list[AccountRow] = field(default_factory=list)
    opened_accounts: set[tuple[str, str]] = field(default_factory=set)
    balances: dict[tuple[str, str], BalanceRow] = field(default_factory=dict)
    entries: list[EntryRow] = field(default_factory=list)
    chain: list[ChainRow] = field(default_factory=list)
    account_metadata: list[MetadataRow] = field(default_factory=list)
    transfer_metadata: list[MetadataRow] = field(default_factory=list)
    transaction_metadata: list[MetadataRow] = field(default_factory=list)  # migration 0013
    transfer_events: list[MoneyRecord] = field(default_factory=list)
    transfer_indexes: list[int] = field(default_factory=list)  # batch index of each of those
    transfer_locations: list[Location] = field(default_factory=list)  # and where it was read
    created_transfers: set[tuple[str, str]] = field(default_factory=set)
    # transactions the batch creates (as the batch leaves them) and ends (created before it)
    transactions: dict[tuple[str, str], TransactionRow] = field(default_factory=dict)
    transaction_changes: dict[tuple[str, str], TransactionChangeRow] = field(default_factory=dict)
    # balance monitors the batch creates (as the batch leaves them), and deletes of monitors
    # created before it (migration 0010): deleted first, so an id used again is inserted anew
    monitors: dict[tuple[str, str], MonitorRow] = field(default_factory=dict)
    deleted_monitors: set[tuple[str, str]] = field(default_factory=set)
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


def plan_records(
    records: Iterable[EventRecord],
    locations: Sequence[Location] | None = None,
    context: PlanContext | None = None,
) -> BatchPlan:
    """The rows of a batch of event records in log order (``locations[i]`` is where
    ``records[i]`` was read; ``None``: model events without a log). A tenant whose next record
    does not continue its chain is quarantined at that record: neither it nor any later record
    of that tenant is planned; every other tenant is planned as usual."""
    plan = BatchPlan(context=context or PlanContext())
    held = plan.context.held
    for index, record in enumerate(records):
        tenant_id = record["tenant_id"]
        plan.tenants.add(tenant_id)
        if tenant_id in plan.quarantines or index >= held.get(tenant_id, index + 1):
            plan.held_events[tenant_id] = plan.held_events.get(tenant_id, 0) + 1
            continue
        location = NO_LOCATION if locations is None else locations[index]
        problem = chain_problem(plan, record, location)
        if problem == EXCLUDED:
            plan.excluded_events += 1
            continue
        if problem is None:
            problem = add_rows(plan, record, index, location)
        if problem is not None:
            reason, detail = problem
            plan.quarantines[tenant_id] = quarantine_at(record, index, location, reason, detail)
            plan.held_events[tenant_id] = plan.held_events.get(tenant_id, 0) + 1
    return plan


def quarantine_at(
    record: EventRecord, index: int, location: Location, reason: str, detail: str
) -> Quarantine:
    partition, offset = location
    tenant_id, sequence = record["tenant_id"], record["sequence"]
    return Quarantine(tenant_id, reason, detail, index, partition, offset, sequence)


Problem = tuple[str, str]  # (reason, detail)
EXCLUDED: Problem = ("excluded", "released by an operator: not this tenant's partition")


def chain_problem(plan: BatchPlan, record: EventRecord, location: Location) -> Problem | None:
    """Why ``record`` does not continue its tenant's run in this batch (``EXCLUDED``: an
    operator's release takes it out of the ledger), or ``None``."""
    context, tenant_id = plan.context, record["tenant_id"]
    home = context.home_partition(tenant_id)
    if home is not None and location[0] != home:
        if context.released(tenant_id, location):
            return EXCLUDED
        return (
            REASON_WRONG_PARTITION,
            f"sequence {record['sequence']} is on partition {location[0]}; "
            f"tenant {tenant_id!r} belongs on partition {home}",
        )
    run = plan.tenant_runs.get(tenant_id)
    if run is None:
        return None
    if (
        record["sequence"] == run.last_sequence + 1
        and record["prev_hash"] == run.last_hash
        and record["effective_at_us"] >= run.last_effective_at_us
    ):
        return None  # the usual case, without the objects continuation_problem needs to say why
    return continuation_problem(
        record["sequence"],
        record["prev_hash"],
        record["effective_at_us"],
        StoredHead(run.last_sequence, run.last_hash, run.last_effective_at_us),
        released=context.released(tenant_id, location),
    )


def continuation_problem(
    sequence: int,
    prev_hash: bytes,
    effective_at_us: int,
    previous: StoredHead,
    *,
    released: bool,
) -> Problem | None:
    """Why (sequence, prev_hash, effective time) is not the next link after ``previous``, or
    ``None``. A released record may go back in time (decision 0019)."""
    last_sequence = previous.sequence
    if sequence != last_sequence + 1:
        reason = REASON_SEQUENCE_REPEAT if sequence <= last_sequence else REASON_SEQUENCE_GAP
        kind = "repeats" if sequence <= last_sequence else "leaves a gap after"
        return reason, f"sequence {sequence} {kind} the projected sequence {last_sequence}"
    if prev_hash != previous.hash:
        return (
            REASON_CHAIN_BROKEN,
            f"sequence {sequence}: prev_hash is not the hash of sequence {last_sequence}",
        )
    last_at_us = previous.effective_at_us
    if last_at_us is not None and effective_at_us < last_at_us and not released:
        return (
            REASON_TIME_WENT_BACK,
            f"sequence {sequence} is effective before sequence {last_sequence} "
            f"({effective_at_us} < {last_at_us} us)",
        )
    return None


def head_problems(plan: BatchPlan, heads: Mapping[str, StoredHead]) -> dict[str, Quarantine]:
    """The tenants whose first record in ``plan`` does not continue their stored head."""
    found: dict[str, Quarantine] = {}
    for tenant_id, run in plan.tenant_runs.items():
        head = heads.get(tenant_id, StoredHead(0, GENESIS_HASH, None))
        problem = continuation_problem(
            run.first_sequence,
            run.first_prev_hash,
            run.first_effective_at_us,
            head,
            released=plan.context.released(tenant_id, run.first_location),
        )
        if problem is not None:
            reason, detail = problem
            partition, offset = run.first_location
            found[tenant_id] = Quarantine(
                tenant_id, reason, detail, run.first_index, partition, offset, run.first_sequence
            )
    return found


def add_rows(
    plan: BatchPlan, record: EventRecord, index: int, location: Location
) -> Problem | None:
    """Plan the rows of one record that continues its chain, or say why it cannot apply."""
    tenant_id, sequence = record["tenant_id"], record["sequence"]
    effective_at_us = record["effective_at_us"]
    effective_at = to_datetime(effective_at_us)
    if record["event_type"] in MONITOR_EVENT_TYPES:
        # moves no money: no journal, no transfer
        note_monitor(plan, cast(MonitorEventRecord, record), effective_at)
    elif record["event_type"] == "AccountOpened":
        key = (tenant_id, record["account_id"])
        if key in plan.opened_accounts:
            return REASON_FOLD_FAILED, f"sequence {sequence} opens {key[1]!r} a second time"
        plan.opened_accounts.add(key)
        plan.accounts.append(account_row(record, effective_at))
        if record["metadata"]:
            plan.account_metadata += metadata_rows(record, record["account_id"])
    else:
        money = cast(MovingRecord, record)
        problem = add_money_rows(plan, money, index, location, effective_at)
        if problem is not None:
            return problem
    note_sequence(plan, record, index, location)
    plan.chain.append((tenant_id, sequence, record["hash"], effective_at, record["actor"]))
    plan.event_count += 1
    plan.last_effective_at_us = max(plan.last_effective_at_us, effective_at_us)
    for balance in record["balances"]:
        account_id = balance["account_id"]
        plan.balances[(tenant_id, account_id)] = (
            tenant_id,
            account_id,
            balance["debits_posted"],
            balance["credits_posted"],
            balance["debits_pending"],
            balance["credits_pending"],
            sequence,
            effective_at,
        )
    return None


def add_money_rows(
    plan: BatchPlan,
    record: MovingRecord,
    index: int,
    location: Location,
    effective_at: datetime,
) -> Problem | None:
    """The journal rows and transfer events of a money or transaction event (``add_rows``)."""
    try:
        if record["event_type"] in TRANSACTION_EVENT_TYPES:
            transaction = cast(TransactionEventRecord, record)
            money = posting_records(transaction)
            entries = transaction_entry_rows(transaction, money, effective_at)
        else:
            money = [cast(MoneyRecord, record)]
            entries = entry_rows(money[0], effective_at)
    except EventCannotApplyError as exc:
        return REASON_FOLD_FAILED, str(exc)
    problem = note_created_transfers(plan, money)
    if problem is None and record["event_type"] in TRANSACTION_EVENT_TYPES:
        problem = note_transaction(plan, cast(TransactionEventRecord, record), effective_at)
    if problem is not None:
        return problem
    plan.entries.extend(entries)
    for created in money:
        if created["metadata"] and created["event_type"] in CREATING_EVENT_TYPES:
            plan.transfer_metadata += metadata_rows(created, created["transfer_id"])
    plan.transfer_events.extend(money)
    plan.transfer_indexes.extend([index] * len(money))
    plan.transfer_locations.extend([location] * len(money))
    return None


def note_monitor(plan: BatchPlan, record: MonitorEventRecord, effective_at: datetime) -> None:
    """The ``monitors`` row a ``MonitorCreated`` inserts, or the one a ``MonitorDeleted``
    removes (from the batch's own creations, else from the table)."""
    key = (record["tenant_id"], record["monitor_id"])
    if record["event_type"] == "MonitorDeleted":
        if plan.monitors.pop(key, None) is None:
            plan.deleted_monitors.add(key)
        return
    plan.monitors[key] = (
        *key,
        record["account_id"],
        record["field"],
        record["operator"],
        record["threshold"],
        record["metadata"],
        record["sequence"],
        effective_at,
    )


def note_created_transfers(plan: BatchPlan, records: Sequence[MoneyRecord]) -> Problem | None:
    """Remember the transfers ``records`` create (a transaction's postings included), or say
    which one the batch already created."""
    created = [
        (record["tenant_id"], record["transfer_id"])
        for record in records
        if record["event_type"] in CREATING_EVENT_TYPES
    ]
    for key in created:
        if key in plan.created_transfers:
            return REASON_FOLD_FAILED, (
                f"transfer {key[1]!r} created twice (sequence {records[0]['sequence']})"
            )
    plan.created_transfers.update(created)
    return None


def metadata_rows(record: EventRecord, owner_id: str) -> list[MetadataRow]:
    """The search index rows of what ``record`` creates (an account, a transfer or a
    transaction)."""
    tenant_id, sequence = record["tenant_id"], record["sequence"]
    return [
        (tenant_id, key, value, sequence, owner_id) for key, value in record["metadata"].items()
    ]


def note_transaction(
    plan: BatchPlan, record: TransactionEventRecord, effective_at: datetime
) -> Problem | None:
    """The ``transactions`` row a transaction event creates, or the change of one it ends (the
    fold of its postings' transfer rows checks that the change can apply)."""
    key = (record["tenant_id"], record["transaction_id"])
    meaning = TRANSACTION_MEANING[record["event_type"]]
    if meaning in CREATING_EVENT_TYPES:
        if key in plan.transactions:
            return REASON_FOLD_FAILED, (
                f"transaction {key[1]!r} created twice (sequence {record['sequence']})"
            )
        plan.transactions[key] = created_transaction(record, effective_at)
        plan.transaction_metadata += metadata_rows(record, record["transaction_id"])
        return None
    status = FINAL_STATUS[meaning].value
    created = plan.transactions.get(key)
    if created is not None:
        plan.transactions[key] = created._replace(
            status=status, last_sequence=record["sequence"], updated_at=effective_at
        )
    else:
        plan.transaction_changes[key] = (*key, status, record["sequence"], effective_at)
    return None


def created_transaction(record: TransactionEventRecord, at: datetime) -> TransactionRow:
    status = CREATED_STATUS[TRANSACTION_MEANING[record["event_type"]]]
    expires_at_us = (
        record["expires_at_us"] if record["event_type"] == "TransactionPending" else None
    )
    currencies = dict.fromkeys(posting["currency"] for posting in record["postings"])
    return TransactionRow(
        record["tenant_id"],
        record["transaction_id"],
        len(record["postings"]),
        list(currencies),
        status is TransferStatus.PENDING,  # pending
        STATUS_TEXT[status],
        record["reverses"] if record["event_type"] == "TransactionPosted" else None,
        None if expires_at_us is None else to_datetime(expires_at_us),
        record["sequence"],  # created_sequence
        record["sequence"],  # last_sequence
        at,
        at,
        record["metadata"],
    )


def posting_records(record: TransactionEventRecord) -> list[MoneyRecord]:
    """Each posting of a transaction event as the transfer event of the same meaning
    (``ledger.effects.TRANSACTION_MEANING``) of the transfer ``{transaction_id}/{i}``: a
    reversal's posting i reverses the original's posting i, a pending posting's reservation is
    ``pending_amounts[i]``. Raises ``EventCannotApplyError`` for an event with no postings or
    with pending amounts that do not match them."""
    tenant_id, sequence = record["tenant_id"], record["sequence"]
    record_postings = record["postings"]
    meaning = TRANSACTION_MEANING[record["event_type"]]
    pending_amounts = (
        record["pending_amounts"] if record["event_type"] == "TransactionPendingPosted" else None
    )
    if not record_postings or (
        pending_amounts is not None and len(pending_amounts) != len(record_postings)
    ):
        raise EventCannotApplyError(
            tenant_id,
            sequence,
            f"tenant {tenant_id!r}: {record['event_type']} (sequence {sequence}) of "
            f"{record['transaction_id']!r} has {len(record_postings)} postings"
            + ("" if pending_amounts is None else f" and {len(pending_amounts)} pending amounts"),
        )
    header: dict[str, Any] = {name: record[name] for name in HEADER_FIELDS}  # type: ignore[literal-required]
    reverses = record["reverses"] if record["event_type"] == "TransactionPosted" else None
    expires_at_us = (
        record["expires_at_us"] if record["event_type"] == "TransactionPending" else None
    )
    records: list[MoneyRecord] = []
    for index, posting in enumerate(record_postings):
        fields = {
            **header,
            "event_type": meaning,
            "transfer_id": posting_transfer_id(record["transaction_id"], index),
            "debit_account_id": posting["debit_account_id"],
            "credit_account_id": posting["credit_account_id"],
            "amount": posting["amount"],
            "currency": posting["currency"],
        }
        if meaning == "TransferPosted":
            fields["reverses"] = None if reverses is None else posting_transfer_id(reverses, index)
        elif meaning == "TransferPending":
            fields["expires_at_us"] = expires_at_us
        elif meaning == "PendingPosted":
            assert pending_amounts is not None
            fields["pending_amount"] = pending_amounts[index]
        records.append(cast(MoneyRecord, fields))
    return records


def transaction_entry_rows(
    record: TransactionEventRecord, posting_transfers: Sequence[MoneyRecord], effective_at: datetime
) -> list[EntryRow]:
    """The journal rows of a transaction event: its postings' rows under its own event type."""
    return [
        row
        for posting_transfer in posting_transfers
        for row in entry_rows(posting_transfer, effective_at, event_type=record["event_type"])
    ]


def note_sequence(plan: BatchPlan, record: EventRecord, index: int, location: Location) -> None:
    """Move the tenant's run to ``record`` (``chain_problem`` found it continues the run)."""
    tenant_id = record["tenant_id"]
    run = plan.tenant_runs.get(tenant_id)
    if run is None:
        plan.tenant_runs[tenant_id] = TenantRun(
            tenant_id=tenant_id,
            first_index=index,
            first_location=location,
            first_sequence=record["sequence"],
            first_effective_at_us=record["effective_at_us"],
            first_prev_hash=record["prev_hash"],
            last_sequence=record["sequence"],
            last_hash=record["hash"],
            last_effective_at_us=record["effective_at_us"],
        )
        return
    run.last_sequence = record["sequence"]
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
        record["metadata"],
    )


def postings(record: MoneyRecord) -> tuple[tuple[str, int], ...]:
    """(kind, amount) of each posting a money event makes on both of its accounts
    (``ledger.effects.postings``; the kind as the ``entries.kind`` column holds it)."""
    pending_amount = record["pending_amount"] if record["event_type"] == "PendingPosted" else None
    return tuple(
        (KIND_TEXT[kind], amount)
        for kind, amount in event_postings(record["event_type"], record["amount"], pending_amount)
    )


def entry_rows(
    record: MoneyRecord, effective_at: datetime, *, event_type: str | None = None
) -> list[EntryRow]:
    """The journal rows of a money event: per side and kind, with the balances after it
    (``event_type``: the transaction event a posting's record stands for)."""
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
            raise EventCannotApplyError(
                tenant_id,
                sequence,
                f"tenant {tenant_id!r}: event {sequence} has no balance after for "
                f"{side} account {account_id!r}",
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
                    event_type or record["event_type"],
                    record["currency"],
                    amount,
                    balance["debits_posted"],
                    balance["credits_posted"],
                    balance["debits_pending"],
                    balance["credits_pending"],
                    effective_at,
                    record["actor"],
                )
            )
    return rows


def fold_transfers(
    known: Mapping[tuple[str, str], TransferRow], records: Iterable[MoneyRecord]
) -> dict[tuple[str, str], TransferRow]:
    """The final state of every transfer the events touch, starting from ``known`` (read from
    the table). Returns only touched transfers. Raises ``EventCannotApplyError`` naming the
    first record that cannot apply (``position``: its place in ``records``)."""
    state = dict(known)
    touched: dict[tuple[str, str], TransferRow] = {}
    for position, record in enumerate(records):
        try:
            fold_transfer(state, touched, record)
        except EventCannotApplyError as exc:
            exc.position = position
            raise
    return touched


def fold_transfer(
    state: dict[tuple[str, str], TransferRow],
    touched: dict[tuple[str, str], TransferRow],
    record: MoneyRecord,
) -> None:
    if record["event_type"] == "TransferPosted" or record["event_type"] == "TransferPending":
        row = created_transfer(record)
        if row.key in state:
            raise cannot_apply(
                record,
                f"tenant {record['tenant_id']!r}: transfer {record['transfer_id']!r} already "
                f"exists (sequence {record['sequence']})",
            )
        state[row.key] = touched[row.key] = row
        if record["event_type"] == "TransferPosted" and record["reverses"] is not None:
            target = reversed_transfer(state, record, record["reverses"])
            state[target.key] = touched[target.key] = target
    else:
        row = finalized_transfer(state, record)
        state[row.key] = touched[row.key] = row


def cannot_apply(record: EventRecord, message: str) -> EventCannotApplyError:
    return EventCannotApplyError(record["tenant_id"], record["sequence"], message)


def created_transfer(record: TransferPostedRecord | TransferPendingRecord) -> TransferRow:
    at = to_datetime(record["effective_at_us"])
    event_type = record["event_type"]
    status = CREATED_STATUS[event_type]
    expires_at_us = record["expires_at_us"] if record["event_type"] == "TransferPending" else None
    return TransferRow(
        record["tenant_id"],
        record["transfer_id"],
        record["debit_account_id"],
        record["credit_account_id"],
        record["currency"],
        record["amount"],
        status is TransferStatus.PENDING,  # pending
        STATUS_TEXT[status],
        amount_posted_after(event_type, record["amount"]),  # amount_posted
        0,  # amount_reversed
        record["reverses"] if record["event_type"] == "TransferPosted" else None,
        None if expires_at_us is None else to_datetime(expires_at_us),
        record["sequence"],  # created_sequence
        record["sequence"],  # last_sequence
        at,
        at,
        record["metadata"],
    )


def reversed_transfer(
    state: Mapping[tuple[str, str], TransferRow], record: TransferPostedRecord, target_id: str
) -> TransferRow:
    target = state.get((record["tenant_id"], target_id))
    if target is None or not reversible(STATUS_BY_TEXT[target.status]):
        raise cannot_apply(
            record,
            f"tenant {record['tenant_id']!r}: transfer {record['transfer_id']!r} (sequence "
            f"{record['sequence']}) reverses {target_id!r}, which is not a posted transfer here",
        )
    total = reversed_total(target.amount_posted, target.amount_reversed, record["amount"])
    if total is None:
        raise cannot_apply(
            record,
            f"tenant {record['tenant_id']!r}: transfer {record['transfer_id']!r} (sequence "
            f"{record['sequence']}) reverses more of {target_id!r} than was posted",
        )
    return target._replace(
        amount_reversed=total,
        last_sequence=record["sequence"],
        updated_at=to_datetime(record["effective_at_us"]),
    )


def finalized_transfer(
    state: Mapping[tuple[str, str], TransferRow], record: FinalizingRecord
) -> TransferRow:
    current = state.get((record["tenant_id"], record["transfer_id"]))
    status = (
        None
        if current is None
        else next_status(record["event_type"], STATUS_BY_TEXT[current.status])
    )
    if current is None or status is None:
        found = "missing" if current is None else current.status
        raise cannot_apply(
            record,
            f"tenant {record['tenant_id']!r}: {record['event_type']} (sequence "
            f"{record['sequence']}) for transfer {record['transfer_id']!r}, which is {found}",
        )
    if record["event_type"] == "PendingPosted" and not 0 < record["amount"] <= current.amount:
        raise cannot_apply(
            record,
            f"tenant {record['tenant_id']!r}: PendingPosted (sequence {record['sequence']}) "
            f"posts {record['amount']} of the {current.amount} reserved by "
            f"{record['transfer_id']!r}",
        )
    return current._replace(
        status=STATUS_TEXT[status],
        amount_posted=amount_posted_after(record["event_type"], record["amount"]),
        last_sequence=record["sequence"],
        updated_at=to_datetime(record["effective_at_us"]),
    )
