"""Hand-written Avro binary readers for the state records a restore decodes (issue 17).

A partition's restore decodes every ``ledger.balances`` record it reads back: after the standard
workload ~0.84 per live idempotency key, almost all ``TransferState``. fastavro's ``_read_data``
interprets the parsed schema per field and builds a dict that ``schemas.codec`` turns into the
model value: 11.5 µs per ``TransferState`` (7.3 µs by hand; bench/README.md, "Restore"). The
readers here know the field order of ``TransferState``, ``AccountState`` and ``TenantHead`` and
read the Avro binary encoding directly (Avro 1.11 specification, "Binary Encoding"; the
writers' counterpart is ``schemas.avro_writers``):

* ``long``/``int``: a little-endian base-128 varint, then zig-zag;
* ``string``: its length as a long, then UTF-8 (decoded strictly, as fastavro does);
* ``boolean``: one byte, 0 or 1; ``fixed``: the bytes as they are;
* ``enum``: the symbol's index as a long; ``["null", X]``: the branch index (0 or 1), then X.

A reader takes only what is plainly valid: longs within int64 (at most ten bytes), ints within
int32, booleans 0 or 1, indexes within their enum or union, lengths within the record, valid
UTF-8, and no byte left after the record. Anything else raises ``IndexError`` (a short record) or
``ValueError`` (``UnicodeDecodeError`` included), never an error of its own: ``schemas.codec``,
which calls a reader only for the current schema's header of its record type and only while that
schema has the field layout the reader was written for (``field_layout``), then decodes the
record through fastavro, whose value or ``DecodeError`` stands. The values equal fastavro's,
compared by a Hypothesis test (``tests/unit/test_avro_readers.py``).

Strings that repeat across records (tenant and account ids, currencies) are decoded once and
shared by the records that hold them (a bounded cache): a restored transfer keeps its own id and
shares the other four strings (memory per key, bench/README.md).

The header every ledger event starts with (``EVENT_HEADER_LAYOUT``: tenant, sequence, event id,
idempotency key, effective time, balances after, previous hash) is read here once for the two
hand-written event readers, under the same contract: ``read_event_header`` gives the
projection's fastavro dict (``projections.event_reader``), ``skim_event_header`` the matcher's
tenant, event id and effective time (``reconciliation.event_movements``); both read and check
every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from schemas._generated_records import BUILDERS
from schemas.model import AccountState, TenantHead, TransferState, TransferStatus

INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1
LONG_BYTES_MAX: Final = 10  # a varint of an int64 (zig-zag) never needs more
HASH_BYTES: Final = 32  # the Sha256 fixed
NULL_BRANCH: Final = 0
VALUE_BRANCH: Final = 1
# Repeating strings (ids, codes) up to this many UTF-8 bytes are decoded once and shared by the
# records that hold them, through a cache of at most STRING_CACHE_SIZE_MAX entries (cleared when
# full, as the writers' cache is).
SHARED_STRING_BYTES_MAX: Final = 64
STRING_CACHE_SIZE_MAX: Final = 65_536
_decoded_strings: dict[bytes, str] = {}  # encoded string (without its length) -> the str


# --------------------------------------------------------------------------- primitive values
#
# Each takes the record's bytes and a position and returns (value, next position). A short
# record raises IndexError (``data[position]``) and anything not plain a ValueError: both mean
# "the generic decoder decides" (``schemas.codec.decode_state``).


def read_long(data: bytes, position: int) -> tuple[int, int]:
    """An Avro ``long``: base-128 varint, least significant group first, then zig-zag.

    The first five bytes are unrolled (a loop costs twice as much per byte): amounts below
    2^34 end there; timestamps in microseconds take eight bytes (``_read_long_tail``)."""
    byte = data[position]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), position + 1
    number = byte & 0x7F
    byte = data[position + 1]
    number |= (byte & 0x7F) << 7
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 2
    byte = data[position + 2]
    number |= (byte & 0x7F) << 14
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 3
    byte = data[position + 3]
    number |= (byte & 0x7F) << 21
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 4
    byte = data[position + 4]
    number |= (byte & 0x7F) << 28
    if byte < 0x80:
        return (number >> 1) ^ -(number & 1), position + 5
    return _read_long_tail(data, position + 5, number)


def _read_long_tail(data: bytes, position: int, number: int) -> tuple[int, int]:
    """``read_long`` from its sixth byte on; ``number``: the first five bytes' 35 bits."""
    shift = 35
    end = position + LONG_BYTES_MAX - 5
    while True:
        if position >= end:
            raise ValueError("a long of more than ten bytes")
        byte = data[position]
        position += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    if number >> 64:
        raise ValueError("a long outside int64")
    return (number >> 1) ^ -(number & 1), position


def read_int(data: bytes, position: int) -> tuple[int, int]:
    """An Avro ``int``: a long within int32."""
    value, position = read_long(data, position)
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError("an int outside int32")
    return value, position


def read_boolean(data: bytes, position: int) -> tuple[bool, int]:
    byte = data[position]
    if byte > 1:
        raise ValueError(f"a boolean byte {byte}")
    return byte == 1, position + 1


def read_string(data: bytes, position: int) -> tuple[str, int]:
    """An Avro ``string`` (strict UTF-8: a malformed one raises UnicodeDecodeError, a
    ValueError)."""
    length = data[position]
    if length < 0x80 and not length & 1:  # a length below 64: one byte (most strings)
        position += 1
        length >>= 1
    else:
        length, position = read_long(data, position)
    end = position + length
    if length < 0 or end > len(data):
        raise ValueError("a string length outside the record")
    return data[position:end].decode(), end


def read_shared_string(data: bytes, position: int) -> tuple[str, int]:
    """``read_string`` of a string that repeats (a tenant, an account id, a currency): the same
    ``str`` object for the same bytes while they stay in the bounded cache."""
    length = data[position]
    if length < 0x80 and not length & 1:
        position += 1
        length >>= 1
    else:
        length, position = read_long(data, position)
    end = position + length
    if length < 0 or end > len(data):
        raise ValueError("a string length outside the record")
    encoded = data[position:end]
    text = _decoded_strings.get(encoded)
    if text is None:
        text = encoded.decode()
        if length <= SHARED_STRING_BYTES_MAX:
            if len(_decoded_strings) >= STRING_CACHE_SIZE_MAX:
                _decoded_strings.clear()
            _decoded_strings[encoded] = text
    return text, end


def read_optional_string(data: bytes, position: int) -> tuple[str | None, int]:
    """An Avro ``["null", "string"]``."""
    if data[position] == 0:  # the null branch
        return None, position + 1
    branch, position = read_long(data, position)
    if branch == NULL_BRANCH:
        return None, position
    if branch != VALUE_BRANCH:
        raise ValueError(f"union branch {branch}")
    return read_string(data, position)


def read_optional_long(data: bytes, position: int) -> tuple[int | None, int]:
    """An Avro ``["null", "long"]``."""
    if data[position] == 0:  # the null branch
        return None, position + 1
    branch, position = read_long(data, position)
    if branch == NULL_BRANCH:
        return None, position
    if branch != VALUE_BRANCH:
        raise ValueError(f"union branch {branch}")
    return read_long(data, position)


def read_fixed(data: bytes, position: int, size: int) -> tuple[bytes, int]:
    end = position + size
    if end > len(data):
        raise ValueError("a fixed longer than the record")
    return data[position:end], end


# --------------------------------------------------------------------------- ledger events
#
# Every ledger event starts with the same seven fields and ends with the same three (each event
# type's own fields sit between). The hand-written event readers of the projection
# (``projections.event_reader``) and of the matcher (``reconciliation.event_movements``) read
# the header here, each only while the current schema of its event type has this layout.

EVENT_HEADER_LAYOUT: Final = (
    ("tenant_id", "string"),
    ("sequence", "long"),
    ("event_id", "string"),
    ("idempotency_key", "null|string"),
    ("effective_at_us", "long"),
    ("balances", "array"),
    ("prev_hash", f"fixed{HASH_BYTES}"),
)
EVENT_TRAILER_LAYOUT: Final = (
    ("metadata", "map"),
    ("actor", "string"),
    ("hash", f"fixed{HASH_BYTES}"),
)
BALANCE_RECORD_NAME: Final = "streamledger.v1.AccountBalance"
BALANCE_LAYOUT: Final = (
    ("account_id", "string"),
    ("currency", "string"),
    ("debits_posted", "long"),
    ("credits_posted", "long"),
    ("debits_pending", "long"),
    ("credits_pending", "long"),
)


def read_block_count(data: bytes, position: int) -> tuple[int, int]:
    """An array's or map's next block count (a negative count is followed by the block's byte
    size, not needed here: read and dropped)."""
    count, position = read_long(data, position)
    if count < 0:
        _, position = read_long(data, position)
        count = -count
    return count, position


def skip_fixed(data: bytes, position: int, size: int) -> int:
    """The position after a ``fixed`` of ``size`` bytes (``read_fixed`` without the bytes)."""
    end = position + size
    if end > len(data):
        raise ValueError("a fixed longer than the record")
    return end


def _read_event_head(data: bytes, position: int) -> tuple[str, int, str, str | None, int, int]:
    """The header's first five fields (tenant_id, sequence, event_id, idempotency_key,
    effective_at_us) and the position of the balances after them."""
    tenant_id, position = read_string(data, position)
    sequence, position = read_long(data, position)
    event_id, position = read_string(data, position)
    idempotency_key, position = read_optional_string(data, position)
    effective_at_us, position = read_long(data, position)
    return tenant_id, sequence, event_id, idempotency_key, effective_at_us, position


def _read_balances(data: bytes, position: int) -> tuple[list[dict[str, Any]], int]:
    """The balances after the event, as fastavro's list of dicts."""
    balances: list[dict[str, Any]] = []
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            account_id, position = read_string(data, position)
            currency, position = read_string(data, position)
            debits_posted, position = read_long(data, position)
            credits_posted, position = read_long(data, position)
            debits_pending, position = read_long(data, position)
            credits_pending, position = read_long(data, position)
            balances.append(
                {
                    "account_id": account_id,
                    "currency": currency,
                    "debits_posted": debits_posted,
                    "credits_posted": credits_posted,
                    "debits_pending": debits_pending,
                    "credits_pending": credits_pending,
                }
            )
        count, position = read_block_count(data, position)
    return balances, position


def _skip_balances(data: bytes, position: int) -> int:
    """The balances after the event: read and checked as ``_read_balances`` reads them, not
    kept."""
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            _, position = read_string(data, position)  # account_id
            _, position = read_string(data, position)  # currency
            for _ in range(4):  # debits/credits posted, debits/credits pending
                _, position = read_long(data, position)
        count, position = read_block_count(data, position)
    return position


def read_event_header(data: bytes, position: int) -> tuple[dict[str, Any], int]:
    """The header (``EVENT_HEADER_LAYOUT``) from ``position``, as fastavro's dict of its seven
    fields in schema order, and the position after it."""
    tenant_id, sequence, event_id, idempotency_key, effective_at_us, position = _read_event_head(
        data, position
    )
    balances, position = _read_balances(data, position)
    prev_hash, position = read_fixed(data, position, HASH_BYTES)
    record = {
        "tenant_id": tenant_id,
        "sequence": sequence,
        "event_id": event_id,
        "idempotency_key": idempotency_key,
        "effective_at_us": effective_at_us,
        "balances": balances,
        "prev_hash": prev_hash,
    }
    return record, position


def skim_event_header(data: bytes, position: int) -> tuple[str, str, int, int]:
    """Of the header from ``position``: the tenant, the event id, the effective time and the
    position after the header; the other fields are read and checked as ``read_event_header``
    reads them, not kept."""
    tenant_id, _, event_id, _, effective_at_us, position = _read_event_head(data, position)
    position = _skip_balances(data, position)
    return tenant_id, event_id, effective_at_us, skip_fixed(data, position, HASH_BYTES)


# --------------------------------------------------------------------------- state records

_new_transfer_state: Final = BUILDERS[TransferState]
_new_account_state: Final = BUILDERS[AccountState]
_new_tenant_head: Final = BUILDERS[TenantHead]


def transfer_statuses(symbols: tuple[str, ...]) -> tuple[TransferStatus, ...]:
    """The model's status of each index of the schema's enum (by symbol name, as the generic
    decoder converts it)."""
    return tuple(TransferStatus[symbol] for symbol in symbols)


def _end(data: bytes, position: int) -> None:
    if position != len(data):
        raise ValueError(f"{len(data) - position} bytes left after the record")


def read_transfer_state(
    data: bytes, position: int, statuses: tuple[TransferStatus, ...]
) -> TransferState:
    """A ``TransferState`` body from ``position`` to the end of ``data`` (schema field order)."""
    tenant_id, position = read_shared_string(data, position)
    transfer_id, position = read_string(data, position)
    debit_account_id, position = read_shared_string(data, position)
    credit_account_id, position = read_shared_string(data, position)
    currency, position = read_shared_string(data, position)
    amount, position = read_long(data, position)
    status, position = read_long(data, position)
    amount_posted, position = read_long(data, position)
    amount_reversed, position = read_long(data, position)
    reverses, position = read_optional_string(data, position)
    expires_at_us, position = read_optional_long(data, position)
    last_sequence, position = read_long(data, position)
    _end(data, position)
    if status < 0:
        raise ValueError(f"enum index {status}")
    record: TransferState = _new_transfer_state(
        tenant_id=tenant_id,
        transfer_id=transfer_id,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        currency=currency,
        amount=amount,
        status=statuses[status],  # an index past the symbols: IndexError, the generic path
        amount_posted=amount_posted,
        amount_reversed=amount_reversed,
        reverses=reverses,
        expires_at_us=expires_at_us,
        last_sequence=last_sequence,
    )
    return record


def _skip_string(data: bytes, position: int) -> int:
    """The position after an Avro ``string`` (its bytes are not decoded)."""
    length = data[position]
    if length < 0x80 and not length & 1:
        position += 1
        length >>= 1
    else:
        length, position = read_long(data, position)
    end = position + length
    if length < 0 or end > len(data):
        raise ValueError("a string length outside the record")
    return end


def _skip_optional(data: bytes, position: int, *, string: bool) -> int:
    """The position after an Avro ``["null", "string"]`` or ``["null", "long"]``."""
    branch, position = read_long(data, position)
    if branch == NULL_BRANCH:
        return position
    if branch != VALUE_BRANCH:
        raise ValueError(f"union branch {branch}")
    return _skip_string(data, position) if string else read_long(data, position)[1]


def settled_transfer_sequence(data: bytes, position: int, pending: int, symbols: int) -> int:
    """The ``last_sequence`` of a ``TransferState`` body that is not pending, read without
    building the record or decoding its strings (decision 0102: a restore keeps such a transfer
    encoded), or -1 for a pending one (a negative sequence, never written, reads as pending:
    decoded). Same errors as ``read_transfer_state`` for what it
    reads; the strings' UTF-8 is checked when the record is decoded on first use. ``pending``:
    the index of ``TransferStatus.PENDING`` among the status enum's ``symbols`` (the schema's
    count, ``pending_status_index``: no enum lookup per record, decision 0129)."""
    for _ in range(5):  # tenant, transfer, debit and credit account ids, currency
        position = _skip_string(data, position)
    position = read_long(data, position)[1]  # amount
    status, position = read_long(data, position)
    if status < 0:
        raise ValueError(f"enum index {status}")
    if status >= symbols:
        raise IndexError(f"enum index {status} past the symbols")
    if status == pending:
        return -1
    position = read_long(data, position)[1]  # amount_posted
    position = read_long(data, position)[1]  # amount_reversed
    position = _skip_optional(data, position, string=True)  # reverses
    position = _skip_optional(data, position, string=False)  # expires_at_us
    last_sequence, position = read_long(data, position)
    _end(data, position)
    return last_sequence


def pending_status_index(statuses: tuple[TransferStatus, ...]) -> int:
    """The index of ``TransferStatus.PENDING`` in ``statuses`` (-1: none is pending)."""
    for index, status in enumerate(statuses):
        if status is TransferStatus.PENDING:
            return index
    return -1


def split_settled_transfers(
    values: dict[bytes, bytes],
    prefix: bytes,
    statuses: tuple[TransferStatus, ...],
    separator: bytes,
) -> tuple[dict[bytes, bytes], dict[bytes, int], list[bytes]]:
    """One pass over ``ledger.balances`` values by record key: the plain, settled
    ``TransferState`` records (``prefix``: their schema's header) by key, kept as they are; per
    tenant (the key's part before ``separator``) the highest ``last_sequence`` among them; and
    every other value, to decode (``settled_transfer_sequence``; decision 0102).

    Per record only what must be (decision 0129): ``settled`` starts as a copy of ``values``
    (one C-level copy) and loses the others, and the tenant's end in the key is found byte by
    byte (a method call per record cost more than the rest of the record's work)."""
    if len(separator) != 1:
        raise ValueError("the key separator must be one byte")
    mark = separator[0]
    settled = dict(values)  # the others are taken out below; the order stays the values'
    last_sequences: dict[bytes, int] = {}
    others: list[bytes] = []
    start = len(prefix)
    pending, symbols = pending_status_index(statuses), len(statuses)
    for key, value in values.items():
        sequence = -1
        if value.startswith(prefix):
            try:
                sequence = settled_transfer_sequence(value, start, pending, symbols)
            except (IndexError, ValueError):
                sequence = -1  # not plain (or not valid): the generic decoder decides
        if sequence < 0:
            others.append(value)
            del settled[key]
            continue
        end, length = 0, len(key)
        while end < length and key[end] != mark:
            end += 1
        if end == length:
            raise ValueError(f"a transfer's record key without {separator!r}: {key!r}")
        tenant = key[:end]
        if sequence > last_sequences.get(tenant, -1):
            last_sequences[tenant] = sequence
    return settled, last_sequences, others


def read_account_state(data: bytes, position: int) -> AccountState:
    """An ``AccountState`` body from ``position`` to the end of ``data`` (schema field order)."""
    tenant_id, position = read_shared_string(data, position)
    account_id, position = read_shared_string(data, position)
    currency, position = read_shared_string(data, position)
    asset_scale, position = read_int(data, position)
    debits_must_not_exceed_credits, position = read_boolean(data, position)
    credits_must_not_exceed_debits, position = read_boolean(data, position)
    overdraft_limit, position = read_optional_long(data, position)
    debits_posted, position = read_long(data, position)
    credits_posted, position = read_long(data, position)
    debits_pending, position = read_long(data, position)
    credits_pending, position = read_long(data, position)
    last_sequence, position = read_long(data, position)
    _end(data, position)
    record: AccountState = _new_account_state(
        tenant_id=tenant_id,
        account_id=account_id,
        currency=currency,
        asset_scale=asset_scale,
        debits_must_not_exceed_credits=debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=credits_must_not_exceed_debits,
        overdraft_limit=overdraft_limit,
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        credits_pending=credits_pending,
        last_sequence=last_sequence,
    )
    return record


def read_tenant_head(data: bytes, position: int) -> TenantHead:
    """A ``TenantHead`` body from ``position`` to the end of ``data`` (schema field order)."""
    tenant_id, position = read_shared_string(data, position)
    last_sequence, position = read_long(data, position)
    last_hash, position = read_fixed(data, position, HASH_BYTES)
    last_effective_at_us, position = read_long(data, position)
    _end(data, position)
    record: TenantHead = _new_tenant_head(
        tenant_id=tenant_id,
        last_sequence=last_sequence,
        last_hash=last_hash,
        last_effective_at_us=last_effective_at_us,
    )
    return record


# --------------------------------------------------------------------------- the schema check

# The field layout each reader was written for: (name, type) in schema order, the type as
# ``field_layout`` spells it. ``schemas.codec`` uses a reader only while the current schema of
# its record has exactly this layout.
TRANSFER_STATE_LAYOUT: Final = (
    ("tenant_id", "string"),
    ("transfer_id", "string"),
    ("debit_account_id", "string"),
    ("credit_account_id", "string"),
    ("currency", "string"),
    ("amount", "long"),
    ("status", "enum"),
    ("amount_posted", "long"),
    ("amount_reversed", "long"),
    ("reverses", "null|string"),
    ("expires_at_us", "null|long"),
    ("last_sequence", "long"),
)
ACCOUNT_STATE_LAYOUT: Final = (
    ("tenant_id", "string"),
    ("account_id", "string"),
    ("currency", "string"),
    ("asset_scale", "int"),
    ("debits_must_not_exceed_credits", "boolean"),
    ("credits_must_not_exceed_debits", "boolean"),
    ("overdraft_limit", "null|long"),
    ("debits_posted", "long"),
    ("credits_posted", "long"),
    ("debits_pending", "long"),
    ("credits_pending", "long"),
    ("last_sequence", "long"),
)
TENANT_HEAD_LAYOUT: Final = (
    ("tenant_id", "string"),
    ("last_sequence", "long"),
    ("last_hash", f"fixed{HASH_BYTES}"),
    ("last_effective_at_us", "long"),
)


def _type_word(field_type: Any, named: Mapping[str, Any]) -> str:
    """A parsed Avro type as one word: ``long``, ``enum``, ``fixed32``, ``null|string``…"""
    if isinstance(field_type, list):
        return "|".join(_type_word(branch, named) for branch in field_type)
    if isinstance(field_type, str):
        field_type = named.get(field_type, field_type)
    if isinstance(field_type, str):
        return field_type
    kind = str(field_type["type"])
    if kind == "fixed":
        return f"fixed{field_type['size']}"
    return kind if kind in ("enum", "record", "array", "map") else _type_word(kind, named)


def field_layout(wire: Mapping[str, Any], named: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(name, type word) of each field of a parsed record schema; ``named``: its named types."""
    return tuple((str(field["name"]), _type_word(field["type"], named)) for field in wire["fields"])


def items_written_for(
    wire: Mapping[str, Any],
    named: Mapping[str, Any],
    field_name: str,
    record_name: str,
    layout: tuple[tuple[str, str], ...],
) -> bool:
    """Whether the array field ``field_name`` of a parsed record schema holds records named
    ``record_name`` of the field layout ``layout`` (``field_layout``'s words): an array's own
    layout word does not say what its items are."""
    for field in wire["fields"]:
        if field["name"] != field_name:
            continue
        field_type = field["type"]
        items = field_type.get("items") if isinstance(field_type, dict) else None
        item = named.get(items) if isinstance(items, str) else items
        return (
            isinstance(item, dict)
            and item.get("name") == record_name
            and field_layout(item, named) == layout
        )
    return False
