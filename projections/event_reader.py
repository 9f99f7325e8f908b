"""Hand-written Avro readers for the ledger events the projection reads most (issue 17).

The projection decodes every ``ledger.events`` record it consumes. fastavro's ``_read_data``
interprets the parsed schema field by field: 20.3 µs per ``TransferPosted`` with its two
balances-after on this machine, the largest single cost of the projection's client. The readers
here know the field order of the events a payment
workload writes — ``AccountOpened``, ``TransferPosted``, ``TransferPending``,
``PendingPosted``, ``PendingVoided``, ``PendingExpired`` — and read the Avro binary encoding
directly with the primitives of ``schemas.avro_readers`` (Avro 1.11 specification, "Binary
Encoding"), building the same dict fastavro builds: the fields by name in schema order,
balances as a list of dicts, metadata as a dict, hashes as bytes. Measured on the same records
(bench/README.md, "Projection write path"): 12.2 µs with the primitives compiled (the native
build), 19.8 µs with them as Python (``STREAMLEDGER_PURE_PYTHON=1``: no faster than fastavro,
never slower). This module is compiled with them (decision 0100: listed in
``scripts/build_native.py``, served by ``streamledger.native``): over the bench's events, 7.2 →
2.9 µs per event read by hand, the projection's client 32.6 → 28.5 µs per event.

Same contract as the state readers: a reader takes only what is plainly valid (longs within
int64, ints within int32, booleans 0 or 1, union indexes 0 or 1, lengths within the record,
strict UTF-8, no byte left after the record) and otherwise raises ``IndexError`` or
``ValueError``; ``projections.event_records.decode_event_record`` then reads the record through
fastavro (and the codec), whose value or error stands. A reader is used only while the current
schema of its event type has exactly the field layout it was written for (checked at import,
``READERS``); the multi-leg and monitor events always go through fastavro.
``tests/unit/test_projection_event_reader.py`` compares the readers with fastavro (Hypothesis,
valid and damaged bytes).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from schemas.avro_readers import (
    BALANCE_LAYOUT,
    BALANCE_RECORD_NAME,
    EVENT_HEADER_LAYOUT,
    EVENT_TRAILER_LAYOUT,
    HASH_BYTES,
    field_layout,
    read_block_count,
    read_boolean,
    read_event_header,
    read_fixed,
    read_int,
    read_long,
    read_optional_long,
    read_optional_string,
    read_string,
)
from schemas.codec import EVENTS

# A record body read from ``position`` to the end of ``data`` as fastavro's dict (without
# ``event_type``); raises IndexError / ValueError for anything not plainly valid.
BodyReader = Callable[[bytes, int], dict[str, Any]]

TRANSFER_LAYOUT: Final = (
    ("transfer_id", "string"),
    ("debit_account_id", "string"),
    ("credit_account_id", "string"),
    ("amount", "long"),
)
# Each event's own fields between the header and the trailer.
EVENT_LAYOUTS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "AccountOpened": (
        ("account_id", "string"),
        ("currency", "string"),
        ("asset_scale", "int"),
        ("debits_must_not_exceed_credits", "boolean"),
        ("credits_must_not_exceed_debits", "boolean"),
        ("overdraft_limit", "null|long"),
    ),
    "TransferPosted": (*TRANSFER_LAYOUT, ("currency", "string"), ("reverses", "null|string")),
    "TransferPending": (*TRANSFER_LAYOUT, ("currency", "string"), ("expires_at_us", "null|long")),
    "PendingPosted": (*TRANSFER_LAYOUT, ("pending_amount", "long"), ("currency", "string")),
    "PendingVoided": (*TRANSFER_LAYOUT, ("currency", "string")),
    "PendingExpired": (*TRANSFER_LAYOUT, ("currency", "string")),
}


def _read_trailer(data: bytes, position: int, record: dict[str, Any]) -> dict[str, Any]:
    """Metadata, actor and hash into ``record``; the hash must end the data."""
    metadata: dict[str, str] = {}
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            key, position = read_string(data, position)
            metadata[key], position = read_string(data, position)
        count, position = read_block_count(data, position)
    record["metadata"] = metadata
    record["actor"], position = read_string(data, position)
    record["hash"], position = read_fixed(data, position, HASH_BYTES)
    if position != len(data):
        raise ValueError(f"{len(data) - position} bytes left after the record")
    return record


def _read_transfer_head(data: bytes, position: int) -> tuple[dict[str, Any], int]:
    """The header and the four fields every money event continues with."""
    record, position = read_event_header(data, position)
    record["transfer_id"], position = read_string(data, position)
    record["debit_account_id"], position = read_string(data, position)
    record["credit_account_id"], position = read_string(data, position)
    record["amount"], position = read_long(data, position)
    return record, position


def read_account_opened(data: bytes, position: int) -> dict[str, Any]:
    record, position = read_event_header(data, position)
    record["account_id"], position = read_string(data, position)
    record["currency"], position = read_string(data, position)
    record["asset_scale"], position = read_int(data, position)
    record["debits_must_not_exceed_credits"], position = read_boolean(data, position)
    record["credits_must_not_exceed_debits"], position = read_boolean(data, position)
    record["overdraft_limit"], position = read_optional_long(data, position)
    return _read_trailer(data, position, record)


def read_transfer_posted(data: bytes, position: int) -> dict[str, Any]:
    record, position = _read_transfer_head(data, position)
    record["currency"], position = read_string(data, position)
    record["reverses"], position = read_optional_string(data, position)
    return _read_trailer(data, position, record)


def read_transfer_pending(data: bytes, position: int) -> dict[str, Any]:
    record, position = _read_transfer_head(data, position)
    record["currency"], position = read_string(data, position)
    record["expires_at_us"], position = read_optional_long(data, position)
    return _read_trailer(data, position, record)


def read_pending_posted(data: bytes, position: int) -> dict[str, Any]:
    record, position = _read_transfer_head(data, position)
    record["pending_amount"], position = read_long(data, position)
    record["currency"], position = read_string(data, position)
    return _read_trailer(data, position, record)


def read_pending_ended(data: bytes, position: int) -> dict[str, Any]:
    """``PendingVoided`` and ``PendingExpired`` (the same fields)."""
    record, position = _read_transfer_head(data, position)
    record["currency"], position = read_string(data, position)
    return _read_trailer(data, position, record)


HAND_READERS: Final[Mapping[str, BodyReader]] = {
    "AccountOpened": read_account_opened,
    "TransferPosted": read_transfer_posted,
    "TransferPending": read_transfer_pending,
    "PendingPosted": read_pending_posted,
    "PendingVoided": read_pending_ended,
    "PendingExpired": read_pending_ended,
}


def written_for(wire: Mapping[str, Any], event_type: str) -> bool:
    """Whether a branch's parsed schema has exactly the layout the hand reader expects."""
    named: Mapping[str, Any] = wire.get("__named_schemas", {})
    expected = (*EVENT_HEADER_LAYOUT, *EVENT_LAYOUTS[event_type], *EVENT_TRAILER_LAYOUT)
    if field_layout(wire, named) != expected:
        return False
    items = wire["fields"][len(EVENT_HEADER_LAYOUT) - 2]["type"]["items"]  # the balances' record
    balance = named.get(items) if isinstance(items, str) else items
    metadata = wire["fields"][-len(EVENT_TRAILER_LAYOUT)]["type"]
    return (
        isinstance(balance, Mapping)
        and balance.get("name") == BALANCE_RECORD_NAME
        and field_layout(balance, named) == BALANCE_LAYOUT
        and isinstance(metadata, Mapping)
        and metadata.get("values") == "string"
    )


def branch_readers() -> tuple[BodyReader | None, ...]:
    """Per union index of the current events schema: its hand reader, or ``None`` (fastavro)."""
    readers: list[BodyReader | None] = []
    for branch in EVENTS.branches:
        name = branch.python_type.__name__
        reader = HAND_READERS.get(name)
        readers.append(reader if reader is not None and written_for(branch.wire, name) else None)
    return tuple(readers)


READERS: Final = branch_readers()
