"""Hand-written Avro binary writers for the processor's hot path (issue 16 §5, issue 17).

fastavro's ``append_data`` interprets the parsed schema per field (a dict lookup by name and a
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

Compiled, the pattern is what counts (issue 17): each record is collected as a ``list[bytes]``
(a long's varint groups are one-byte ``bytes`` from a table, a repeating string its cached
encoding) and joined once onto the caller's ``bytearray``; the names the hot path reads are
``Final`` (C statics) and a long is checked against bounds mypyc compares unboxed first. A
``bytearray`` write, a bound method, a plain module global or a comparison with a boxed int
is a generic call each (compiled ``write_command``: 2.6 -> 1.8 µs, ``TransferPosted``: 6.0 ->
3.5 µs, CPU).
"""

from __future__ import annotations

import hashlib
from typing import Final, cast

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
# Within mypyc's unboxed ints (62 bits and a sign): compared natively, where a comparison with
# INT64_MIN or INT64_MAX (boxed) is a generic call; a long checks these first.
_SHORT_INT_MIN: Final = -0x3FFF_FFFF_FFFF_FFFF
_SHORT_INT_MAX: Final = 0x3FFF_FFFF_FFFF_FFFF
INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1
STRING_CACHE_SIZE_MAX: Final = 65_536  # encoded account ids and currencies; cleared when full
_encoded_strings: Final[dict[str, bytes]] = {}  # Final: a C static, compiled
_NULL_BRANCH: Final = b"\x00"
_SECOND_BRANCH: Final = b"\x02"  # union branch index 1, zig-zag
_EMPTY_BLOCKS: Final = b"\x00"
_FALSE: Final = b"\x00"
_TRUE: Final = b"\x01"
# The record types the dispatch compares with, as Final names: compiled, each a C static where
# an imported name is a lookup in the module's dict.
_TRANSFER_POSTED_TYPE: Final = TransferPosted
_TRANSFER_PENDING_TYPE: Final = TransferPending
_PENDING_POSTED_TYPE: Final = PendingPosted
_PENDING_VOIDED_TYPE: Final = PendingVoided
_PENDING_EXPIRED_TYPE: Final = PendingExpired
_TRANSFER_TYPE: Final = Transfer
_POST_PENDING_TYPE: Final = PostPending
_VOID_PENDING_TYPE: Final = VoidPending
_OPEN_ACCOUNT_TYPE: Final = OpenAccount
_SingleLegTransferEvent = (
    TransferPosted | TransferPending | PendingPosted | PendingVoided | PendingExpired
)
_BYTE_VALUES: Final[tuple[bytes, ...]] = tuple(bytes((value,)) for value in range(256))


class NotPlainError(StreamLedgerError):
    """A value the hand-written writer does not take: the generic writer decides.

    Internal to the codec: it never leaves ``schemas.codec``, which catches it and falls back."""


def append_long(parts: list[bytes], value: int) -> None:
    """An Avro ``long``: zig-zag, then a base-128 varint, least significant group first (each
    group a cached one-byte ``bytes``: a list append and a tuple index, both native when
    compiled, where a ``bytearray.append`` is a generic call)."""
    if type(value) is not int:
        raise NotPlainError(f"not an int64: {value!r}")
    if not _SHORT_INT_MIN <= value <= _SHORT_INT_MAX and not INT64_MIN <= value <= INT64_MAX:
        raise NotPlainError(f"not an int64: {value!r}")
    number = value << 1 if value >= 0 else ~(value << 1)  # zig-zag
    while number >= 0x80:
        parts.append(_BYTE_VALUES[(number & 0x7F) | 0x80])
        number >>= 7
    parts.append(_BYTE_VALUES[number])


def append_longs(parts: list[bytes], values: tuple[int, ...]) -> None:
    """``append_long`` of each value in turn (an array's items)."""
    for value in values:
        append_long(parts, value)


def write_long(buffer: bytearray, value: int) -> None:
    """An Avro ``long`` onto ``buffer``."""
    parts: list[bytes] = []
    append_long(parts, value)
    buffer += b"".join(parts)


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
    length: list[bytes] = []
    append_long(length, len(utf8))
    length.append(utf8)
    encoded = b"".join(length)
    if len(_encoded_strings) >= STRING_CACHE_SIZE_MAX:
        _encoded_strings.clear()
    _encoded_strings[value] = encoded
    return encoded


def append_string(parts: list[bytes], value: str) -> None:
    """An Avro ``string`` that does not repeat (not cached)."""
    if type(value) is not str:
        raise NotPlainError(f"not a str: {value!r}")
    try:
        utf8 = value.encode()
    except UnicodeEncodeError as exc:
        raise NotPlainError(str(exc)) from exc
    append_long(parts, len(utf8))
    parts.append(utf8)


def append_optional_string(parts: list[bytes], value: str | None) -> None:
    """An Avro ``["null", "string"]``."""
    if value is None:
        parts.append(_NULL_BRANCH)
        return
    parts.append(_SECOND_BRANCH)
    append_string(parts, value)


def append_fixed(parts: list[bytes], value: bytes, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise NotPlainError(f"not {size} bytes: {value!r}")
    parts.append(value)


def append_string_map(parts: list[bytes], pairs: tuple[tuple[str, str], ...]) -> None:
    """An Avro ``map`` of strings from the model's sorted pairs, as ``dict(pairs)`` is written."""
    if type(pairs) is not tuple:
        raise NotPlainError(f"not a tuple: {pairs!r}")
    if pairs:
        entries = dict(pairs)
        append_long(parts, len(entries))
        for key, value in entries.items():
            append_string(parts, key)
            append_string(parts, value)
    parts.append(_EMPTY_BLOCKS)


def _append_transaction_posted(
    parts: list[bytes], event: TransactionPosted, hash_bytes: bytes
) -> None:
    """``event``'s Avro body (schemas/TransactionPosted.avsc, fields in schema order) with
    ``hash_bytes`` as its ``hash``; raises ``NotPlainError`` for anything not plain."""
    if type(event) is not TransactionPosted:
        raise NotPlainError(f"not a TransactionPosted: {type(event).__name__}")
    try:
        _append_transaction_posted_fields(parts, event, hash_bytes)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_transaction_posted_fields(
    parts: list[bytes], event: TransactionPosted, hash_bytes: bytes
) -> None:
    append_string(parts, event.tenant_id)
    append_long(parts, event.sequence)
    append_string(parts, event.event_id)
    append_optional_string(parts, event.idempotency_key)
    append_long(parts, event.effective_at_us)
    append_balances(parts, event.balances)
    append_fixed(parts, event.prev_hash, 32)
    append_string(parts, event.transaction_id)
    _append_postings(parts, event)
    append_optional_string(parts, event.reverses)
    append_string_map(parts, event.metadata)
    append_string(parts, event.actor)  # since v1.7: inside the hashed bytes
    append_fixed(parts, hash_bytes, 32)


def _append_postings(parts: list[bytes], event: TransactionPosted) -> None:
    append_postings(parts, event.postings)


def append_postings(parts: list[bytes], postings: tuple[Posting, ...]) -> None:
    """``array<Posting>``: debit_account_id, credit_account_id, amount, currency."""
    if type(postings) is not tuple:
        raise NotPlainError("postings: not a tuple")
    if postings:
        append_long(parts, len(postings))
        for posting in postings:
            debit, credit = posting.debit_account_id, posting.credit_account_id
            currency = posting.currency
            if type(debit) is not str or type(credit) is not str or type(currency) is not str:
                raise NotPlainError(f"posting {debit!r} -> {credit!r}: not str")
            parts.append(_encoded_strings.get(debit) or _encoded_string(debit))
            parts.append(_encoded_strings.get(credit) or _encoded_string(credit))
            append_long(parts, posting.amount)
            parts.append(_encoded_strings.get(currency) or _encoded_string(currency))
    parts.append(_EMPTY_BLOCKS)


def append_long_array(parts: list[bytes], values: tuple[int, ...]) -> None:
    """``array<long>``."""
    if type(values) is not tuple:
        raise NotPlainError("not a tuple")
    if values:
        append_long(parts, len(values))
        append_longs(parts, values)
    parts.append(_EMPTY_BLOCKS)


def append_optional_long(parts: list[bytes], value: int | None) -> None:
    """An Avro ``["null", "long"]``."""
    if value is None:
        parts.append(_NULL_BRANCH)
        return
    parts.append(_SECOND_BRANCH)
    append_long(parts, value)


def _append_transaction_state(
    parts: list[bytes], state: TransactionState, status_symbols: tuple[str, ...]
) -> None:
    """``state``'s Avro body (schemas/TransactionState.avsc, fields in schema order);
    ``status_symbols``: the ``TransferStatus`` enum's symbols, in schema order."""
    if type(state) is not TransactionState or type(state.status) is not TransferStatus:
        raise NotPlainError(f"not a plain TransactionState: {state!r}")
    try:
        _append_transaction_state_fields(parts, state, status_symbols)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_transaction_state_fields(
    parts: list[bytes], state: TransactionState, status_symbols: tuple[str, ...]
) -> None:
    append_string(parts, state.tenant_id)
    append_string(parts, state.transaction_id)
    append_postings(parts, state.postings)
    try:
        append_long(parts, status_symbols.index(state.status.name))
    except ValueError as exc:
        raise NotPlainError(f"status {state.status.name} is not a symbol") from exc
    append_long_array(parts, state.amounts_posted)
    append_long_array(parts, state.amounts_reversed)
    append_optional_string(parts, state.reverses)
    append_optional_long(parts, state.expires_at_us)
    append_long(parts, state.last_sequence)


# --------------------------------------------------------------------------- per-command records
# (decision 0104): the single-leg events, the outcome, the account and transfer state records


def append_cached_string(parts: list[bytes], value: str) -> None:
    """An Avro ``string`` that repeats (a tenant, account or transfer id, a currency, a type)."""
    encoded = _encoded_strings.get(value)
    if encoded is None or type(value) is not str:
        encoded = _encoded_string(value)
    parts.append(encoded)


def append_bytes(parts: list[bytes], value: bytes) -> None:
    """An Avro ``bytes``: the length as a long, then the bytes."""
    if type(value) is not bytes:
        raise NotPlainError(f"not bytes: {value!r}")
    append_long(parts, len(value))
    parts.append(value)


def append_boolean(parts: list[bytes], value: bool) -> None:
    if type(value) is not bool:
        raise NotPlainError(f"not a bool: {value!r}")
    parts.append(_TRUE if value else _FALSE)


def append_int(parts: list[bytes], value: int) -> None:
    """An Avro ``int`` (the same encoding as a ``long``, within int32)."""
    if type(value) is not int or not INT32_MIN <= value <= INT32_MAX:
        raise NotPlainError(f"not an int32: {value!r}")
    append_long(parts, value)


def append_balances(parts: list[bytes], balances: tuple[AccountBalance, ...]) -> None:
    """``array<AccountBalance>``: account_id, currency, then the four counters."""
    if type(balances) is not tuple:
        raise NotPlainError("balances: not a tuple")
    if balances:
        append_long(parts, len(balances))
        for balance in balances:
            account_id, currency = balance.account_id, balance.currency
            if type(account_id) is not str or type(currency) is not str:
                raise NotPlainError(f"balance of {account_id!r}: not str")
            parts.append(_encoded_strings.get(account_id) or _encoded_string(account_id))
            parts.append(_encoded_strings.get(currency) or _encoded_string(currency))
            append_long(parts, balance.debits_posted)  # one call each: no tuple to build
            append_long(parts, balance.credits_posted)
            append_long(parts, balance.debits_pending)
            append_long(parts, balance.credits_pending)
    parts.append(_EMPTY_BLOCKS)


def _append_event_head(parts: list[bytes], event: EventHeader) -> None:
    """The fields every event record starts with, in schema order (``EventHeader``)."""
    append_cached_string(parts, event.tenant_id)
    append_long(parts, event.sequence)
    append_string(parts, event.event_id)
    append_optional_string(parts, event.idempotency_key)
    append_long(parts, event.effective_at_us)
    append_balances(parts, event.balances)
    append_fixed(parts, event.prev_hash, 32)


def _append_event_tail(parts: list[bytes], event: EventHeader, hash_bytes: bytes) -> None:
    """The fields every event record ends with: metadata, actor, hash."""
    append_string_map(parts, event.metadata)
    append_cached_string(parts, event.actor)
    append_fixed(parts, hash_bytes, 32)


def _append_transfer_event(parts: list[bytes], event: EventHeader, hash_bytes: bytes) -> None:
    """A single-leg transfer event's Avro body (``TransferPosted``, ``TransferPending``,
    ``PendingPosted``, ``PendingVoided``, ``PendingExpired``: schemas/<name>.avsc, fields in
    schema order) with ``hash_bytes`` as its ``hash``; ``NotPlainError`` for anything else."""
    try:
        _append_event_head(parts, event)
        _append_transfer_event_body(parts, event)
        _append_event_tail(parts, event, hash_bytes)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_transfer_event_body(parts: list[bytes], event: EventHeader) -> None:
    """The fields between the event head and its tail, by the event's exact type. The five
    records share one field order (schemas/<name>.avsc), written here once: ``transfer_id``,
    ``debit_account_id``, ``credit_account_id``, ``amount``, then ``pending_amount`` for a
    ``PendingPosted`` only, ``currency``, then ``reverses`` for a ``TransferPosted`` and
    ``expires_at_us`` for a ``TransferPending``; ``PendingVoided`` and ``PendingExpired`` end
    at ``currency``. (``cast`` after the exact type is checked: compiled, a ``cast`` to these
    classes of an uncompiled module is free, where each ``isinstance`` is a call.)"""
    kind = type(event)
    if not (
        kind is _TRANSFER_POSTED_TYPE
        or kind is _TRANSFER_PENDING_TYPE
        or kind is _PENDING_POSTED_TYPE
        or kind is _PENDING_VOIDED_TYPE
        or kind is _PENDING_EXPIRED_TYPE
    ):
        raise NotPlainError(f"not a single-leg transfer event: {kind.__name__}")
    transfer = cast(_SingleLegTransferEvent, event)
    append_string(parts, transfer.transfer_id)
    append_cached_string(parts, transfer.debit_account_id)
    append_cached_string(parts, transfer.credit_account_id)
    append_long(parts, transfer.amount)
    if kind is _PENDING_POSTED_TYPE:
        append_long(parts, cast(PendingPosted, event).pending_amount)
    append_cached_string(parts, transfer.currency)
    if kind is _TRANSFER_POSTED_TYPE:
        append_optional_string(parts, cast(TransferPosted, event).reverses)
    elif kind is _TRANSFER_PENDING_TYPE:
        append_optional_long(parts, cast(TransferPending, event).expires_at_us)


def _append_outcome(
    parts: list[bytes], outcome: Outcome, status_index: int, reason_index: int
) -> None:
    """``outcome``'s Avro body (schemas/Outcome.avsc, fields in schema order); the caller gives
    the enum indexes of its ``status`` and its ``reason`` (-1: no reason, the union's null)."""
    if type(outcome) is not Outcome:
        raise NotPlainError(f"not an Outcome: {type(outcome).__name__}")
    try:
        append_cached_string(parts, outcome.tenant_id)
        append_string(parts, outcome.idempotency_key)
        append_cached_string(parts, outcome.command_type)
        append_fixed(parts, outcome.fingerprint, 32)
        append_bytes(parts, outcome.field_fingerprints)
        append_long(parts, status_index)
        append_long_array(parts, outcome.event_sequences)
        if reason_index < 0:
            parts.append(_NULL_BRANCH)
        else:
            parts.append(_SECOND_BRANCH)
            append_long(parts, reason_index)
        append_string(parts, outcome.detail)
        append_long(parts, outcome.decided_at_us)
        append_optional_long(parts, outcome.expires_at_us)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_account_state(parts: list[bytes], state: AccountState) -> None:
    """``state``'s Avro body (schemas/AccountState.avsc, fields in schema order)."""
    if type(state) is not AccountState:
        raise NotPlainError(f"not an AccountState: {type(state).__name__}")
    try:
        append_cached_string(parts, state.tenant_id)
        append_cached_string(parts, state.account_id)
        append_cached_string(parts, state.currency)
        append_int(parts, state.asset_scale)
        append_boolean(parts, state.debits_must_not_exceed_credits)
        append_boolean(parts, state.credits_must_not_exceed_debits)
        append_optional_long(parts, state.overdraft_limit)
        append_long(parts, state.debits_posted)
        append_long(parts, state.credits_posted)
        append_long(parts, state.debits_pending)
        append_long(parts, state.credits_pending)
        append_long(parts, state.last_sequence)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_transfer_state(parts: list[bytes], state: TransferState, status_index: int) -> None:
    """``state``'s Avro body (schemas/TransferState.avsc, fields in schema order); the caller
    gives the enum index of its ``status``."""
    if type(state) is not TransferState:
        raise NotPlainError(f"not a TransferState: {type(state).__name__}")
    try:
        append_cached_string(parts, state.tenant_id)
        append_string(parts, state.transfer_id)
        append_cached_string(parts, state.debit_account_id)
        append_cached_string(parts, state.credit_account_id)
        append_cached_string(parts, state.currency)
        append_long(parts, state.amount)
        append_long(parts, status_index)
        append_long(parts, state.amount_posted)
        append_long(parts, state.amount_reversed)
        append_optional_string(parts, state.reverses)
        append_optional_long(parts, state.expires_at_us)
        append_long(parts, state.last_sequence)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_command(parts: list[bytes], command: CommandHeader) -> None:
    """A single-leg command's Avro body (``Transfer``, ``PostPending``, ``VoidPending``,
    ``OpenAccount``: schemas/<name>.avsc, fields in schema order): what the SDK writes for every
    command it sends (decision 0104); ``NotPlainError`` for anything else."""
    try:
        append_cached_string(parts, command.tenant_id)
        append_string(parts, command.idempotency_key)
        append_long(parts, command.submitted_at_us)
        append_string_map(parts, command.metadata)
        _append_command_body(parts, command)
    except TypeError as exc:  # compiled: mypyc's check of a value's declared type
        raise NotPlainError(str(exc)) from exc


def _append_command_body(parts: list[bytes], command: CommandHeader) -> None:
    """The fields after the command header, by the command's exact type."""
    kind = type(command)
    if kind is _TRANSFER_TYPE:
        assert isinstance(command, _TRANSFER_TYPE)
        append_string(parts, command.transfer_id)
        append_cached_string(parts, command.debit_account_id)
        append_cached_string(parts, command.credit_account_id)
        append_long(parts, command.amount)
        append_cached_string(parts, command.currency)
        append_boolean(parts, command.pending)
        append_optional_long(parts, command.pending_timeout_s)
        append_optional_string(parts, command.reverses)
    elif kind is _POST_PENDING_TYPE:
        assert isinstance(command, _POST_PENDING_TYPE)
        append_string(parts, command.transfer_id)
        append_optional_long(parts, command.amount)
    elif kind is _VOID_PENDING_TYPE:
        assert isinstance(command, _VOID_PENDING_TYPE)
        append_string(parts, command.transfer_id)
    elif kind is _OPEN_ACCOUNT_TYPE:
        assert isinstance(command, _OPEN_ACCOUNT_TYPE)
        append_cached_string(parts, command.account_id)
        append_cached_string(parts, command.currency)
        append_int(parts, command.asset_scale)
        append_boolean(parts, command.debits_must_not_exceed_credits)
        append_boolean(parts, command.credits_must_not_exceed_debits)
        append_optional_long(parts, command.overdraft_limit)
    else:
        raise NotPlainError(f"not a single-leg command: {kind.__name__}")


# ------------------------------------------------------------------ onto the codec's buffer
# Each record is collected as a list of ``bytes`` parts and joined once onto the caller's
# ``bytearray``: compiled, a list append is native where every ``bytearray`` write is a generic
# call (issue 17); a record that raises ``NotPlainError`` leaves ``buffer`` as it was.


def write_transaction_posted(
    buffer: bytearray, event: TransactionPosted, hash_bytes: bytes
) -> None:
    """``event``'s Avro body, ``hash_bytes`` its hash (``_append_transaction_posted``)."""
    parts: list[bytes] = []
    _append_transaction_posted(parts, event, hash_bytes)
    buffer += b"".join(parts)


def write_transaction_state(
    buffer: bytearray, state: TransactionState, status_symbols: tuple[str, ...]
) -> None:
    """``state``'s Avro body (``_append_transaction_state``)."""
    parts: list[bytes] = []
    _append_transaction_state(parts, state, status_symbols)
    buffer += b"".join(parts)


def write_transfer_event(buffer: bytearray, event: EventHeader, hash_bytes: bytes) -> None:
    """A single-leg transfer event's Avro body (``_append_transfer_event``)."""
    parts: list[bytes] = []
    _append_transfer_event(parts, event, hash_bytes)
    buffer += b"".join(parts)


EVENT_HASH_BYTES: Final = 32  # the Sha256 fixed: the last field of every event record
_EVENT_HASH_PLACEHOLDER: Final = bytes(EVENT_HASH_BYTES)


def seal_transfer_event(header: bytes, branch: bytes, event: EventHeader) -> tuple[bytes, bytes]:
    """``(hash, single-object bytes)`` of a single-leg transfer event in one pass (decision
    0125): its Avro body up to the hash (``_append_transfer_event``), the chain hash
    SHA-256(``prev_hash`` + ``branch`` + that body) (``branch``: the envelope's union index,
    the canonical bytes' first byte), then ``header`` + ``branch`` + body + hash: the bytes and
    hash of ``schemas.codec.seal_event``. ``NotPlainError`` for anything the writer does not
    take."""
    parts: list[bytes] = []
    _append_transfer_event(parts, event, _EVENT_HASH_PLACEHOLDER)
    parts.pop()  # the placeholder: the hash is the last field, a fixed 32 bytes
    body = b"".join(parts)
    chain = hashlib.sha256(event.prev_hash)  # 32 bytes: checked by _append_event_head
    chain.update(branch)
    chain.update(body)
    digest = chain.digest()
    return digest, b"".join((header, branch, body, digest))


def write_outcome(
    buffer: bytearray, outcome: Outcome, status_index: int, reason_index: int
) -> None:
    """``outcome``'s Avro body (``_append_outcome``)."""
    parts: list[bytes] = []
    _append_outcome(parts, outcome, status_index, reason_index)
    buffer += b"".join(parts)


def write_account_state(buffer: bytearray, state: AccountState) -> None:
    """``state``'s Avro body (``_append_account_state``)."""
    parts: list[bytes] = []
    _append_account_state(parts, state)
    buffer += b"".join(parts)


def write_transfer_state(buffer: bytearray, state: TransferState, status_index: int) -> None:
    """``state``'s Avro body (``_append_transfer_state``)."""
    parts: list[bytes] = []
    _append_transfer_state(parts, state, status_index)
    buffer += b"".join(parts)


def write_command(buffer: bytearray, command: CommandHeader) -> None:
    """A single-leg command's Avro body (``_append_command``): what the SDK writes per send."""
    parts: list[bytes] = []
    _append_command(parts, command)
    buffer += b"".join(parts)
