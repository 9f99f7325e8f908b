"""Hand-written Avro binary writers for the multi-leg hot path (issue 16 §5).

fastavro's ``write_data`` interprets the parsed schema per field (a dict lookup by name and a
type dispatch each): about 0.6 µs per field, 75 µs for a 10-posting ``TransactionPosted`` with
its 13 balances, most of the cost of sealing its event. The writer here knows that one record's
field order (``schemas/TransactionPosted.avsc``) and writes the same Avro binary encoding
directly (Avro 1.11 specification, "Binary Encoding"):

* ``long``: zig-zag, then a little-endian base-128 varint;
* ``string``: its UTF-8 length as a long, then the bytes (a repeating string, such as an
  account id or a currency, is encoded once and kept in a bounded cache);
* ``["null", "string"]``: the branch index as a long (0 or 1), then the string;
* ``array``/``map``: one block (the item count as a long, the items) then a 0 count; an empty
  one is the 0 alone; a ``map`` is written in the order of ``dict(metadata)``, as the codec
  hands it to fastavro;
* ``fixed``: the bytes as they are.

The writer only takes values of the declared Python types within Avro's ranges: anything else
(a wrong type, a long outside int64, a string that is not UTF-8 encodable) raises
``NotPlainError`` and the caller uses fastavro's generic writer, whose answer (bytes or an
``EncodeError``) stands. Compiled with mypyc (decision 0092), a value not of its declared type
fails mypyc's own check first (a ``TypeError``, turned into ``NotPlainError`` by the two record
writers), and an ``int`` subclass such as ``bool`` is taken as the ``int`` it equals (fastavro
writes the same long). The bytes are fastavro's, compared by a Hypothesis test
(``tests/unit/test_avro_writers.py``).
"""

from __future__ import annotations

from typing import Final

from schemas.model import Posting, TransactionPosted, TransactionState, TransferStatus
from streamledger.errors import StreamLedgerError

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
STRING_CACHE_SIZE_MAX: Final = 65_536  # encoded account ids and currencies; cleared when full
_encoded_strings: dict[str, bytes] = {}
_NULL_BRANCH: Final = b"\x00"
_SECOND_BRANCH: Final = b"\x02"  # union branch index 1, zig-zag
_EMPTY_BLOCKS: Final = b"\x00"


class NotPlainError(StreamLedgerError):
    """A value the hand-written writer does not take: the generic writer decides.

    Internal to the codec: it never leaves ``schemas.codec``, which catches it and falls back."""


def write_long(buffer: bytearray, value: int) -> None:
    """An Avro ``long``: zig-zag, then a base-128 varint, least significant group first."""
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise NotPlainError(f"not an int64: {value!r}")
    number = value << 1 if value >= 0 else ~(value << 1)  # zig-zag
    if number < 0x80:
        buffer.append(number)
        return
    while number >= 0x80:
        buffer.append((number & 0x7F) | 0x80)
        number >>= 7
    buffer.append(number)


def write_longs(buffer: bytearray, values: tuple[int, ...]) -> None:
    """``write_long`` of each value in turn, in one call (a balance's four counters, an array's
    items: the call is most of the cost of a small long)."""
    for value in values:
        if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
            raise NotPlainError(f"not an int64: {value!r}")
        number = value << 1 if value >= 0 else ~(value << 1)  # zig-zag
        while number >= 0x80:
            buffer.append((number & 0x7F) | 0x80)
            number >>= 7
        buffer.append(number)


def _encoded_string(value: str) -> bytes:
    """An Avro ``string``'s bytes (length, UTF-8), cached: the values that repeat are ids."""
    encoded = _encoded_strings.get(value)
    if encoded is not None and type(value) is str:
        return encoded
    if type(value) is not str:
        raise NotPlainError(f"not a str: {value!r}")
    try:
        utf8 = value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: fastavro's answer stands
        raise NotPlainError(str(exc)) from exc
    length = bytearray()
    write_long(length, len(utf8))
    encoded = bytes(length) + utf8
    if len(_encoded_strings) >= STRING_CACHE_SIZE_MAX:
        _encoded_strings.clear()
    _encoded_strings[value] = encoded
    return encoded


def write_string(buffer: bytearray, value: str) -> None:
    """An Avro ``string`` that does not repeat (not cached)."""
    if type(value) is not str:
        raise NotPlainError(f"not a str: {value!r}")
    try:
        utf8 = value.encode()
    except UnicodeEncodeError as exc:
        raise NotPlainError(str(exc)) from exc
    write_long(buffer, len(utf8))
    buffer += utf8


def write_optional_string(buffer: bytearray, value: str | None) -> None:
    """An Avro ``["null", "string"]``."""
    if value is None:
        buffer += _NULL_BRANCH
        return
    buffer += _SECOND_BRANCH
    write_string(buffer, value)


def write_fixed(buffer: bytearray, value: bytes, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise NotPlainError(f"not {size} bytes: {value!r}")
    buffer += value


def write_string_map(buffer: bytearray, pairs: tuple[tuple[str, str], ...]) -> None:
    """An Avro ``map`` of strings from the model's sorted pairs, as ``dict(pairs)`` is written."""
    if type(pairs) is not tuple:
        raise NotPlainError(f"not a tuple: {pairs!r}")
    if pairs:
        entries = dict(pairs)
        write_long(buffer, len(entries))
        for key, value in entries.items():
            write_string(buffer, key)
            write_string(buffer, value)
    buffer += _EMPTY_BLOCKS


def write_transaction_posted(
    buffer: bytearray, event: TransactionPosted, hash_bytes: bytes
) -> None:
    """``event``'s Avro body (schemas/TransactionPosted.avsc, fields in schema order) with
    ``hash_bytes`` as its ``hash``; raises ``NotPlainError`` for anything not plain."""
    if type(event) is not TransactionPosted:
        raise NotPlainError(f"not a TransactionPosted: {type(event).__name__}")
    try:
        _write_transaction_posted_fields(buffer, event, hash_bytes)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _write_transaction_posted_fields(
    buffer: bytearray, event: TransactionPosted, hash_bytes: bytes
) -> None:
    write_string(buffer, event.tenant_id)
    write_long(buffer, event.sequence)
    write_string(buffer, event.event_id)
    write_optional_string(buffer, event.idempotency_key)
    write_long(buffer, event.effective_at_us)
    _write_balances(buffer, event)
    write_fixed(buffer, event.prev_hash, 32)
    write_string(buffer, event.transaction_id)
    _write_postings(buffer, event)
    write_optional_string(buffer, event.reverses)
    write_string_map(buffer, event.metadata)
    write_string(buffer, event.actor)  # since v1.7: inside the hashed bytes
    write_fixed(buffer, hash_bytes, 32)


def _write_balances(buffer: bytearray, event: TransactionPosted) -> None:
    """``array<AccountBalance>``: account_id, currency, then the four counters."""
    balances = event.balances
    if type(balances) is not tuple:
        raise NotPlainError("balances: not a tuple")
    if balances:
        write_long(buffer, len(balances))
        cached = _encoded_strings.get  # inline: the call is most of a cached string's cost
        for balance in balances:
            account_id, currency = balance.account_id, balance.currency
            if type(account_id) is not str or type(currency) is not str:
                raise NotPlainError(f"balance of {account_id!r}: not str")
            buffer += cached(account_id) or _encoded_string(account_id)
            buffer += cached(currency) or _encoded_string(currency)
            write_longs(
                buffer,
                (
                    balance.debits_posted,
                    balance.credits_posted,
                    balance.debits_pending,
                    balance.credits_pending,
                ),
            )
    buffer += _EMPTY_BLOCKS


def _write_postings(buffer: bytearray, event: TransactionPosted) -> None:
    write_postings(buffer, event.postings)


def write_postings(buffer: bytearray, postings: tuple[Posting, ...]) -> None:
    """``array<Posting>``: debit_account_id, credit_account_id, amount, currency."""
    if type(postings) is not tuple:
        raise NotPlainError("postings: not a tuple")
    if postings:
        write_long(buffer, len(postings))
        cached = _encoded_strings.get  # inline: the call is most of a cached string's cost
        for posting in postings:
            debit, credit = posting.debit_account_id, posting.credit_account_id
            currency = posting.currency
            if type(debit) is not str or type(credit) is not str or type(currency) is not str:
                raise NotPlainError(f"posting {debit!r} -> {credit!r}: not str")
            buffer += cached(debit) or _encoded_string(debit)
            buffer += cached(credit) or _encoded_string(credit)
            write_long(buffer, posting.amount)
            buffer += cached(currency) or _encoded_string(currency)
    buffer += _EMPTY_BLOCKS


def write_long_array(buffer: bytearray, values: tuple[int, ...]) -> None:
    """``array<long>``."""
    if type(values) is not tuple:
        raise NotPlainError("not a tuple")
    if values:
        write_long(buffer, len(values))
        write_longs(buffer, values)
    buffer += _EMPTY_BLOCKS


def write_optional_long(buffer: bytearray, value: int | None) -> None:
    """An Avro ``["null", "long"]``."""
    if value is None:
        buffer += _NULL_BRANCH
        return
    buffer += _SECOND_BRANCH
    write_long(buffer, value)


def write_transaction_state(
    buffer: bytearray, state: TransactionState, status_symbols: tuple[str, ...]
) -> None:
    """``state``'s Avro body (schemas/TransactionState.avsc, fields in schema order);
    ``status_symbols``: the ``TransferStatus`` enum's symbols, in schema order."""
    if type(state) is not TransactionState or type(state.status) is not TransferStatus:
        raise NotPlainError(f"not a plain TransactionState: {state!r}")
    try:
        _write_transaction_state_fields(buffer, state, status_symbols)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _write_transaction_state_fields(
    buffer: bytearray, state: TransactionState, status_symbols: tuple[str, ...]
) -> None:
    write_string(buffer, state.tenant_id)
    write_string(buffer, state.transaction_id)
    write_postings(buffer, state.postings)
    try:
        write_long(buffer, status_symbols.index(state.status.name))
    except ValueError as exc:
        raise NotPlainError(f"status {state.status.name} is not a symbol") from exc
    write_long_array(buffer, state.amounts_posted)
    write_long_array(buffer, state.amounts_reversed)
    write_optional_string(buffer, state.reverses)
    write_optional_long(buffer, state.expires_at_us)
    write_long(buffer, state.last_sequence)
