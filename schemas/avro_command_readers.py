"""Hand-written Avro binary readers for the commands the processor decodes (issue 17).

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

``PostTransaction`` (decision 0139) is read the same way: fastavro took ~25 µs for a 10-posting
transaction (a dict per posting, then ``new_posting(**item)``), against ~2 for a ``Transfer``.
Its ``postings`` array is read as fastavro reads it (blocks of positive counts; a negative count is
left to fastavro) and its items only while the schema's ``Posting`` has the layout read here
(``ITEM_LAYOUTS``, checked at import with ``avro_readers.items_written_for``).

``metadata`` (a ``map<string>``) is read as fastavro reads it, one or more blocks of positive
counts, into a dict, then sorted into the model's pairs as the generic decoder does; a negative
block count (a block with its byte size) is left to fastavro.

The builders (``new_transfer``, ``new_posting``, ...) are imported by name, not looked up in
``BUILDERS``: compiled, a call by name is a direct native call, while a call through the table's
value is a Python call whose wrapper parses every keyword (~1.7 k instructions a ``Transfer``,
~0.6 k a ``Posting``; decision 0145's follow-up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from schemas._generated_records import (
    new_open_account,
    new_post_pending,
    new_post_transaction,
    new_posting,
    new_transfer,
    new_void_pending,
)
from schemas.avro_readers import (
    read_boolean,
    read_int,
    read_long,
    read_optional_long,
    read_optional_string,
    read_shared_string,
    read_string,
)
from schemas.model import (
    Command,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
    Transfer,
    VoidPending,
)

METADATA_ENTRIES_MAX: Final = 4_096  # more than limits allow; a larger map is fastavro's
POSTINGS_READ_MAX: Final = 4_096  # more than postings_max allows; a longer array is fastavro's


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
    return new_transfer(
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


def read_post_pending(data: bytes, position: int) -> Command:
    """A ``PostPending`` body from ``position`` to the end of ``data``."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    transfer_id, position = read_string(data, position)
    amount, position = read_optional_long(data, position)
    _end(data, position)
    return new_post_pending(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        transfer_id=transfer_id,
        amount=amount,
    )


def read_void_pending(data: bytes, position: int) -> Command:
    """A ``VoidPending`` body from ``position`` to the end of ``data``."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    transfer_id, position = read_string(data, position)
    _end(data, position)
    return new_void_pending(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        transfer_id=transfer_id,
    )


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
    return new_open_account(
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


def read_postings(data: bytes, position: int) -> tuple[tuple[Posting, ...], int]:
    """An ``array<Posting>`` as the model's tuple, read as fastavro reads it: one or more
    blocks of positive counts (a negative count, a block with its byte size, is left to
    fastavro, as are more than ``POSTINGS_READ_MAX`` items)."""
    postings: list[Posting] = []
    count, position = read_long(data, position)
    while count != 0:
        if count < 0 or count + len(postings) > POSTINGS_READ_MAX:
            raise ValueError(f"an array block of {count} items")
        for _ in range(count):
            debit_account_id, position = read_shared_string(data, position)
            credit_account_id, position = read_shared_string(data, position)
            amount, position = read_long(data, position)
            currency, position = read_shared_string(data, position)
            postings.append(
                new_posting(
                    debit_account_id=debit_account_id,
                    credit_account_id=credit_account_id,
                    amount=amount,
                    currency=currency,
                )
            )
        count, position = read_long(data, position)
    return tuple(postings), position


def read_post_transaction(data: bytes, position: int) -> Command:
    """A ``PostTransaction`` body from ``position`` to the end of ``data`` (decision 0139)."""
    tenant_id, idempotency_key, submitted_at_us, metadata, position = _read_header(data, position)
    transaction_id, position = read_string(data, position)
    postings, position = read_postings(data, position)
    pending, position = read_boolean(data, position)
    pending_timeout_s, position = read_optional_long(data, position)
    reverses, position = read_optional_string(data, position)
    _end(data, position)
    return new_post_transaction(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=submitted_at_us,
        metadata=metadata,
        transaction_id=transaction_id,
        postings=postings,
        pending=pending,
        pending_timeout_s=pending_timeout_s,
        reverses=reverses,
    )


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
    PostTransaction: (
        *_HEADER_LAYOUT,
        ("transaction_id", "string"),
        ("postings", "array"),
        ("pending", "boolean"),
        ("pending_timeout_s", "null|long"),
        ("reverses", "null|string"),
    ),
}
# The record layout of the items of each array field a reader reads (checked with the field
# layout: an array's layout word does not say what its items are).
ITEM_LAYOUTS: Final[dict[type[Any], tuple[str, str, tuple[tuple[str, str], ...]]]] = {
    PostTransaction: (
        "postings",
        "streamledger.v1.Posting",
        (
            ("debit_account_id", "string"),
            ("credit_account_id", "string"),
            ("amount", "long"),
            ("currency", "string"),
        ),
    ),
}
READERS: Final[dict[type[Any], Callable[[bytes, int], Command]]] = {
    Transfer: read_transfer,
    PostPending: read_post_pending,
    VoidPending: read_void_pending,
    OpenAccount: read_open_account,
    PostTransaction: read_post_transaction,
}
