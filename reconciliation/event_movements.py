"""What the matcher reads of a ``ledger.events`` record: its tenant, its effective time and its
movements, read straight from the Avro bytes of the events that move money.

The matcher needs, of each event, only the tenant and the effective time (its ledger time) and,
of a posted transfer or transaction, the postings' accounts and amounts, the event id and one
metadata value (the external reference). ``schemas.codec.decode_event`` builds the whole event:
every balance after it, both hashes, every string — 27 µs of the ~155 µs the matcher spent per
statement line (bench/README.md, "Reconciliation"). The readers here walk the same bytes with
the primitives of ``schemas.avro_readers`` and build only ``Movement`` values; the fields the
matcher does not use are still read and checked as fastavro checks them (strict UTF-8, longs
within int64, union indexes, lengths within the record, no byte left after the record), but
not kept.

Same contract as ``schemas.avro_readers`` and ``records.read_line``: a reader takes only what is
plainly valid and raises ``IndexError`` or ``ValueError`` otherwise; ``event_movements`` then
decodes the record through ``schemas.codec`` (fastavro), whose value or ``DecodeError`` stands.
A reader is used only while the current schema of its event type has exactly the field layout it
was written for (checked at import, ``READERS``); older contract versions and the other event
types (opening, pending, voided, expired, monitors: no movement) go through ``decode_event``.
``tests/unit/test_reconciliation_event_movements.py`` compares both paths (Hypothesis, valid
and damaged bytes).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from reconciliation.matching import Movement, movements_of, posting_movements
from schemas.avro_readers import (
    BALANCE_LAYOUT,
    BALANCE_RECORD_NAME,
    EVENT_HEADER_LAYOUT,
    EVENT_TRAILER_LAYOUT,
    HASH_BYTES,
    field_layout,
    read_block_count,
    read_long,
    read_optional_string,
    read_string,
    skim_event_header,
    skip_fixed,
)
from schemas.codec import EVENTS, decode_event


@dataclass(slots=True, init=False, unsafe_hash=True)
class EventMovements:
    """Of one ledger event: what the matcher uses (a value, with a hand-written ``__init__`` as
    ``matching.Movement``: decision 0097)."""

    tenant_id: str
    effective_at_us: int
    movements: tuple[Movement, ...]

    def __init__(
        self, tenant_id: str, effective_at_us: int, movements: tuple[Movement, ...]
    ) -> None:
        self.tenant_id = tenant_id
        self.effective_at_us = effective_at_us
        self.movements = movements


# (tenant_id, event_id, effective_at_us, position after the header): ``skim_event_header``
_Header = tuple[str, str, int, int]
# An event's body from ``position`` to the end of ``data``, with the metadata key of the external
# reference; raises IndexError / ValueError for anything not plainly valid
BodyReader = Callable[[bytes, int, str], EventMovements]

TRANSFER_LAYOUT: Final = (
    ("transfer_id", "string"),
    ("debit_account_id", "string"),
    ("credit_account_id", "string"),
    ("amount", "long"),
)
POSTING_LAYOUT: Final = (
    ("debit_account_id", "string"),
    ("credit_account_id", "string"),
    ("amount", "long"),
    ("currency", "string"),
)
# Each event's own fields between the header and the trailer, and which of them are arrays of
# records (checked against their own layout).
EVENT_LAYOUTS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "TransferPosted": (*TRANSFER_LAYOUT, ("currency", "string"), ("reverses", "null|string")),
    "PendingPosted": (*TRANSFER_LAYOUT, ("pending_amount", "long"), ("currency", "string")),
    "TransactionPosted": (
        ("transaction_id", "string"),
        ("postings", "array"),
        ("reverses", "null|string"),
    ),
    "TransactionPendingPosted": (
        ("transaction_id", "string"),
        ("postings", "array"),
        ("pending_amounts", "array"),
    ),
}
RECORD_ARRAYS: Final = {
    "balances": (BALANCE_RECORD_NAME, BALANCE_LAYOUT),
    "postings": ("streamledger.v1.Posting", POSTING_LAYOUT),
}


# --------------------------------------------------------------------------- the parts


def _read_reference(data: bytes, position: int, reference_key: str) -> str | None:
    """The trailer (metadata, actor, hash, which must end the record): the metadata's value of
    ``reference_key`` (the last one for a key written twice, as a dict keeps it), None when it is
    missing or empty."""
    reference: str | None = None
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            key, position = read_string(data, position)
            value, position = read_string(data, position)
            if key == reference_key:
                reference = value
        count, position = read_block_count(data, position)
    _, position = read_string(data, position)  # actor
    position = skip_fixed(data, position, HASH_BYTES)
    if position != len(data):
        raise ValueError(f"{len(data) - position} bytes left after the record")
    return reference or None


def _movements(
    header: _Header, pairs: list[tuple[str, str, int]], reference: str | None
) -> EventMovements:
    """As ``matching.movements_of``, from the fields read by hand."""
    tenant_id, event_id, effective_at_us, _ = header
    movements = posting_movements(tenant_id, event_id, effective_at_us, pairs, reference)
    return EventMovements(tenant_id, effective_at_us, movements)


def _read_transfer_head(data: bytes, position: int) -> tuple[_Header, tuple[str, str, int], int]:
    header = skim_event_header(data, position)
    position = header[3]
    _, position = read_string(data, position)  # transfer_id
    debited, position = read_string(data, position)
    credited, position = read_string(data, position)
    amount, position = read_long(data, position)
    return header, (debited, credited, amount), position


def _read_postings(data: bytes, position: int) -> tuple[list[tuple[str, str, int]], int]:
    pairs: list[tuple[str, str, int]] = []
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            debited, position = read_string(data, position)
            credited, position = read_string(data, position)
            amount, position = read_long(data, position)
            _, position = read_string(data, position)  # currency
            pairs.append((debited, credited, amount))
        count, position = read_block_count(data, position)
    return pairs, position


def _skip_longs(data: bytes, position: int) -> int:
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            _, position = read_long(data, position)
        count, position = read_block_count(data, position)
    return position


# --------------------------------------------------------------------------- the events


def read_transfer_posted(data: bytes, position: int, reference_key: str) -> EventMovements:
    header, pair, position = _read_transfer_head(data, position)
    _, position = read_string(data, position)  # currency
    _, position = read_optional_string(data, position)  # reverses
    return _movements(header, [pair], _read_reference(data, position, reference_key))


def read_pending_posted(data: bytes, position: int, reference_key: str) -> EventMovements:
    header, pair, position = _read_transfer_head(data, position)
    _, position = read_long(data, position)  # pending_amount
    _, position = read_string(data, position)  # currency
    return _movements(header, [pair], _read_reference(data, position, reference_key))


def read_transaction_posted(data: bytes, position: int, reference_key: str) -> EventMovements:
    header = skim_event_header(data, position)
    _, position = read_string(data, header[3])  # transaction_id
    pairs, position = _read_postings(data, position)
    _, position = read_optional_string(data, position)  # reverses
    return _movements(header, pairs, _read_reference(data, position, reference_key))


def read_transaction_pending_posted(
    data: bytes, position: int, reference_key: str
) -> EventMovements:
    header = skim_event_header(data, position)
    _, position = read_string(data, header[3])  # transaction_id
    pairs, position = _read_postings(data, position)
    position = _skip_longs(data, position)  # pending_amounts
    return _movements(header, pairs, _read_reference(data, position, reference_key))


HAND_READERS: Final[Mapping[str, BodyReader]] = {
    "TransferPosted": read_transfer_posted,
    "PendingPosted": read_pending_posted,
    "TransactionPosted": read_transaction_posted,
    "TransactionPendingPosted": read_transaction_pending_posted,
}


def written_for(wire: Mapping[str, Any], event_type: str) -> bool:
    """Whether a branch's parsed schema has exactly the layout its hand reader expects."""
    named: Mapping[str, Any] = wire.get("__named_schemas", {})
    expected = (*EVENT_HEADER_LAYOUT, *EVENT_LAYOUTS[event_type], *EVENT_TRAILER_LAYOUT)
    if field_layout(wire, named) != expected:
        return False
    for field in wire["fields"]:
        if field["name"] in RECORD_ARRAYS:
            record_name, layout = RECORD_ARRAYS[field["name"]]
            items = field["type"]["items"]
            record = named.get(items) if isinstance(items, str) else items
            if not isinstance(record, Mapping) or record.get("name") != record_name:
                return False
            if field_layout(record, named) != layout:
                return False
        elif field["name"] == "pending_amounts" and field["type"].get("items") != "long":
            return False
    metadata = wire["fields"][-len(EVENT_TRAILER_LAYOUT)]["type"]
    return isinstance(metadata, Mapping) and metadata.get("values") == "string"


def branch_readers() -> dict[bytes, BodyReader]:
    """By the current schema's prefix (marker, fingerprint, union index): the hand reader of
    each event type that has one and the layout it was written for."""
    readers: dict[bytes, BodyReader] = {}
    for prefix, branch in EVENTS.by_prefix.items():
        name = branch.python_type.__name__
        reader = HAND_READERS.get(name)
        if reader is not None and written_for(branch.wire, name):
            readers[bytes(prefix)] = reader
    return readers


READERS: Final = branch_readers()
PREFIX_BYTES: Final = EVENTS.prefix_bytes


def event_movements(value: bytes, reference_key: str) -> EventMovements:
    """The tenant, effective time and movements of the event in ``value``: read by hand for a
    current posted transfer or transaction; otherwise, or for anything not plainly valid,
    through ``decode_event`` (whose value or ``DecodeError`` stands)."""
    reader = READERS.get(value[:PREFIX_BYTES])
    if reader is not None:
        try:
            return reader(value, PREFIX_BYTES, reference_key)
        except (IndexError, ValueError):  # UnicodeDecodeError is a ValueError
            pass
    event = decode_event(value)
    return EventMovements(
        event.tenant_id, event.effective_at_us, movements_of(event, reference_key)
    )
