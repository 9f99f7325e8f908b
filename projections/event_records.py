"""Ledger events as the projection reads them: plain Avro records, not model objects.

The projection turns each event straight into table rows, so it does not need the frozen model
values ``schemas.codec.decode_event`` builds (about half of that function's time, measured in
decision 0016). ``decode_event_record`` reads the same single-object bytes with the same
fastavro reader and the same schema, and keeps fastavro's dict, tagged with ``event_type`` (the
model class's name). The codec stays the contract:

- bytes written under an older schema version, and anything the fast path cannot read, go
  through ``decode_event`` (which resolves old versions and raises the precise ``DecodeError``);
- ``tests/unit/test_projection_event_records.py`` checks, for every event type, that the record
  read here is the record of the codec's model value (``event_record(decode_event(data))``) and
  that it converts back to that same value (``model_event``).

Pure: no I/O.
"""

from __future__ import annotations

import io
from typing import Any, Final, Literal, TypedDict, cast

from fastavro import _read as fastavro_compiled_reader
from fastavro import schemaless_reader

from projections.event_reader import READERS as HAND_READERS
from schemas.codec import (
    EVENTS,
    HEADER_BYTES,
    MARKER,
    UNION_INDEX_MAX,
    decode_event,
    encode_event,
)
from schemas.model import EVENT_TYPES, AccountBalance, AccountOpened, Event, Posting


class BalanceRecord(TypedDict):
    account_id: str
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


class EventHeaderRecord(TypedDict):
    tenant_id: str
    sequence: int
    event_id: str
    idempotency_key: str | None
    effective_at_us: int
    balances: list[BalanceRecord]
    prev_hash: bytes
    hash: bytes
    metadata: dict[str, str]  # since schemas v1.4: the causing command's metadata
    actor: str  # since contract v1.7: who issued the causing command ("system": an expiry)


class AccountOpenedRecord(EventHeaderRecord):
    event_type: Literal["AccountOpened"]
    account_id: str
    currency: str
    asset_scale: int
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit: int | None


class TransferRecord(EventHeaderRecord):
    """What every money event carries."""

    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str


class TransferPostedRecord(TransferRecord):
    event_type: Literal["TransferPosted"]
    reverses: str | None


class TransferPendingRecord(TransferRecord):
    event_type: Literal["TransferPending"]
    expires_at_us: int | None


class PendingPostedRecord(TransferRecord):
    event_type: Literal["PendingPosted"]
    pending_amount: int


class PendingVoidedRecord(TransferRecord):
    event_type: Literal["PendingVoided"]


class PendingExpiredRecord(TransferRecord):
    event_type: Literal["PendingExpired"]


MoneyRecord = (
    TransferPostedRecord
    | TransferPendingRecord
    | PendingPostedRecord
    | PendingVoidedRecord
    | PendingExpiredRecord
)


class PostingRecord(TypedDict):
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str


class TransactionRecord(EventHeaderRecord):
    """What every multi-leg transaction event carries (schemas v1.3)."""

    transaction_id: str
    postings: list[PostingRecord]


class TransactionPostedRecord(TransactionRecord):
    event_type: Literal["TransactionPosted"]
    reverses: str | None


class TransactionPendingRecord(TransactionRecord):
    event_type: Literal["TransactionPending"]
    expires_at_us: int | None


class TransactionPendingPostedRecord(TransactionRecord):
    event_type: Literal["TransactionPendingPosted"]
    pending_amounts: list[int]


class TransactionPendingVoidedRecord(TransactionRecord):
    event_type: Literal["TransactionPendingVoided"]


class TransactionPendingExpiredRecord(TransactionRecord):
    event_type: Literal["TransactionPendingExpired"]


TransactionEventRecord = (
    TransactionPostedRecord
    | TransactionPendingRecord
    | TransactionPendingPostedRecord
    | TransactionPendingVoidedRecord
    | TransactionPendingExpiredRecord
)


class MonitorCreatedRecord(EventHeaderRecord):
    """A balance monitor created (schemas v1.5, decision 0058): no money moves."""

    event_type: Literal["MonitorCreated"]
    monitor_id: str
    account_id: str
    field: str
    operator: str
    threshold: int
    holds: bool


class MonitorDeletedRecord(EventHeaderRecord):
    event_type: Literal["MonitorDeleted"]
    monitor_id: str
    account_id: str


MonitorEventRecord = MonitorCreatedRecord | MonitorDeletedRecord
EventRecord = AccountOpenedRecord | MoneyRecord | TransactionEventRecord | MonitorEventRecord

EVENT_TYPE_FIELD: Final = "event_type"
BALANCES_FIELD: Final = "balances"
# a multi-leg transaction event's (schemas v1.3): arrays, read as lists like ``balances``
POSTINGS_FIELD: Final = "postings"
PENDING_AMOUNTS_FIELD: Final = "pending_amounts"
# every event's since schemas v1.4: a map, read as a dict (the model holds sorted pairs)
METADATA_FIELD: Final = "metadata"
EVENT_TYPES_BY_NAME: Final = {event_type.__name__: event_type for event_type in EVENT_TYPES}

# The envelope's union branches in index order; checked against the codec at import.
BRANCHES: Final = EVENTS.branches
assert tuple(branch.python_type for branch in BRANCHES) == EVENT_TYPES
BRANCH_NAMES: Final = tuple(branch.python_type.__name__ for branch in BRANCHES)
CURRENT_HEADER: Final = MARKER + EVENTS.current.fingerprint
assert len(CURRENT_HEADER) == HEADER_BYTES

# fastavro's compiled reader without the per-call ``parse_schema`` of ``schemaless_reader``
# (the codec does the same); used only if it reads a probe exactly like the public function.
READ_OPTIONS: Final = {
    "return_record_name": True,
    "return_record_name_override": True,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}
_read_data: Any = getattr(fastavro_compiled_reader, "_read_data", None)
NAMED_SCHEMAS: Final = tuple(
    {"writer": branch.wire.get("__named_schemas", {}), "reader": {}} for branch in BRANCHES
)


def read_body_public(buffer: io.BytesIO, index: int) -> Any:
    return schemaless_reader(
        buffer,
        BRANCHES[index].wire,
        None,
        return_record_name=True,
        return_record_name_override=True,
    )


def read_body_direct(buffer: io.BytesIO, index: int) -> Any:
    return _read_data(buffer, BRANCHES[index].wire, NAMED_SCHEMAS[index], None, READ_OPTIONS)


def event_record(event: Event) -> EventRecord:
    """The record of a model event: its fields by name, balances as dicts, ``event_type``."""
    record: dict[str, Any] = {name: getattr(event, name) for name in event.__dataclass_fields__}
    record[BALANCES_FIELD] = [
        {
            "account_id": balance.account_id,
            "currency": balance.currency,
            "debits_posted": balance.debits_posted,
            "credits_posted": balance.credits_posted,
            "debits_pending": balance.debits_pending,
            "credits_pending": balance.credits_pending,
        }
        for balance in event.balances
    ]
    if POSTINGS_FIELD in record:
        record[POSTINGS_FIELD] = [
            {
                "debit_account_id": posting.debit_account_id,
                "credit_account_id": posting.credit_account_id,
                "amount": posting.amount,
                "currency": posting.currency,
            }
            for posting in record[POSTINGS_FIELD]
        ]
    if PENDING_AMOUNTS_FIELD in record:
        record[PENDING_AMOUNTS_FIELD] = list(record[PENDING_AMOUNTS_FIELD])
    record[METADATA_FIELD] = dict(event.metadata)
    record[EVENT_TYPE_FIELD] = type(event).__name__
    return cast(EventRecord, record)


def model_event(record: EventRecord) -> Event:
    """The model value of a record (the inverse of ``event_record``; for tests and checks)."""
    fields: dict[str, Any] = dict(record)
    event_type = EVENT_TYPES_BY_NAME[fields.pop(EVENT_TYPE_FIELD)]
    fields[BALANCES_FIELD] = tuple(AccountBalance(**item) for item in record[BALANCES_FIELD])
    if POSTINGS_FIELD in fields:
        fields[POSTINGS_FIELD] = tuple(Posting(**item) for item in fields[POSTINGS_FIELD])
    if PENDING_AMOUNTS_FIELD in fields:
        fields[PENDING_AMOUNTS_FIELD] = tuple(fields[PENDING_AMOUNTS_FIELD])
    fields[METADATA_FIELD] = tuple(sorted(record[METADATA_FIELD].items()))
    event: Event = event_type(**fields)
    return event


def decode_event_record(data: bytes) -> EventRecord:
    """The record of an event in single-object bytes; raises what ``decode_event`` raises.

    The current schema's account and transfer events are read by hand
    (``projections.event_reader``: the same dict); what the hand reader does not take as plainly
    valid goes through fastavro, and what fastavro does not take through the codec."""
    record: dict[str, Any]
    if data[:HEADER_BYTES] == CURRENT_HEADER and len(data) > HEADER_BYTES:
        index_byte = data[HEADER_BYTES]
        index = index_byte >> 1
        if not index_byte & 1 and index_byte <= UNION_INDEX_MAX << 1 and index < len(BRANCHES):
            hand_reader = HAND_READERS[index]
            if hand_reader is not None:
                try:
                    record = hand_reader(data, HEADER_BYTES + 1)
                except (IndexError, ValueError, TypeError):
                    pass  # not plainly valid (TypeError: not bytes, compiled): fastavro decides
                else:
                    record[EVENT_TYPE_FIELD] = BRANCH_NAMES[index]
                    return cast(EventRecord, record)
            buffer = io.BytesIO(data)
            buffer.seek(HEADER_BYTES + 1)
            try:
                record = read_body(buffer, index)
            except Exception:  # noqa: BLE001 - the codec below names what is wrong
                record = {}
            if record and buffer.tell() == len(data):
                record[EVENT_TYPE_FIELD] = BRANCH_NAMES[index]
                return cast(EventRecord, record)
    # An older schema version, or bytes the codec will reject with the precise error.
    return event_record(decode_event(data))


def _direct_reader_agrees() -> bool:
    if _read_data is None:
        return False
    probe = AccountOpened(
        tenant_id="probe",
        sequence=1,
        event_id="probe:1",
        idempotency_key="k",
        effective_at_us=1,
        balances=(AccountBalance(account_id="a", currency="USD", debits_posted=3),),
        prev_hash=bytes(32),
        hash=b"\x07" * 32,
        account_id="a",
        currency="USD",
        asset_scale=2,
        debits_must_not_exceed_credits=False,
        credits_must_not_exceed_debits=True,
        overdraft_limit=None,
    )
    body = encode_event(probe)[HEADER_BYTES + 1 :]
    try:
        direct = read_body_direct(io.BytesIO(body), 0)
    except Exception:  # noqa: BLE001 - any failure of the internal API means: do not use it
        return False
    return bool(direct == read_body_public(io.BytesIO(body), 0))


read_body = read_body_direct if _direct_reader_agrees() else read_body_public
