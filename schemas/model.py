"""The ledger's records as Python values: the contract of ``schemas/*.avsc`` in frozen dataclasses.

This module is pure (no I/O, no clock) and is shared by the producers, the pure ledger core,
the processor loop and the projections. ``schemas.codec`` turns these values into Avro
single-object bytes and back; ``schemas.limits`` holds the documented character sets and
lengths (checked by ``producers`` before sending and by the core before deciding).

Money is always an ``int`` count of minor units inside the signed 64-bit range. Times are
``int`` microseconds since the Unix epoch (Avro ``timestamp-micros``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
HASH_BYTES = 32
GENESIS_HASH = bytes(HASH_BYTES)  # the prev_hash of a tenant's first event
# Since v1.7 (decision 0093): the ``actor`` of an event caused by time, not by a command (an
# expiry), and of an event whose command carried no verified signature.
SYSTEM_ACTOR = "system"
UNSIGNED_ACTOR = ""


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandHeader:
    """Fields every command carries."""

    tenant_id: str
    idempotency_key: str
    submitted_at_us: int
    metadata: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs; bounded in limits


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAccount(CommandHeader):
    account_id: str
    currency: str
    asset_scale: int
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    overdraft_limit: int | None = None  # with one flag: how far past it the account may go


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer(CommandHeader):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    pending: bool = False
    pending_timeout_s: int | None = None  # only with pending; None = never expires
    reverses: str | None = None  # the transfer_id of a posted transfer this one corrects


@dataclass(frozen=True, slots=True, kw_only=True)
class PostPending(CommandHeader):
    transfer_id: str  # the pending transfer
    amount: int | None = None  # None = the full pending amount; else a partial amount > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VoidPending(CommandHeader):
    transfer_id: str  # the pending transfer


@dataclass(frozen=True, slots=True, kw_only=True)
class Posting:
    """One leg of a transaction: ``amount`` from the debit account to the credit account."""

    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PostTransaction(CommandHeader):
    """Several postings, all or nothing, in one event (schemas v1.3, issue 16)."""

    transaction_id: str  # unique in the tenant among transfer and transaction ids
    postings: tuple[Posting, ...]  # 1..postings_max, in order
    pending: bool = False
    pending_timeout_s: int | None = None  # only with pending; None = never expires
    reverses: str | None = None  # the transaction_id of a posted transaction this one corrects


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateMonitor(CommandHeader):
    """A balance monitor on one account (schemas v1.5, decision 0058); ``metadata`` is the
    monitor's."""

    monitor_id: str  # unique among the tenant's live monitors
    account_id: str
    field: str  # one of limits.MONITOR_FIELDS
    operator: str  # one of limits.MONITOR_OPERATORS
    threshold: int  # minor units, may be negative


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteMonitor(CommandHeader):
    monitor_id: str


Command = (
    OpenAccount
    | Transfer
    | PostPending
    | VoidPending
    | PostTransaction
    | CreateMonitor
    | DeleteMonitor
)
COMMAND_TYPES: tuple[type[Command], ...] = (
    OpenAccount,
    Transfer,
    PostPending,
    VoidPending,
    PostTransaction,
    CreateMonitor,
    DeleteMonitor,
)


# --------------------------------------------------------------------------- balances


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountBalance:
    """An account's four counters after an event."""

    account_id: str
    currency: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class EventHeader:
    """Fields every event carries. ``event_id`` is ``f"{tenant_id}:{sequence}"``."""

    tenant_id: str
    sequence: int  # gapless per tenant, starting at 1
    event_id: str
    idempotency_key: str | None  # None only for PendingExpired (caused by stream time)
    effective_at_us: int  # the causing record's timestamp (never the wall clock)
    balances: tuple[AccountBalance, ...]  # the touched accounts after the event
    prev_hash: bytes
    hash: bytes
    # Since v1.4 (decision 0055): the causing command's metadata, sorted (key, value) pairs; ()
    # for an expiry and for events written before v1.4. In Avro, just before ``actor``.
    metadata: tuple[tuple[str, str], ...] = ()
    # Since v1.7 (issue 21 part 3, decision 0093): who issued the causing command (the verified
    # signing key id); SYSTEM_ACTOR for an expiry; "" for an unsigned command and for events
    # written before v1.7. In Avro, the last field before ``hash``, so inside the hashed bytes.
    actor: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountOpened(EventHeader):
    account_id: str
    currency: str
    asset_scale: int
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPosted(EventHeader):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    reverses: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferPending(EventHeader):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    expires_at_us: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingPosted(EventHeader):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int  # posted now; the rest of the pending amount is released
    pending_amount: int  # the amount that was reserved
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingVoided(EventHeader):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int  # released
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingExpired(EventHeader):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int  # released
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionPosted(EventHeader):
    transaction_id: str
    postings: tuple[Posting, ...]  # every posting, in command order: moved
    reverses: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionPending(EventHeader):
    transaction_id: str
    postings: tuple[Posting, ...]  # every posting, in command order: reserved
    expires_at_us: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionPendingPosted(EventHeader):
    transaction_id: str
    postings: tuple[Posting, ...]  # every posting: the amount posted now
    pending_amounts: tuple[int, ...]  # per posting: the amount that was reserved (released)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionPendingVoided(EventHeader):
    transaction_id: str
    postings: tuple[Posting, ...]  # every posting: the amount released


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionPendingExpired(EventHeader):
    transaction_id: str
    postings: tuple[Posting, ...]  # every posting: the amount released


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorCreated(EventHeader):
    """``balances``: the monitored account's counters (unchanged); ``holds``: the condition on
    them at creation (true also emits a ``MonitorTriggered``)."""

    monitor_id: str
    account_id: str
    field: str
    operator: str
    threshold: int
    holds: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorDeleted(EventHeader):
    monitor_id: str
    account_id: str


Event = (
    AccountOpened
    | TransferPosted
    | TransferPending
    | PendingPosted
    | PendingVoided
    | PendingExpired
    | TransactionPosted
    | TransactionPending
    | TransactionPendingPosted
    | TransactionPendingVoided
    | TransactionPendingExpired
    | MonitorCreated
    | MonitorDeleted
)
EVENT_TYPES: tuple[type[Event], ...] = (
    AccountOpened,
    TransferPosted,
    TransferPending,
    PendingPosted,
    PendingVoided,
    PendingExpired,
    TransactionPosted,
    TransactionPending,
    TransactionPendingPosted,
    TransactionPendingVoided,
    TransactionPendingExpired,
    MonitorCreated,
    MonitorDeleted,
)


# --------------------------------------------------------------------------- outcomes


class RejectReason(enum.Enum):
    """Why a command was rejected, in precedence order: when several apply, the first wins."""

    INVALID_COMMAND = "invalid_command"  # decodable, but breaks the contract's limits
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # same key, different payload
    ACCOUNT_EXISTS = "account_exists"
    TRANSFER_EXISTS = "transfer_exists"
    UNKNOWN_ACCOUNT = "unknown_account"
    CURRENCY_MISMATCH = "currency_mismatch"
    SAME_ACCOUNT = "same_account"
    REVERSAL_TARGET_NOT_FOUND = "reversal_target_not_found"
    REVERSAL_MISMATCH = "reversal_mismatch"
    REVERSAL_EXCEEDS_ORIGINAL = "reversal_exceeds_original"
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_ALREADY_FINAL = "pending_already_final"
    PENDING_EXPIRED = "pending_expired"
    AMOUNT_EXCEEDS_PENDING = "amount_exceeds_pending"
    INSUFFICIENT_FUNDS = "insufficient_funds"  # debits_must_not_exceed_credits (+ overdraft)
    LIMIT_EXCEEDED = "limit_exceeded"  # credits_must_not_exceed_debits (+ overdraft)
    OVERFLOW = "overflow"  # a counter would leave the signed 64-bit range
    # since v1.5, monitor commands only (decision 0058)
    MONITOR_EXISTS = "monitor_exists"
    MONITOR_NOT_FOUND = "monitor_not_found"
    MONITOR_LIMIT_REACHED = "monitor_limit_reached"  # per account or per tenant
    # since v1.6: the tenant is over its command rate in the processor (decision 0083); a reply
    # only (never stored), decided after idempotency and before the business rules
    RATE_LIMITED = "rate_limited"
    # since v1.7: the command's signature is missing or wrong, or its key is not granted for its
    # tenant (decision 0085); a reply only (never stored), decided first, before idempotency
    UNAUTHENTICATED = "unauthenticated"


class OutcomeStatus(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The one outcome of a command, stored in ``ledger.outcomes`` under (tenant, key).

    ``field_fingerprints`` holds an 8-byte hash per meaningful field, concatenated in the
    command type's declared field order (``ledger.FINGERPRINT_FIELDS`` names them),
    so a key reused with another payload can be rejected naming the first field that differs.
    ``fingerprint`` is the SHA-256 over the command type and those field hashes. One ``bytes``
    rather than a list of (name, hash) records: it is written with every outcome and read back
    for every live key on restore, and the names follow from ``command_type``.
    """

    tenant_id: str
    idempotency_key: str
    command_type: str  # the command's type name: "OpenAccount", "Transfer", ...
    fingerprint: bytes
    field_fingerprints: bytes  # FIELD_FINGERPRINT_BYTES per fingerprinted field, in order
    status: OutcomeStatus
    event_sequences: tuple[int, ...] = ()  # accepted: the events it caused
    reason: RejectReason | None = None  # rejected: why
    detail: str = ""  # rejected: human-readable, names the field or account
    decided_at_us: int  # the command record's timestamp
    expires_at_us: int | None = None  # idempotency retention; None = kept forever


# --------------------------------------------------------------------------- state records


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountState:
    """``ledger.balances`` record: an account's counters, limits and last changing sequence."""

    tenant_id: str
    account_id: str
    currency: str
    asset_scale: int
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit: int | None
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    last_sequence: int


class TransferStatus(enum.Enum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferState:
    """``ledger.balances`` record keyed by transfer: what the rules need to know of a transfer."""

    tenant_id: str
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    currency: str
    amount: int  # the amount as created (reserved, for a pending transfer)
    status: TransferStatus
    amount_posted: int  # posted so far
    amount_reversed: int  # reversed so far by transfers that reference it
    reverses: str | None
    expires_at_us: int | None
    last_sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionState:
    """``ledger.balances`` record keyed by transaction: its postings and their lifecycle."""

    tenant_id: str
    transaction_id: str
    postings: tuple[Posting, ...]  # as created (reserved, for a pending transaction)
    status: TransferStatus  # of every posting together
    amounts_posted: tuple[int, ...]  # per posting, posted so far
    amounts_reversed: tuple[int, ...]  # per posting, reversed so far
    reverses: str | None
    expires_at_us: int | None
    last_sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantHead:
    """``ledger.balances`` record keyed by tenant: the tenant's last sequence, hash and effective
    time (the next event of the tenant is never effective earlier)."""

    tenant_id: str
    last_sequence: int
    last_hash: bytes = field(default=GENESIS_HASH)
    last_effective_at_us: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorState:
    """``ledger.balances`` record keyed by monitor (v1.5): its condition and whether it holds
    after the last event evaluated (the edge detector's memory); a tombstone once deleted."""

    tenant_id: str
    monitor_id: str
    account_id: str
    field: str
    operator: str
    threshold: int
    metadata: tuple[tuple[str, str], ...] = ()
    holds: bool
    created_sequence: int
    last_sequence: int  # the creation or the last edge


StateRecord = AccountState | TransferState | TenantHead | TransactionState | MonitorState


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationHeader:
    """A ``ledger.notifications`` record (v1.5, decision 0058): one edge of one monitor, caused
    by the event ``sequence`` (its hash ``event_hash``)."""

    tenant_id: str
    notification_id: str  # f"{tenant_id}:{sequence}:{monitor_id}"
    monitor_id: str
    account_id: str
    currency: str
    field: str
    operator: str
    threshold: int
    value: int  # the field after the event, saturated to the signed 64-bit range
    sequence: int
    event_hash: bytes
    effective_at_us: int
    metadata: tuple[tuple[str, str], ...] = ()  # the monitor's


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorTriggered(NotificationHeader):
    """The monitor's condition became true."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorCleared(NotificationHeader):
    """The monitor's condition became false."""


Notification = MonitorTriggered | MonitorCleared
NOTIFICATION_TYPES: tuple[type[Notification], ...] = (MonitorTriggered, MonitorCleared)


# --------------------------------------------------------------------------- construction speed


def slot_setter(record_type: type[Any], name: str) -> Callable[[Any, Any], None]:
    """The ``__set__`` of the slot that stores ``name`` (declared by the class or a base).

    The typed builders (``schemas._generated_records``, written by
    scripts/generate_record_code.py) store each field of a new record through it, which skips
    the frozen dataclass's ``object.__setattr__`` per field (decision 0034).
    """
    for owner in record_type.__mro__:
        if name in owner.__dict__.get("__slots__", ()):
            setter: Callable[[Any, Any], None] = owner.__dict__[name].__set__
            return setter
    raise AssertionError(f"{record_type.__name__}.{name} is not a slot")


def building_type(record_type: type[Any]) -> type[Any]:
    """A plain mutable class with ``record_type``'s memory layout, to build its records in.

    For a frozen slotted dataclass whose only base is ``object``: the same ``__slots__`` and no
    frozen ``__setattr__``, so a typed builder (decision 0143) stores each field as a plain
    attribute (the generic slot store: no Python-level call per field, a third of a slot
    setter's cost) and then gives the finished object its class, ``record.__class__ =
    record_type``. CPython refuses that assignment (``TypeError``) unless the two classes have
    the same base and the same slots, so a layout that differs cannot be written into; one
    probe object is converted here so that a mismatch fails at import, not on the hot path.
    The object is the builder's alone until it is returned: nobody sees the building class.
    """
    slots = record_type.__dict__.get("__slots__")
    assert record_type.__bases__ == (object,) and slots, record_type
    building = type(f"Building{record_type.__name__}", (), {"__slots__": slots})
    building.__module__ = __name__
    probe: Any = object.__new__(building)
    probe.__class__ = record_type
    return building


RECORD_TYPES: tuple[type[Any], ...] = (
    *COMMAND_TYPES,
    Posting,
    AccountBalance,
    *EVENT_TYPES,
    Outcome,
    AccountState,
    TransferState,
    TenantHead,
    TransactionState,
    MonitorState,
    *NOTIFICATION_TYPES,
)
