"""Hand-written Avro binary readers for the single-leg commands the processor decodes (issue 17).

The processor decodes every command record it reads: fastavro's ``_read_data`` interprets the
parsed schema per field and builds a dict that ``schemas.codec`` turns into the model value,
~12 µs per ``Transfer`` (decision 0104). The readers here know the field order of ``Transfer``,
``PostPending``, ``VoidPending`` and ``OpenAccount`` and read the Avro binary encoding directly
with the primitives of ``schemas.avro_readers`` (same rules: a reader takes only what is plainly
valid and raises ``IndexError`` or ``ValueError`` for anything else, never an error of its own).
``schemas.codec`` calls a reader only for the current schema's header of its record type and
only while that schema has the field layout the reader was written for (``LAYOUTS``, checked at
import with ``avro_readers.field_layout``); on any failure it decodes the record through
fastavro, whose value or ``DecodeError`` (the dead-letter kind) stands. The values equal
fastavro's, compared by a Hypothesis test (``tests/unit/test_avro_command_readers.py``).

``metadata`` (a ``map<string>``) is read as fastavro reads it, one or more blocks of positive
counts, into a dict, then sorted into the model's pairs as the generic decoder does; a negative
block count (a block with its byte size) is left to fastavro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from schemas._generated_records import BUILDERS
from schemas.avro_readers import (
    read_boolean,
    read_int,
    read_long,
    read_optional_long,
    read_optional_string,
    read_shared_string,
    read_string,
)
from schemas.model import Command, OpenAccount, PostPending, Transfer, VoidPending

METADATA_ENTRIES_MAX: Final = 4_096  # more than limits allow; a larger map is fastavro's

_new_transfer: Final = BUILDERS[Transfer]
_new_post_pending: Final = BUILDERS[PostPending]
_new_void_pending: Final = BUILDERS[VoidPending]
_new_open_account: Final = BUILDERS[OpenAccount]


def _end(data: bytes, position: int) -> None:
    if position != len(data):
        raise ValueError(f"{len(data) - position} bytes left after the record")


def read_metadata(data: bytes, position: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """A ``map<string>`` as the model's sorted (key, value) pairs (a repeated key: the last)."""
    count, position = read_long(data, position)
    if count == 0:
        return (), position
    entries: dict[str, str] = {}
    while count != 0:
        if count < 0 or count + len(entries) > METADATA_ENTRIES_MAX:
            raise ValueError(f"a map block of {count} entries")
        for _ in range(count):
            key, position = read_string(data, position)
            value, position = read_string(data, position)
            entries[key] = value
        count, position = read_long(data, position)
    return tuple(sorted(entries.items())), position


def _read_header(data: bytes, position: int) -> tuple[str, str, int, Any, int]:
    """tenant_id, idempotency_key, submitted_at_us, metadata, and the next position."""
    tenant_id, position = read_shared_string(data, position)
    idempotency_key, position = read_string(data, position)
    submitted_at_us, position = read_long(data, position)
    metadata, position = read_metadata(data, position)
    return tenant_id, idempotency_key, submitted_at_us, metadata, position


def read_transfer(data: bytes, position: int) -> Command:
    """A ``Transfer`` body from ``position`` to the end of ``data`` (schema field order)."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    transfer_id, position = read_string(data, position)
    debit_account_id, position = read_shared_string(data, position)
    credit_account_id, position = read_shared_string(data, position)
    amount, position = read_long(data, position)
    currency, position = read_shared_string(data, position)
    pending, position = read_boolean(data, position)
    pending_timeout_s, position = read_optional_long(data, position)
    reverses, position = read_optional_string(data, position)
    _end(data, position)
    command: Transfer = _new_transfer(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        transfer_id=transfer_id,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        currency=currency,
        pending=pending,
        pending_timeout_s=pending_timeout_s,
        reverses=reverses,
    )
    return command


def read_post_pending(data: bytes, position: int) -> Command:
    """A ``PostPending`` body from ``position`` to the end of ``data``."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    transfer_id, position = read_string(data, position)
    amount, position = read_optional_long(data, position)
    _end(data, position)
    command: PostPending = _new_post_pending(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        transfer_id=transfer_id,
        amount=amount,
    )
    return command


def read_void_pending(data: bytes, position: int) -> Command:
    """A ``VoidPending`` body from ``position`` to the end of ``data``."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    transfer_id, position = read_string(data, position)
    _end(data, position)
    command: VoidPending = _new_void_pending(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        transfer_id=transfer_id,
    )
    return command


def read_open_account(data: bytes, position: int) -> Command:
    """An ``OpenAccount`` body from ``position`` to the end of ``data``."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    account_id, position = read_shared_string(data, position)
    currency, position = read_shared_string(data, position)
    asset_scale, position = read_int(data, position)
    debits_must_not_exceed_credits, position = read_boolean(data, position)
    credits_must_not_exceed_debits, position = read_boolean(data, position)
    overdraft_limit, position = read_optional_long(data, position)
    _end(data, position)
    command: OpenAccount = _new_open_account(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        account_id=account_id,
        currency=currency,
        asset_scale=asset_scale,
        debits_must_not_exceed_credits=debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=credits_must_not_exceed_debits,
        overdraft_limit=overdraft_limit,
    )
    return command


# --------------------------------------------------------------------------- the schema check

_HEADER_LAYOUT: Final = (
    ("tenant_id", "string"),
    ("idempotency_key", "string"),
    ("submitted_at_us", "long"),
    ("metadata", "map"),
)
# The field layout each reader was written for (``avro_readers.field_layout``'s words).
LAYOUTS: Final[dict[type[Any], tuple[tuple[str, str], ...]]] = {
    Transfer: (
        *_HEADER_LAYOUT,
        ("transfer_id", "string"),
        ("debit_account_id", "string"),
        ("credit_account_id", "string"),
        ("amount", "long"),
        ("currency", "string"),
        ("pending", "boolean"),
        ("pending_timeout_s", "null|long"),
        ("reverses", "null|string"),
    ),
    PostPending: (*_HEADER_LAYOUT, ("transfer_id", "string"), ("amount", "null|long")),
    VoidPending: (*_HEADER_LAYOUT, ("transfer_id", "string")),
    OpenAccount: (
        *_HEADER_LAYOUT,
        ("account_id", "string"),
        ("currency", "string"),
        ("asset_scale", "int"),
        ("debits_must_not_exceed_credits", "boolean"),
        ("credits_must_not_exceed_debits", "boolean"),
        ("overdraft_limit", "null|long"),
    ),
}
READERS: Final[dict[type[Any], Callable[[bytes, int], Command]]] = {
    Transfer: read_transfer,
    PostPending: read_post_pending,
    VoidPending: read_void_pending,
    OpenAccount: read_open_account,
}
