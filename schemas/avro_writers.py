"""Hand-written Avro binary writers for the processor's hot path (issue 16 §5, issue 17).

fastavro's ``write_data`` interprets the parsed schema per field (a dict lookup by name and a
type dispatch each): about 0.6 µs per field, 75 µs for a 10-posting ``TransactionPosted`` with
its 13 balances, most of the cost of sealing its event. The writer here knows that one record's
field order (``schemas/TransactionPosted.avsc``) and writes the same Avro binary encoding
directly (Avro 1.11 specification, "Binary Encoding"). Since decision 0104 the records the
processor writes for every command are written here too: the single-leg events
(``TransferPosted``, ``TransferPending``, ``PendingPosted``, ``PendingVoided``,
``PendingExpired``), the ``Outcome`` and the ``AccountState`` and ``TransferState`` records
(fastavro took 10-20 µs for each, ~40 µs of a command's ~150 µs of CPU):

* ``long``: zig-zag, then a little-endian base-128 varint;
* ``string``: its UTF-8 length as a long, then the bytes (a repeating string, such as an
  account id or a currency, is encoded once and kept in a bounded cache);
* ``["null", "string"]``: the branch index as a long (0 or 1), then the string;
* ``array``/``map``: one block (the item count as a long, the items) then a 0 count; an empty
  one is the 0 alone; a ``map`` is written in the order of ``dict(metadata)``, as the codec
  hands it to fastavro;
* ``fixed``: the bytes as they are; ``bytes``: their length as a long, then the bytes;
* ``int``: as a ``long``, within int32; ``boolean``: one byte, 0 or 1; ``enum``: the symbol's
  index in the schema as a long (the caller maps the member to its index).

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

from schemas.model import (
    AccountBalance,
    AccountState,
    CommandHeader,
    EventHeader,
    OpenAccount,
    Outcome,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    Posting,
    PostPending,
    TransactionPosted,
    TransactionState,
    Transfer,
    TransferPending,
    TransferPosted,
    TransferState,
    TransferStatus,
    VoidPending,
)
from streamledger.errors import StreamLedgerError

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1
STRING_CACHE_SIZE_MAX: Final = 65_536  # encoded account ids and currencies; cleared when full
_encoded_strings: dict[str, bytes] = {}
_NULL_BRANCH: Final = b"\x00"
_SECOND_BRANCH: Final = b"\x02"  # union branch index 1, zig-zag
_EMPTY_BLOCKS: Final = b"\x00"
_FALSE: Final = b"\x00"
_TRUE: Final = b"\x01"


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
    write_balances(buffer, event.balances)
    write_fixed(buffer, event.prev_hash, 32)
    write_string(buffer, event.transaction_id)
    _write_postings(buffer, event)
    write_optional_string(buffer, event.reverses)
    write_string_map(buffer, event.metadata)
    write_string(buffer, event.actor)  # since v1.7: inside the hashed bytes
    write_fixed(buffer, hash_bytes, 32)


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


# --------------------------------------------------------------------------- per-command records
# (decision 0104): the single-leg events, the outcome, the account and transfer state records


def write_cached_string(buffer: bytearray, value: str) -> None:
    """An Avro ``string`` that repeats (a tenant, account or transfer id, a currency, a type)."""
    encoded = _encoded_strings.get(value)
    if encoded is None or type(value) is not str:
        encoded = _encoded_string(value)
    buffer += encoded


def write_bytes(buffer: bytearray, value: bytes) -> None:
    """An Avro ``bytes``: the length as a long, then the bytes."""
    if type(value) is not bytes:
        raise NotPlainError(f"not bytes: {value!r}")
    write_long(buffer, len(value))
    buffer += value


def write_boolean(buffer: bytearray, value: bool) -> None:
    if type(value) is not bool:
        raise NotPlainError(f"not a bool: {value!r}")
    buffer += _TRUE if value else _FALSE


def write_int(buffer: bytearray, value: int) -> None:
    """An Avro ``int`` (the same encoding as a ``long``, within int32)."""
    if type(value) is not int or not INT32_MIN <= value <= INT32_MAX:
        raise NotPlainError(f"not an int32: {value!r}")
    write_long(buffer, value)


def write_balances(buffer: bytearray, balances: tuple[AccountBalance, ...]) -> None:
    """``array<AccountBalance>``: account_id, currency, then the four counters."""
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


def _write_event_head(buffer: bytearray, event: EventHeader) -> None:
    """The fields every event record starts with, in schema order (``EventHeader``)."""
    write_cached_string(buffer, event.tenant_id)
    write_long(buffer, event.sequence)
    write_string(buffer, event.event_id)
    write_optional_string(buffer, event.idempotency_key)
    write_long(buffer, event.effective_at_us)
    write_balances(buffer, event.balances)
    write_fixed(buffer, event.prev_hash, 32)


def _write_event_tail(buffer: bytearray, event: EventHeader, hash_bytes: bytes) -> None:
    """The fields every event record ends with: metadata, actor, hash."""
    write_string_map(buffer, event.metadata)
    write_cached_string(buffer, event.actor)
    write_fixed(buffer, hash_bytes, 32)


def _write_transfer_fields(
    buffer: bytearray,
    transfer_id: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
) -> None:
    write_string(buffer, transfer_id)
    write_cached_string(buffer, debit_account_id)
    write_cached_string(buffer, credit_account_id)
    write_long(buffer, amount)


def write_transfer_event(buffer: bytearray, event: EventHeader, hash_bytes: bytes) -> None:
    """A single-leg transfer event's Avro body (``TransferPosted``, ``TransferPending``,
    ``PendingPosted``, ``PendingVoided``, ``PendingExpired``: schemas/<name>.avsc, fields in
    schema order) with ``hash_bytes`` as its ``hash``; ``NotPlainError`` for anything else."""
    try:
        _write_event_head(buffer, event)
        _write_transfer_event_body(buffer, event)
        _write_event_tail(buffer, event, hash_bytes)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _write_transfer_event_body(buffer: bytearray, event: EventHeader) -> None:
    """The fields between the event head and its tail, by the event's exact type."""
    kind = type(event)
    if kind is TransferPosted:
        assert isinstance(event, TransferPosted)
        _write_transfer_fields(
            buffer, event.transfer_id, event.debit_account_id, event.credit_account_id, event.amount
        )
        write_cached_string(buffer, event.currency)
        write_optional_string(buffer, event.reverses)
    elif kind is TransferPending:
        assert isinstance(event, TransferPending)
        _write_transfer_fields(
            buffer, event.transfer_id, event.debit_account_id, event.credit_account_id, event.amount
        )
        write_cached_string(buffer, event.currency)
        write_optional_long(buffer, event.expires_at_us)
    elif kind is PendingPosted:
        assert isinstance(event, PendingPosted)
        _write_transfer_fields(
            buffer, event.transfer_id, event.debit_account_id, event.credit_account_id, event.amount
        )
        write_long(buffer, event.pending_amount)
        write_cached_string(buffer, event.currency)
    elif kind is PendingVoided or kind is PendingExpired:
        assert isinstance(event, (PendingVoided, PendingExpired))
        _write_transfer_fields(
            buffer, event.transfer_id, event.debit_account_id, event.credit_account_id, event.amount
        )
        write_cached_string(buffer, event.currency)
    else:
        raise NotPlainError(f"not a single-leg transfer event: {kind.__name__}")


def write_outcome(
    buffer: bytearray, outcome: Outcome, status_index: int, reason_index: int
) -> None:
    """``outcome``'s Avro body (schemas/Outcome.avsc, fields in schema order); the caller gives
    the enum indexes of its ``status`` and its ``reason`` (-1: no reason, the union's null)."""
    if type(outcome) is not Outcome:
        raise NotPlainError(f"not an Outcome: {type(outcome).__name__}")
    try:
        write_cached_string(buffer, outcome.tenant_id)
        write_string(buffer, outcome.idempotency_key)
        write_cached_string(buffer, outcome.command_type)
        write_fixed(buffer, outcome.fingerprint, 32)
        write_bytes(buffer, outcome.field_fingerprints)
        write_long(buffer, status_index)
        write_long_array(buffer, outcome.event_sequences)
        if reason_index < 0:
            buffer += _NULL_BRANCH
        else:
            buffer += _SECOND_BRANCH
            write_long(buffer, reason_index)
        write_string(buffer, outcome.detail)
        write_long(buffer, outcome.decided_at_us)
        write_optional_long(buffer, outcome.expires_at_us)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def write_account_state(buffer: bytearray, state: AccountState) -> None:
    """``state``'s Avro body (schemas/AccountState.avsc, fields in schema order)."""
    if type(state) is not AccountState:
        raise NotPlainError(f"not an AccountState: {type(state).__name__}")
    try:
        write_cached_string(buffer, state.tenant_id)
        write_cached_string(buffer, state.account_id)
        write_cached_string(buffer, state.currency)
        write_int(buffer, state.asset_scale)
        write_boolean(buffer, state.debits_must_not_exceed_credits)
        write_boolean(buffer, state.credits_must_not_exceed_debits)
        write_optional_long(buffer, state.overdraft_limit)
        write_longs(
            buffer,
            (
                state.debits_posted,
                state.credits_posted,
                state.debits_pending,
                state.credits_pending,
                state.last_sequence,
            ),
        )
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def write_transfer_state(buffer: bytearray, state: TransferState, status_index: int) -> None:
    """``state``'s Avro body (schemas/TransferState.avsc, fields in schema order); the caller
    gives the enum index of its ``status``."""
    if type(state) is not TransferState:
        raise NotPlainError(f"not a TransferState: {type(state).__name__}")
    try:
        write_cached_string(buffer, state.tenant_id)
        write_string(buffer, state.transfer_id)
        write_cached_string(buffer, state.debit_account_id)
        write_cached_string(buffer, state.credit_account_id)
        write_cached_string(buffer, state.currency)
        write_long(buffer, state.amount)
        write_long(buffer, status_index)
        write_long(buffer, state.amount_posted)
        write_long(buffer, state.amount_reversed)
        write_optional_string(buffer, state.reverses)
        write_optional_long(buffer, state.expires_at_us)
        write_long(buffer, state.last_sequence)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def write_command(buffer: bytearray, command: CommandHeader) -> None:
    """A single-leg command's Avro body (``Transfer``, ``PostPending``, ``VoidPending``,
    ``OpenAccount``: schemas/<name>.avsc, fields in schema order): what the SDK writes for every
    command it sends (decision 0104); ``NotPlainError`` for anything else."""
    try:
        write_cached_string(buffer, command.tenant_id)
        write_string(buffer, command.idempotency_key)
        write_long(buffer, command.submitted_at_us)
        write_string_map(buffer, command.metadata)
        _write_command_body(buffer, command)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _write_command_body(buffer: bytearray, command: CommandHeader) -> None:
    """The fields after the command header, by the command's exact type."""
    kind = type(command)
    if kind is Transfer:
        assert isinstance(command, Transfer)
        write_string(buffer, command.transfer_id)
        write_cached_string(buffer, command.debit_account_id)
        write_cached_string(buffer, command.credit_account_id)
        write_long(buffer, command.amount)
        write_cached_string(buffer, command.currency)
        write_boolean(buffer, command.pending)
        write_optional_long(buffer, command.pending_timeout_s)
        write_optional_string(buffer, command.reverses)
    elif kind is PostPending:
        assert isinstance(command, PostPending)
        write_string(buffer, command.transfer_id)
        write_optional_long(buffer, command.amount)
    elif kind is VoidPending:
        assert isinstance(command, VoidPending)
        write_string(buffer, command.transfer_id)
    elif kind is OpenAccount:
        assert isinstance(command, OpenAccount)
        write_cached_string(buffer, command.account_id)
        write_cached_string(buffer, command.currency)
        write_int(buffer, command.asset_scale)
        write_boolean(buffer, command.debits_must_not_exceed_credits)
        write_boolean(buffer, command.credits_must_not_exceed_debits)
        write_optional_long(buffer, command.overdraft_limit)
    else:
        raise NotPlainError(f"not a single-leg command: {kind.__name__}")
