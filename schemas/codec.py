"""Avro single-object encoding of the ledger's records, and the canonical bytes of an event.

Every record on a ledger topic is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint
of the writer schema's Parsing Canonical Form + the Avro binary body (Avro specification,
"Single-object encoding"). Any Avro library can decode it given the ``.avsc`` files; no registry
server is needed.

The decoder looks the fingerprint up among every known contract version (``schemas/`` and
``schemas/history/*``) and resolves the writer schema to the current reader schema, so bytes
written by an earlier version still decode. Anything else raises a ``DecodeError`` subclass that
says what is wrong (its ``kind`` is a short stable word for DLQ headers; the whole exception
tree is drawn in ``streamledger.errors``):

- ``WrongMarkerError``: the first two bytes are not C3 01;
- ``TruncatedError``: fewer bytes than the header or the body needs;
- ``UnknownFingerprintError``: no known schema has this fingerprint;
- ``UnexpectedRecordError``: a known schema, but another record (an event on commands);
- ``BodyInvalidError``: the body does not decode under the writer schema.

``EncodeError`` (not a ``DecodeError``) is a value that does not fit its schema: a bug upstream.

Hot path: schemas are parsed once at import; an envelope (a record holding a union of the
command, event or state records) is written and read as its one-byte union index followed by the
chosen record, which gives the same bytes as fastavro writing the envelope while skipping its
union search (about 1 µs per record). Bytes from older versions take the general resolving path.
Each record type has one generated encoder (model value → Avro dict → bytes, no per-field loop),
and a decoder finds the branch of current bytes with one lookup of their first bytes (marker,
fingerprint and union index together). The encoders and readers are compiled by
``schemas.generated_code`` (tracebacks show their lines; ``streamledger debug generated
schemas.codec.encode.Transfer`` prints one). The fast path calls two fastavro internals; a
fallback from them is logged and counted (``fastavro_fallback_total``, decision 0034). The two
multi-leg records whose size grows with the postings, ``TransactionPosted`` (sealed) and
``TransactionState``, are written by hand (``schemas.avro_writers``: fastavro's bytes, compared
by a Hypothesis test), anything unusual through the generic encoder; so are, since decision
0104, the records of every single-leg command: its command (the SDK's encode), its event, its
outcome and its account and transfer state records. The state records a restore decodes by the
thousand, ``TransferState``, ``AccountState`` and ``TenantHead``, are read by hand
(``schemas.avro_readers``: fastavro's values, compared by a Hypothesis test), and so are the
single-leg commands the processor decodes (``schemas.avro_command_readers``, decision 0104);
anything unusual goes through fastavro.
"""

from __future__ import annotations

import enum
import hashlib
import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, Final, TypeVar

from fastavro import _read as fastavro_compiled_reader
from fastavro import _write as fastavro_compiled_writer
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import avro_command_readers, avro_readers
from schemas._generated_records import BUILDERS, new_account_balance, new_posting
from schemas.avro_schemas import (
    CURRENT_VERSION,
    FINGERPRINT_BYTES,
    NAMESPACE,
    SCHEMA_DIRECTORY,
    TopLevelSchema,
    expand,
    load_all_versions,
    read_named_types,
    without_logical_types,
)
from schemas.avro_writers import (
    NotPlainError,
    seal_transfer_event,
    write_account_state,
    write_command,
    write_outcome,
    write_transaction_posted,
    write_transaction_state,
    write_transfer_event,
    write_transfer_state,
)
from schemas.generated_code import compile_generated
from schemas.keys import KEY_SEPARATOR
from schemas.model import (
    COMMAND_TYPES,
    EVENT_TYPES,
    NOTIFICATION_TYPES,
    AccountBalance,
    AccountState,
    Command,
    Event,
    MonitorState,
    Notification,
    OpenAccount,
    Outcome,
    OutcomeStatus,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    Posting,
    PostPending,
    RejectReason,
    StateRecord,
    TenantHead,
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

MARKER: Final = b"\xc3\x01"
HEADER_BYTES: Final = len(MARKER) + FINGERPRINT_BYTES
UNION_INDEX_MAX: Final = 63  # a zig-zag varint below 128 is one byte: indexes 0..63
STATE_TYPES: tuple[type[StateRecord], ...] = (
    AccountState,
    TransferState,
    TenantHead,
    TransactionState,
    MonitorState,
)
HASH_FORM_OMITTED_FIELD: Final = "hash"


class DecodeError(StreamLedgerError):
    """Bytes that are not a ledger record we can read. ``kind`` names the failure."""

    kind = "decode_error"


class WrongMarkerError(DecodeError):
    kind = "wrong_marker"


class TruncatedError(DecodeError):
    kind = "truncated"


class UnknownFingerprintError(DecodeError):
    kind = "unknown_fingerprint"


class UnexpectedRecordError(DecodeError):
    kind = "unexpected_record"


class BodyInvalidError(DecodeError):
    kind = "body_invalid"


class EncodeError(StreamLedgerError):
    """A value does not fit its schema (wrong type, out of range): a bug in the caller."""


# --------------------------------------------------------------------------- schema tables


RecordType = TypeVar("RecordType")
# A hand-written reader: a record body from a position to the end of the bytes
HandReader = TypeVar("HandReader", bound=Callable[[bytes, int], Any])


@dataclass(frozen=True, slots=True)
class Branch:
    """One record type of an envelope's union (or the one record of a plain top-level record)."""

    index: int
    full_name: str
    python_type: type[Any]
    field_names: tuple[str, ...]
    wire: Any  # fastavro-parsed, self-contained
    prefix: bytes  # single-object header (+ union index byte for envelopes)
    named: dict[str, Any]  # the named types of ``wire`` (what fastavro's writer looks up)
    read_named: dict[str, Any]  # what fastavro's reader looks named types up in (no resolving)


@dataclass(frozen=True, slots=True)
class RecordFamily:
    """A top-level record: its current schema, its branches and where a value sits in it."""

    current: TopLevelSchema
    envelope_field: str | None  # None for a plain record (Outcome)
    branches: tuple[Branch, ...]
    by_type: Mapping[type[Any], Branch]
    by_name: Mapping[str, Branch]
    # Bytes written under the current schema start with exactly one branch's ``prefix``:
    # one slice and one lookup find it (anything else takes the checked general path).
    prefix_bytes: int
    by_prefix: Mapping[bytes, Branch]


def _zigzag_byte(index: int) -> bytes:
    assert 0 <= index <= UNION_INDEX_MAX
    return bytes((index << 1,))


def _branch_wire(full_name: str, named: Mapping[str, dict[str, Any]]) -> Any:
    return parse_schema(without_logical_types(expand(full_name, named)))


def _build_family(
    current: TopLevelSchema,
    envelope_field: str | None,
    python_types: tuple[type[Any], ...],
    named: Mapping[str, dict[str, Any]],
) -> RecordFamily:
    branches = []
    header = MARKER + current.fingerprint
    for index, python_type in enumerate(python_types):
        full_name = f"{NAMESPACE}.{python_type.__name__}"
        prefix = header if envelope_field is None else header + _zigzag_byte(index)
        wire = _branch_wire(full_name, named) if envelope_field else current.wire
        branches.append(
            Branch(
                index=index,
                full_name=full_name,
                python_type=python_type,
                field_names=tuple(item.name for item in fields(python_type)),
                wire=wire,
                prefix=prefix,
                named=dict(wire.get("__named_schemas", {})),
                read_named={"writer": wire.get("__named_schemas", {}), "reader": {}},
            )
        )
    assert len({len(branch.prefix) for branch in branches}) == 1
    return RecordFamily(
        current=current,
        envelope_field=envelope_field,
        branches=tuple(branches),
        by_type={branch.python_type: branch for branch in branches},
        by_name={branch.full_name: branch for branch in branches},
        prefix_bytes=len(branches[0].prefix),
        by_prefix={branch.prefix: branch for branch in branches},
    )


_VERSIONS = load_all_versions()
_NAMED_TYPES = read_named_types(SCHEMA_DIRECTORY)
_CURRENT = _VERSIONS[CURRENT_VERSION]
COMMANDS = _build_family(_CURRENT["CommandEnvelope"], "command", COMMAND_TYPES, _NAMED_TYPES)
EVENTS = _build_family(_CURRENT["EventEnvelope"], "event", EVENT_TYPES, _NAMED_TYPES)
OUTCOMES = _build_family(_CURRENT["Outcome"], None, (Outcome,), _NAMED_TYPES)
STATES = _build_family(_CURRENT["StateEnvelope"], "state", STATE_TYPES, _NAMED_TYPES)
NOTIFICATIONS = _build_family(
    _CURRENT["NotificationEnvelope"], "notification", NOTIFICATION_TYPES, _NAMED_TYPES
)

# Every known writer schema by fingerprint, current and historical (the current one wins a tie).
KNOWN_WRITERS: dict[bytes, TopLevelSchema] = {}
for _version in sorted(_VERSIONS, key=lambda name: name == CURRENT_VERSION):
    for _schema in _VERSIONS[_version].values():
        KNOWN_WRITERS[_schema.fingerprint] = _schema


def current_fingerprints() -> dict[str, bytes]:
    """The 8 fingerprint bytes of each current top-level record (pinned by a test vector)."""
    return {name: schema.fingerprint for name, schema in _CURRENT.items()}


def all_fingerprints() -> dict[tuple[str, str], bytes]:
    """(version, record) → fingerprint for every known contract version."""
    return {
        (version, name): schema.fingerprint
        for version, schemas in _VERSIONS.items()
        for name, schema in schemas.items()
    }


# --------------------------------------------------------------------------- model ↔ Avro dicts


def _balances_to_avro(balances: tuple[AccountBalance, ...]) -> list[dict[str, Any]]:
    return [
        {
            "account_id": balance.account_id,
            "currency": balance.currency,
            "debits_posted": balance.debits_posted,
            "credits_posted": balance.credits_posted,
            "debits_pending": balance.debits_pending,
            "credits_pending": balance.credits_pending,
        }
        for balance in balances
    ]


def _postings_to_avro(postings: tuple[Posting, ...]) -> list[dict[str, Any]]:
    return [
        {
            "debit_account_id": posting.debit_account_id,
            "credit_account_id": posting.credit_account_id,
            "amount": posting.amount,
            "currency": posting.currency,
        }
        for posting in postings
    ]


def _enum_name(value: Any) -> Any:
    # ``_name_`` is the member's documented sunder attribute; ``.name`` is a property around it
    return None if value is None else value._name_


# Fields whose model value is not the Avro value: (to Avro, from Avro).
_FieldConversion = tuple[Callable[[Any], Any], Callable[[Any], Any]]
FIELD_CONVERSIONS: dict[str, _FieldConversion] = {
    "metadata": (dict, lambda value: tuple(sorted(value.items()))),
    "balances": (
        _balances_to_avro,
        lambda value: tuple(new_account_balance(**item) for item in value),
    ),
    "event_sequences": (list, tuple),
    "postings": (
        _postings_to_avro,
        lambda value: tuple(new_posting(**item) for item in value),
    ),
    "pending_amounts": (list, tuple),
    "amounts_posted": (list, tuple),
    "amounts_reversed": (list, tuple),
    "reason": (_enum_name, lambda value: None if value is None else RejectReason[value]),
}
TYPE_SPECIFIC_CONVERSIONS: dict[tuple[type[Any], str], _FieldConversion] = {
    (Outcome, "status"): (_enum_name, lambda value: OutcomeStatus[value]),
    (TransferState, "status"): (_enum_name, lambda value: TransferStatus[value]),
    (TransactionState, "status"): (_enum_name, lambda value: TransferStatus[value]),
}


def _conversions_for(python_type: type[Any], names: tuple[str, ...]) -> dict[str, _FieldConversion]:
    found = {name: FIELD_CONVERSIONS[name] for name in names if name in FIELD_CONVERSIONS}
    for (owner, name), conversion in TYPE_SPECIFIC_CONVERSIONS.items():
        if owner is python_type:
            found[name] = conversion
    return found


_CONVERSIONS: dict[type[Any], dict[str, _FieldConversion]] = {
    branch.python_type: _conversions_for(branch.python_type, branch.field_names)
    for family in (COMMANDS, EVENTS, OUTCOMES, STATES, NOTIFICATIONS)
    for branch in family.branches
}


def _record_reader(python_type: type[Any], names: tuple[str, ...]) -> Callable[[Any], Any]:
    """``Avro dict -> value`` for one model type (``from_avro`` without its loop)."""
    conversions = _CONVERSIONS[python_type]
    namespace: dict[str, Any] = {f"from_{name}": conversions[name][1] for name in conversions}
    namespace["python_type"] = BUILDERS[python_type]  # = python_type(**fields), cheaper
    arguments = ", ".join(
        f"{name}=from_{name}(record[{name!r}])"
        if name in conversions
        else f"{name}=record[{name!r}]"
        for name in names
    )
    source = f"def read(record):\n    return python_type({arguments})\n"
    reader: Callable[[Any], Any] = compile_generated(
        source, "read", namespace, f"schemas.codec.read.{python_type.__name__}"
    )
    return reader


def to_avro(value: Any, field_names: tuple[str, ...]) -> dict[str, Any]:
    """The Avro dict of a model value (field names are shared by the model and the schema)."""
    record = {name: getattr(value, name) for name in field_names}
    for name, (to_wire, _) in _CONVERSIONS[type(value)].items():
        record[name] = to_wire(record[name])
    return record


def from_avro(python_type: type[RecordType], record: dict[str, Any]) -> RecordType:
    """The model value of an Avro dict read under the current schema."""
    for name, (_, from_wire) in _CONVERSIONS[python_type].items():
        record[name] = from_wire(record[name])
    result: RecordType = BUILDERS[python_type](**record)
    return result


_RECORD_READERS: dict[type[Any], Callable[[dict[str, Any]], Any]] = {}
for _family in (COMMANDS, EVENTS, OUTCOMES, STATES, NOTIFICATIONS):
    for _branch in _family.branches:
        _RECORD_READERS[_branch.python_type] = _record_reader(
            _branch.python_type, _branch.field_names
        )


# --------------------------------------------------------------------------- fastavro internals
#
# The hot path calls two private functions of fastavro's compiled modules (``_write.write_data``,
# ``_read._read_data``), checked at import against the public writer and reader on a probe
# record. When one is missing or disagrees (a fastavro upgrade), the codec uses the public
# function instead: the same bytes, about 1-2 µs slower per record. That fallback is never
# silent: it is logged once per internal (a warning on ``streamledger.codec``) and counted:
# ``fastavro_fallback_total()`` (0 on the fast path), the value of a metric
# ``streamledger_codec_fastavro_fallback_total`` (decision 0034).

LOGGER: Final = logging.getLogger("streamledger.codec")
_FASTAVRO_FALLBACKS: dict[str, str] = {}  # internal function -> why the public one is used


def _fastavro_internal_usable(internal: str, problem: str | None) -> bool:
    """True when ``problem`` is None; else log the fallback (once per internal) and count it."""
    if problem is None:
        return True
    if internal not in _FASTAVRO_FALLBACKS:
        LOGGER.warning(
            "fastavro %s: %s; the codec uses the public function instead (same bytes, slower)",
            internal,
            problem,
        )
    _FASTAVRO_FALLBACKS[internal] = problem
    return False


def fastavro_fallback_total() -> int:
    """How many fastavro internals the codec fell back from (0 when the fast path is in use)."""
    return len(_FASTAVRO_FALLBACKS)


def fastavro_fallbacks() -> dict[str, str]:
    """Each fastavro internal the codec does not use, with the reason."""
    return dict(_FASTAVRO_FALLBACKS)


# --------------------------------------------------------------------------- encode

# fastavro's compiled ``schemaless_writer`` parses the (already parsed) schema again, builds an
# options dict and copies its buffer into the file object on every call; its ``write_data`` does
# the writing itself. We call that directly with a bytearray that already holds the header,
# after checking at import that it writes the same bytes (else: the public function).
_WRITE_OPTIONS: Final = {
    "strict": False,
    "strict_allow_default": False,
    "disable_tuple_notation": False,
}
_write_data: Any = getattr(fastavro_compiled_writer, "write_data", None)


def _write_body_public(buffer: bytearray, branch: Branch, record: dict[str, Any]) -> None:
    stream = io.BytesIO()
    schemaless_writer(stream, branch.wire, record)
    buffer += stream.getvalue()


def _write_body_direct(buffer: bytearray, branch: Branch, record: dict[str, Any]) -> None:
    _write_data(buffer, record, branch.wire, branch.named, "", _WRITE_OPTIONS)


def _direct_writer_problem() -> str | None:
    """Why fastavro's internal ``write_data`` cannot be used (None: it writes what the public
    writer writes, on a probe record)."""
    if _write_data is None:
        return "fastavro._write has no write_data"
    probe = TenantHead(tenant_id="probe", last_sequence=1, last_hash=b"\x07" * 32)
    branch = STATES.by_type[TenantHead]
    record = to_avro(probe, branch.field_names)
    direct, public = bytearray(), bytearray()
    try:
        _write_body_direct(direct, branch, record)
    except Exception as exc:  # noqa: BLE001 - any failure of the internal API means: do not use it
        return f"write_data raised {type(exc).__name__}: {exc}"
    _write_body_public(public, branch, record)
    return None if direct == public else "write_data wrote other bytes than schemaless_writer"


_write_body: Callable[[bytearray, Branch, dict[str, Any]], None] = (
    _write_body_direct
    if _fastavro_internal_usable("write_data", _direct_writer_problem())
    else _write_body_public
)


def _write_data_public(
    buffer: bytearray, record: Any, wire: Any, _named: Any, _name: str, _options: Any
) -> None:
    """``write_data``'s signature over the public writer (when the direct one disagrees)."""
    stream = io.BytesIO()
    schemaless_writer(stream, wire, record)
    buffer += stream.getvalue()


_ENCODE_FAILURES: Final = (ValueError, TypeError, AttributeError, KeyError, OverflowError)


def _record_encoder(
    branch: Branch, *, placeholders: Mapping[str, bytes] | None = None, kind: str = "encode"
) -> Callable[[Any], bytes]:
    """``value -> single-object bytes`` for one model type, generated as one function.

    The branch's prefix, then fastavro writing ``to_avro(value, ...)`` (as one dict display,
    without a per-field loop or lookup), any failure as ``EncodeError``: this runs for every
    event, outcome and state record the processor writes and every command the SDK sends.
    The source is built from the field names and conversions only. ``placeholders`` writes
    fixed bytes in place of some fields, and the function then returns the ``bytearray``
    (``seal_event`` hashes it in place).
    """
    placeholders = placeholders or {}
    conversions = _CONVERSIONS[branch.python_type]
    namespace: dict[str, Any] = {f"to_{name}": conversions[name][0] for name in conversions}
    namespace |= {
        "prefix": branch.prefix,
        "wire": branch.wire,
        "named": branch.named,
        "options": _WRITE_OPTIONS,
        "write_data": _write_data if _write_body is _write_body_direct else _write_data_public,
        "failures": _ENCODE_FAILURES,
        "EncodeError": EncodeError,
        "what": f"{branch.python_type.__name__} does not fit its schema",
    }
    namespace |= {f"placeholder_{name}": placeholders[name] for name in placeholders}

    def item(name: str) -> str:
        if name in placeholders:
            return f"{name!r}: placeholder_{name}"
        if name in conversions:
            return f"{name!r}: to_{name}(value.{name})"
        return f"{name!r}: value.{name}"

    items = ", ".join(item(name) for name in branch.field_names)
    source = (
        "def encode(value):\n"
        "    buffer = bytearray(prefix)\n"
        "    try:\n"
        f"        write_data(buffer, {{{items}}}, wire, named, '', options)\n"
        "    except failures as exc:\n"
        "        raise EncodeError(f'{what}: {exc}') from exc\n"
        f"    return {'buffer' if placeholders else 'bytes(buffer)'}\n"
    )
    encoder: Callable[[Any], bytes] = compile_generated(
        source, "encode", namespace, f"schemas.codec.{kind}.{branch.python_type.__name__}"
    )
    return encoder


def _family_encoders(family: RecordFamily) -> dict[type[Any], Callable[[Any], bytes]]:
    return {branch.python_type: _record_encoder(branch) for branch in family.branches}


_COMMAND_ENCODERS: Final = _family_encoders(COMMANDS)
_EVENT_ENCODERS: Final = _family_encoders(EVENTS)
_OUTCOME_ENCODERS: Final = _family_encoders(OUTCOMES)
_STATE_ENCODERS: Final = _family_encoders(STATES)
_NOTIFICATION_ENCODERS: Final = _family_encoders(NOTIFICATIONS)


def _enum_symbols(branch: Branch, field_name: str) -> tuple[str, ...]:
    """The symbols of an enum field of ``branch``, in schema order (the written index)."""
    (field,) = (field for field in branch.wire["fields"] if field["name"] == field_name)
    enum_type = field["type"]
    if isinstance(enum_type, str):  # a reference to a named type
        enum_type = branch.named[enum_type]
    assert enum_type["type"] == "enum", enum_type
    return tuple(enum_type["symbols"])


_TRANSACTION_STATE_BRANCH: Final = STATES.by_type[TransactionState]
_TRANSACTION_STATUS_SYMBOLS: Final = _enum_symbols(_TRANSACTION_STATE_BRANCH, "status")
_GENERIC_TRANSACTION_STATE_ENCODER: Final = _STATE_ENCODERS[TransactionState]


def _encode_transaction_state(state: TransactionState) -> bytes:
    """``_STATE_ENCODERS[TransactionState]`` written by hand (``schemas.avro_writers``: the same
    bytes, a fifth of the time for 10 postings; one per multi-leg transaction and batch);
    anything it does not take goes to the generic encoder, whose bytes or ``EncodeError``
    stand."""
    buffer = bytearray(_TRANSACTION_STATE_BRANCH.prefix)
    try:
        write_transaction_state(buffer, state, _TRANSACTION_STATUS_SYMBOLS)
    except (NotPlainError, *_ENCODE_FAILURES):
        return _GENERIC_TRANSACTION_STATE_ENCODER(state)
    return bytes(buffer)


_STATE_ENCODERS[TransactionState] = _encode_transaction_state


def _symbol_indexes(enum_type: type[enum.Enum], symbols: tuple[str, ...]) -> dict[Any, int]:
    """Each member of ``enum_type`` to its symbol's index in the schema (what Avro writes)."""
    return {member: symbols.index(member.name) for member in enum_type if member.name in symbols}


_OUTCOME_BRANCH: Final = OUTCOMES.by_type[Outcome]
_OUTCOME_STATUS_INDEXES: Final = _symbol_indexes(
    OutcomeStatus, _enum_symbols(_OUTCOME_BRANCH, "status")
)
_REJECT_REASON_INDEXES: Final[dict[Any, int]] = {
    None: -1,
    **_symbol_indexes(
        RejectReason, tuple(_OUTCOME_BRANCH.named[f"{NAMESPACE}.RejectReason"]["symbols"])
    ),
}
_TRANSFER_STATE_BRANCH: Final = STATES.by_type[TransferState]
_TRANSFER_STATUS_INDEXES: Final = _symbol_indexes(
    TransferStatus, _enum_symbols(_TRANSFER_STATE_BRANCH, "status")
)
_ACCOUNT_STATE_BRANCH: Final = STATES.by_type[AccountState]
_GENERIC_OUTCOME_ENCODER: Final = _OUTCOME_ENCODERS[Outcome]
_GENERIC_TRANSFER_STATE_ENCODER: Final = _STATE_ENCODERS[TransferState]
_GENERIC_ACCOUNT_STATE_ENCODER: Final = _STATE_ENCODERS[AccountState]


def _encode_outcome_by_hand(outcome: Outcome) -> bytes:
    """``_OUTCOME_ENCODERS[Outcome]`` written by hand (``schemas.avro_writers``, decision 0104:
    one per command); anything it does not take goes to the generic encoder."""
    buffer = bytearray(_OUTCOME_BRANCH.prefix)
    try:
        write_outcome(
            buffer,
            outcome,
            _OUTCOME_STATUS_INDEXES[outcome.status],
            _REJECT_REASON_INDEXES[outcome.reason],
        )
    except (NotPlainError, *_ENCODE_FAILURES):
        return _GENERIC_OUTCOME_ENCODER(outcome)
    return bytes(buffer)


def _encode_transfer_state(state: TransferState) -> bytes:
    """``_STATE_ENCODERS[TransferState]`` written by hand (decision 0104)."""
    buffer = bytearray(_TRANSFER_STATE_BRANCH.prefix)
    try:
        write_transfer_state(buffer, state, _TRANSFER_STATUS_INDEXES[state.status])
    except (NotPlainError, *_ENCODE_FAILURES):
        return _GENERIC_TRANSFER_STATE_ENCODER(state)
    return bytes(buffer)


def _encode_account_state(state: AccountState) -> bytes:
    """``_STATE_ENCODERS[AccountState]`` written by hand (decision 0104)."""
    buffer = bytearray(_ACCOUNT_STATE_BRANCH.prefix)
    try:
        write_account_state(buffer, state)
    except (NotPlainError, *_ENCODE_FAILURES):
        return _GENERIC_ACCOUNT_STATE_ENCODER(state)
    return bytes(buffer)


def _command_encoder(prefix: bytes, generic: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A single-leg command's encoder written by hand (``schemas.avro_writers``, decision 0104:
    the SDK's per-send cost); anything it does not take goes to ``generic``."""

    def encode(command: Any) -> bytes:
        buffer = bytearray(prefix)
        try:
            write_command(buffer, command)
        except (NotPlainError, *_ENCODE_FAILURES):
            return generic(command)
        return bytes(buffer)

    return encode


for _command_type in (Transfer, PostPending, VoidPending, OpenAccount):
    _COMMAND_ENCODERS[_command_type] = _command_encoder(
        COMMANDS.by_type[_command_type].prefix, _COMMAND_ENCODERS[_command_type]
    )
_OUTCOME_ENCODERS[Outcome] = _encode_outcome_by_hand
_STATE_ENCODERS[TransferState] = _encode_transfer_state
_STATE_ENCODERS[AccountState] = _encode_account_state
_ENCODERS_BY_FAMILY: Final = {
    id(NOTIFICATIONS): _NOTIFICATION_ENCODERS,
    id(COMMANDS): _COMMAND_ENCODERS,
    id(EVENTS): _EVENT_ENCODERS,
    id(OUTCOMES): _OUTCOME_ENCODERS,
    id(STATES): _STATE_ENCODERS,
}


def _not_in_family(family: RecordFamily, value: Any) -> EncodeError:
    return EncodeError(f"{type(value).__name__} is not a {family.current.name} record")


def _encode(family: RecordFamily, value: Any) -> bytes:
    encoder = _ENCODERS_BY_FAMILY[id(family)].get(type(value))
    if encoder is None:
        raise _not_in_family(family, value)
    return encoder(value)


def encode_command(command: Command) -> bytes:
    """Single-object bytes of a command (a ``CommandEnvelope``)."""
    encoder = _COMMAND_ENCODERS.get(type(command))
    if encoder is None:
        raise _not_in_family(COMMANDS, command)
    return encoder(command)


def encode_event(event: Event) -> bytes:
    """Single-object bytes of an event (an ``EventEnvelope``)."""
    encoder = _EVENT_ENCODERS.get(type(event))
    if encoder is None:
        raise _not_in_family(EVENTS, event)
    return encoder(event)


def encode_outcome(outcome: Outcome) -> bytes:
    """Single-object bytes of an outcome."""
    encoder = _OUTCOME_ENCODERS.get(type(outcome))
    if encoder is None:
        raise _not_in_family(OUTCOMES, outcome)
    return encoder(outcome)


def encode_state(state: StateRecord) -> bytes:
    """Single-object bytes of a ``ledger.balances`` record (a ``StateEnvelope``)."""
    encoder = _STATE_ENCODERS.get(type(state))
    if encoder is None:
        raise _not_in_family(STATES, state)
    return encoder(state)


def encode_notification(notification: Notification) -> bytes:
    """Single-object bytes of a ``ledger.notifications`` record (a ``NotificationEnvelope``)."""
    encoder = _NOTIFICATION_ENCODERS.get(type(notification))
    if encoder is None:
        raise _not_in_family(NOTIFICATIONS, notification)
    return encoder(notification)


# --------------------------------------------------------------------------- decode


def read_fingerprint(data: bytes) -> bytes:
    """The writer fingerprint of single-object bytes; raises on a short or unmarked header."""
    if len(data) < len(MARKER):
        raise TruncatedError(f"{len(data)} bytes: shorter than the 2-byte marker")
    if data[:2] != MARKER:
        raise WrongMarkerError(f"starts with {bytes(data[:2]).hex()}, not the marker c301")
    if len(data) < HEADER_BYTES:
        raise TruncatedError(f"{len(data)} bytes: shorter than the {HEADER_BYTES}-byte header")
    return bytes(data[len(MARKER) : HEADER_BYTES])


def _writer_for(family: RecordFamily, data: bytes) -> TopLevelSchema:
    fingerprint = read_fingerprint(data)
    writer = KNOWN_WRITERS.get(fingerprint)
    if writer is None:
        raise UnknownFingerprintError(f"no known schema has fingerprint {fingerprint.hex()}")
    if writer.name != family.current.name:
        raise UnexpectedRecordError(
            f"expected a {family.current.name}, got a {writer.name} ({writer.version})"
        )
    return writer


# Likewise fastavro's compiled ``schemaless_reader`` runs ``parse_schema`` on the (already
# parsed) schema on every call, which costs more than reading a command; its ``_read_data``
# reads. The current schemas (no reader schema to resolve to) are read through it directly,
# after checking at import that it gives what the public function gives.
_READ_OPTIONS: Final = {
    "return_record_name": True,
    "return_record_name_override": True,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}
_read_data: Any = getattr(fastavro_compiled_reader, "_read_data", None)


def _read_public(buffer: io.BytesIO, writer: Any, reader: Any, named: Any = None) -> Any:
    return schemaless_reader(
        buffer, writer, reader, return_record_name=True, return_record_name_override=True
    )


def _read_direct(buffer: io.BytesIO, writer: Any, reader: Any, named: Any = None) -> Any:
    """``named``: the writer's named types as ``Branch.read_named`` holds them (else built)."""
    if reader is not None:
        return _read_public(buffer, writer, reader)
    if named is None:
        named = {"writer": writer.get("__named_schemas", {}), "reader": {}}
    return _read_data(buffer, writer, named, None, _READ_OPTIONS)


def _direct_reader_problem() -> str | None:
    """Why fastavro's internal ``_read_data`` cannot be used (None: it reads what the public
    reader reads, on a probe record)."""
    if _read_data is None:
        return "fastavro._read has no _read_data"
    probe = TenantHead(tenant_id="probe", last_sequence=1, last_hash=b"\x07" * 32)
    branch = STATES.by_type[TenantHead]
    body = _encode(STATES, probe)[len(branch.prefix) :]
    try:
        direct = _read_direct(io.BytesIO(body), branch.wire, None)
    except Exception as exc:  # noqa: BLE001 - any failure of the internal API means: do not use it
        return f"_read_data raised {type(exc).__name__}: {exc}"
    public = _read_public(io.BytesIO(body), branch.wire, None)
    return None if direct == public else "_read_data read another value than schemaless_reader"


_read_record: Callable[[io.BytesIO, Any, Any, Any], Any] = (
    _read_direct
    if _fastavro_internal_usable("_read_data", _direct_reader_problem())
    else _read_public
)


def _read(
    buffer: io.BytesIO, writer: Any, reader: Any, size: int, what: str, *, named: Any = None
) -> Any:
    try:
        record = _read_record(buffer, writer, reader, named)
    except (
        EOFError,
        StopIteration,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        AttributeError,
    ) as exc:
        # fastavro reports a short body in several ways; the position tells which it was
        if isinstance(exc, EOFError | StopIteration) or buffer.tell() >= size:
            raise TruncatedError(f"{what}: the body ends early ({size} bytes in all)") from exc
        raise BodyInvalidError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if buffer.tell() != size:
        raise BodyInvalidError(f"{what}: {size - buffer.tell()} bytes left after the record")
    return record


def _current_branch(family: RecordFamily, data: bytes) -> tuple[Branch, int]:
    if family.envelope_field is None:
        return family.branches[0], HEADER_BYTES
    if len(data) <= HEADER_BYTES:
        raise TruncatedError(f"{family.current.name}: no body after the header")
    index_byte = data[HEADER_BYTES]
    index = index_byte >> 1
    if index_byte & 1 or index_byte > UNION_INDEX_MAX << 1 or index >= len(family.branches):
        raise BodyInvalidError(f"{family.current.name}: no union branch for byte {index_byte}")
    return family.branches[index], HEADER_BYTES + 1


def _to_model(branch: Branch, record: Any) -> Any:
    try:
        return _RECORD_READERS[branch.python_type](record)
    except (ValueError, TypeError, KeyError) as exc:
        raise BodyInvalidError(f"{branch.full_name}: {type(exc).__name__}: {exc}") from exc


def _decode(family: RecordFamily, data: bytes) -> Any:
    prefix_bytes = family.prefix_bytes
    branch = family.by_prefix.get(bytes(data[:prefix_bytes]))
    if branch is not None:  # the current schema (marker, fingerprint, branch all checked)
        buffer = io.BytesIO(data)
        buffer.seek(prefix_bytes)
        record = _read(
            buffer, branch.wire, None, len(data), branch.full_name, named=branch.read_named
        )
        return _to_model(branch, record)
    writer = _writer_for(family, data)
    buffer = io.BytesIO(data)
    if writer is family.current:
        branch, body_start = _current_branch(family, data)
        buffer.seek(body_start)
        record = _read(buffer, branch.wire, None, len(data), branch.full_name)
        return _to_model(branch, record)
    buffer.seek(HEADER_BYTES)
    resolved = _read(buffer, writer.wire, family.current.wire, len(data), writer.name)
    if family.envelope_field is None:
        return _to_model(family.branches[0], resolved)
    full_name, record = resolved[family.envelope_field]
    return _to_model(family.by_name[full_name], record)


def _checked_readers(
    family: RecordFamily,
    candidates: tuple[tuple[type[Any], tuple[tuple[str, str], ...], HandReader], ...],
) -> dict[bytes, HandReader]:
    """Of ``candidates`` (a record type of ``family``, the field layout its hand-written reader
    was written for, the reader): the reader of each type whose current schema has that layout,
    by the record's prefix (marker, fingerprint, union index). A layout that differs (a schema
    change) is logged, and fastavro reads that type."""
    readers: dict[bytes, HandReader] = {}
    for python_type, layout, reader in candidates:
        branch = family.by_type[python_type]
        found = avro_readers.field_layout(branch.wire, branch.named)
        if found != layout:
            LOGGER.warning(
                "the hand-written reader of %s is not used: its schema's layout %s is not %s",
                python_type.__name__,
                found,
                layout,
            )
            continue
        readers[branch.prefix] = reader
    return readers


def decode_command(data: bytes) -> Command:
    """The command in single-object bytes; raises a ``DecodeError`` subclass.

    A single-leg command or a ``PostTransaction`` under the current schema is read by hand
    (``schemas.avro_command_readers``, decisions 0104 and 0139); anything that reader does not
    take plainly goes through fastavro, whose value or ``DecodeError`` stands."""
    reader = _COMMAND_READERS.get(data[:_COMMAND_PREFIX_BYTES])
    if reader is not None:
        try:
            return reader(data, _COMMAND_PREFIX_BYTES)
        except (IndexError, ValueError, TypeError):
            pass  # not plainly valid: fastavro decides
    result: Command = _decode(COMMANDS, data)
    return result


def _command_readers() -> dict[bytes, Callable[[bytes, int], Command]]:
    """The hand-written reader of each command type it was written for: the single-leg ones
    (decision 0104) and ``PostTransaction`` (decision 0139), while its schema's items have the
    layout the reader reads (``_checked_readers``)."""
    candidates = []
    for python_type, reader in avro_command_readers.READERS.items():
        items = avro_command_readers.ITEM_LAYOUTS.get(python_type)
        branch = COMMANDS.by_type[python_type]
        if items is not None and not avro_readers.items_written_for(
            branch.wire, branch.named, *items
        ):
            LOGGER.warning(
                "the hand-written reader of %s is not used: its %s items are not %s",
                python_type.__name__,
                items[0],
                items[2],
            )
            continue
        candidates.append((python_type, avro_command_readers.LAYOUTS[python_type], reader))
    return _checked_readers(COMMANDS, tuple(candidates))


_COMMAND_PREFIX_BYTES: Final = COMMANDS.prefix_bytes
_COMMAND_READERS: Final = _command_readers()


def decode_event(data: bytes) -> Event:
    """The event in single-object bytes; raises a ``DecodeError`` subclass."""
    result: Event = _decode(EVENTS, data)
    return result


def decode_outcome(data: bytes) -> Outcome:
    """The outcome in single-object bytes; raises a ``DecodeError`` subclass."""
    result: Outcome = _decode(OUTCOMES, data)
    return result


def decode_state(data: bytes) -> StateRecord:
    """The ``ledger.balances`` record in single-object bytes; raises a ``DecodeError`` subclass.

    A current ``TransferState``, ``AccountState`` or ``TenantHead`` is read by hand
    (``schemas.avro_readers``: fastavro's value in about 0.6 of the time; a restore decodes
    one per transfer); anything it does not take goes to fastavro, whose value or error
    stands."""
    if type(data) is bytes:
        reader = _STATE_READERS.get(data[:_STATE_PREFIX_BYTES])
        if reader is not None:
            try:
                return reader(data, _STATE_PREFIX_BYTES)
            except (IndexError, ValueError):
                pass  # not plain (or not valid): the generic decoder decides
    result: StateRecord = _decode(STATES, data)
    return result


def _state_readers() -> dict[bytes, Callable[[bytes, int], StateRecord]]:
    """The hand-written reader of ``TransferState``, ``AccountState`` and ``TenantHead``
    (``_checked_readers``)."""
    statuses = avro_readers.transfer_statuses(
        _enum_symbols(STATES.by_type[TransferState], "status")
    )
    candidates: tuple[tuple[type[Any], Any, Callable[[bytes, int], StateRecord]], ...] = (
        (
            TransferState,
            avro_readers.TRANSFER_STATE_LAYOUT,
            partial(avro_readers.read_transfer_state, statuses=statuses),
        ),
        (AccountState, avro_readers.ACCOUNT_STATE_LAYOUT, avro_readers.read_account_state),
        (TenantHead, avro_readers.TENANT_HEAD_LAYOUT, avro_readers.read_tenant_head),
    )
    return _checked_readers(STATES, candidates)


_STATE_PREFIX_BYTES: Final = STATES.prefix_bytes
_STATE_READERS: Final = _state_readers()


_TRANSFER_STATE_PREFIX: Final = STATES.by_type[TransferState].prefix
_TRANSFER_STATUSES: Final = avro_readers.transfer_statuses(
    _enum_symbols(STATES.by_type[TransferState], "status")
)
_SETTLED_TRANSFERS_READ: Final = _TRANSFER_STATE_PREFIX in _STATE_READERS  # the layout matched


def split_settled_transfers(
    values: dict[bytes, bytes],
) -> tuple[dict[bytes, bytes], dict[str, int], list[bytes]]:
    """``ledger.balances`` values by record key, in one pass: the current, plain
    ``TransferState`` records that are not pending (a restore keeps them encoded, decision
    0102), per tenant the highest ``last_sequence`` among them, and every other value (for
    ``decode_state`` or another reader)."""
    if not _SETTLED_TRANSFERS_READ:
        return {}, {}, list(values.values())
    settled, last_sequences, others = avro_readers.split_settled_transfers(
        values, _TRANSFER_STATE_PREFIX, _TRANSFER_STATUSES, KEY_SEPARATOR.encode()
    )
    tenants = {tenant.decode(): sequence for tenant, sequence in last_sequences.items()}
    return settled, tenants, others


def decode_notification(data: bytes) -> Notification:
    """The notification in single-object bytes; raises a ``DecodeError`` subclass."""
    result: Notification = _decode(NOTIFICATIONS, data)
    return result


# --------------------------------------------------------------------------- canonical event bytes


_HASH_BYTES: Final = 32  # the Sha256 fixed: the last field of every event record
_HASH_PLACEHOLDER: Final = bytes(_HASH_BYTES)


def _hash_is_the_last_fixed_field(branch: Branch) -> bool:
    last = branch.wire["fields"][-1]
    last_type = last["type"]
    if isinstance(last_type, str):  # a reference to a named type
        last_type = branch.named[last_type]
    return bool(
        last["name"] == HASH_FORM_OMITTED_FIELD
        and last_type["type"] == "fixed"
        and last_type["size"] == _HASH_BYTES
    )


assert all(_hash_is_the_last_fixed_field(branch) for branch in EVENTS.branches)
# An event's single-object bytes with 32 zero bytes where its hash goes (the end), writable.
_EVENT_UNHASHED_ENCODERS: Final[dict[type[Any], Callable[[Any], bytearray]]] = {
    branch.python_type: _record_encoder(  # type: ignore[misc]
        branch, placeholders={HASH_FORM_OMITTED_FIELD: _HASH_PLACEHOLDER}, kind="encode_unhashed"
    )
    for branch in EVENTS.branches
}


def _transaction_posted_unhashed(event: TransactionPosted) -> bytearray:
    """``_EVENT_UNHASHED_ENCODERS[TransactionPosted]`` written by hand (``schemas.avro_writers``:
    the same bytes, a third of the time for 10 postings); anything it does not take goes to the
    generic encoder, whose bytes or ``EncodeError`` stand."""
    buffer = bytearray(_TRANSACTION_POSTED_PREFIX)
    try:
        write_transaction_posted(buffer, event, _HASH_PLACEHOLDER)
    except (NotPlainError, *_ENCODE_FAILURES):
        return _GENERIC_TRANSACTION_POSTED_UNHASHED(event)
    return buffer


_TRANSACTION_POSTED_PREFIX: Final = EVENTS.by_type[TransactionPosted].prefix
_GENERIC_TRANSACTION_POSTED_UNHASHED: Final = _EVENT_UNHASHED_ENCODERS[TransactionPosted]
_EVENT_UNHASHED_ENCODERS[TransactionPosted] = _transaction_posted_unhashed


def _transfer_event_unhashed(
    prefix: bytes, generic: Callable[[Any], bytearray]
) -> Callable[[Event], bytearray]:
    """A single-leg transfer event's unhashed encoder written by hand (``schemas.avro_writers``,
    decision 0104: the same bytes in a third of the time); anything it does not take goes to
    ``generic``, whose bytes or ``EncodeError`` stand."""

    def encode_unhashed(event: Event) -> bytearray:
        buffer = bytearray(prefix)
        try:
            write_transfer_event(buffer, event, _HASH_PLACEHOLDER)
        except (NotPlainError, *_ENCODE_FAILURES):
            return generic(event)
        return buffer

    return encode_unhashed


for _event_type in (TransferPosted, TransferPending, PendingPosted, PendingVoided, PendingExpired):
    _EVENT_UNHASHED_ENCODERS[_event_type] = _transfer_event_unhashed(
        EVENTS.by_type[_event_type].prefix, _EVENT_UNHASHED_ENCODERS[_event_type]
    )
# the single-leg transfer events ``seal_event`` seals in one compiled call: (the header, the
# envelope's union index), their prefix split where the canonical bytes start
_TRANSFER_EVENT_PREFIXES: Final[dict[type[Any], tuple[bytes, bytes]]] = {
    _event_type: (
        EVENTS.by_type[_event_type].prefix[:HEADER_BYTES],
        EVENTS.by_type[_event_type].prefix[HEADER_BYTES:],
    )
    for _event_type in (
        TransferPosted,
        TransferPending,
        PendingPosted,
        PendingVoided,
        PendingExpired,
    )
}


def _encode_unhashed(event: Event) -> bytearray:
    """The event's single-object bytes with 32 zero bytes where its hash goes (the end)."""
    encoder = _EVENT_UNHASHED_ENCODERS.get(type(event))
    if encoder is None:
        raise EncodeError(f"{type(event).__name__} is not an event")
    return encoder(event)


def event_canonical_bytes(event: Event) -> bytes:
    """The bytes an event's hash covers: deterministic, independent of ``event.hash``.

    Definition (``streamledger.v1``): the one-byte zig-zag union index of the event's type in
    ``EventEnvelope`` (0 = AccountOpened … 10 = TransactionPendingExpired), followed by the Avro
    binary encoding of the event record with its ``hash`` field left out, all other fields in schema
    order. The one map (``metadata``, since v1.4) is written sorted by key in one block, so the
    encoding is unique. The chain hash is ``SHA-256(prev_hash + event_canonical_bytes(event))``
    (see ``event_chain_hash``).

    ``hash`` is the last field of every event record and a fixed 32 bytes, so these are exactly
    the event's single-object bytes between the 10-byte header and the final 32 bytes: one
    encode gives both (``seal_event``). This re-encodes under the **current** contract: for an
    event read from the log, which an earlier version may have written (v1.0 to v1.3 bytes have
    no ``metadata``), hash the bytes as written instead (``record_canonical_bytes``).
    """
    return bytes(_encode_unhashed(event)[HEADER_BYTES:-_HASH_BYTES])


def record_canonical_bytes(data: bytes) -> bytes:
    """The canonical bytes of an event record **as written**, whatever its contract version.

    Every version's event records end with the 32-byte ``hash``, so the bytes the hash covers are
    the single-object bytes between the 10-byte header and the last 32 bytes (docs/contract.md,
    "Canonical bytes and the hash chain"). A verifier hashes these, never a re-encoding of the
    decoded value: an event written before v1.4 decodes with ``metadata=()``, and encoding that
    now would add the empty map's byte (decision 0055). ``data`` must be a decodable event."""
    return bytes(data[HEADER_BYTES:-_HASH_BYTES])


def event_chain_hash(event: Event) -> bytes:
    """``SHA-256(event.prev_hash + event_canonical_bytes(event))``: what ``event.hash`` must be."""
    return hashlib.sha256(event.prev_hash + event_canonical_bytes(event)).digest()


def seal_event(event: Event) -> tuple[bytes, bytes]:
    """``(hash, single-object bytes)`` of an event, from one encode; ``event.hash`` is ignored.

    The bytes are what ``encode_event`` gives for the event carrying that hash: the ledger
    core seals each new event with this and hands the bytes on, so no event is encoded twice.
    """
    prefix = _TRANSFER_EVENT_PREFIXES.get(type(event))
    if prefix is not None:  # a single-leg transfer event: sealed by hand (decision 0125)
        try:
            return seal_transfer_event(prefix[0], prefix[1], event)
        except (NotPlainError, *_ENCODE_FAILURES):
            pass  # the path below: the generic encoder's bytes or EncodeError stand
    buffer = _encode_unhashed(event)
    chain = hashlib.sha256(event.prev_hash)
    with memoryview(buffer) as canonical:  # hashed in place: no copy of the body
        chain.update(canonical[HEADER_BYTES:-_HASH_BYTES])
    digest = chain.digest()
    buffer[-_HASH_BYTES:] = digest
    return digest, bytes(buffer)
