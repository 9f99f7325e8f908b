"""Avro single-object encoding of the ledger's records, and the canonical bytes of an event.

Every record on a ledger topic is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint
of the writer schema's Parsing Canonical Form + the Avro binary body (Avro specification,
"Single-object encoding"). Any Avro library can decode it given the ``.avsc`` files; no registry
server is needed.

The decoder looks the fingerprint up among every known contract version (``schemas/`` and
``schemas/history/*``) and resolves the writer schema to the current reader schema, so bytes
written by an earlier version still decode. Anything else raises a ``DecodeError`` subclass that
says what is wrong (its ``kind`` is a short stable word for DLQ headers)::

    StreamLedgerError
    ├── DecodeError                 bytes that are not a record we can read
    │   ├── WrongMarkerError        the first two bytes are not C3 01
    │   ├── TruncatedError          fewer bytes than the header or the body needs
    │   ├── UnknownFingerprintError no known schema has this fingerprint
    │   ├── UnexpectedRecordError   a known schema, but another record (an event on commands)
    │   └── BodyInvalidError        the body does not decode under the writer schema
    └── EncodeError                 a value that does not fit its schema (a bug upstream)

Hot path: schemas are parsed once at import; an envelope (a record holding a union of the
command, event or state records) is written and read as its one-byte union index followed by the
chosen record, which gives the same bytes as fastavro writing the envelope while skipping its
union search (about 1 µs per record). Bytes from older versions take the general resolving path.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer

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
from schemas.model import (
    COMMAND_TYPES,
    EVENT_TYPES,
    AccountBalance,
    AccountState,
    Command,
    Event,
    Outcome,
    OutcomeStatus,
    RejectReason,
    StateRecord,
    TenantHead,
    TransferState,
    TransferStatus,
)
from streamledger.errors import StreamLedgerError

MARKER: Final = b"\xc3\x01"
HEADER_BYTES: Final = len(MARKER) + FINGERPRINT_BYTES
UNION_INDEX_MAX: Final = 63  # a zig-zag varint below 128 is one byte: indexes 0..63
STATE_TYPES: tuple[type[StateRecord], ...] = (AccountState, TransferState, TenantHead)
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


@dataclass(frozen=True, slots=True)
class Branch:
    """One record type of an envelope's union (or the one record of a plain top-level record)."""

    index: int
    full_name: str
    python_type: type[Any]
    field_names: tuple[str, ...]
    wire: Any  # fastavro-parsed, self-contained
    prefix: bytes  # single-object header (+ union index byte for envelopes)


@dataclass(frozen=True, slots=True)
class RecordFamily:
    """A top-level record: its current schema, its branches and where a value sits in it."""

    current: TopLevelSchema
    envelope_field: str | None  # None for a plain record (Outcome)
    branches: tuple[Branch, ...]
    by_type: Mapping[type[Any], Branch]
    by_name: Mapping[str, Branch]


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
        branches.append(
            Branch(
                index=index,
                full_name=full_name,
                python_type=python_type,
                field_names=tuple(item.name for item in fields(python_type)),
                wire=_branch_wire(full_name, named) if envelope_field else current.wire,
                prefix=prefix,
            )
        )
    return RecordFamily(
        current=current,
        envelope_field=envelope_field,
        branches=tuple(branches),
        by_type={branch.python_type: branch for branch in branches},
        by_name={branch.full_name: branch for branch in branches},
    )


_VERSIONS = load_all_versions()
_NAMED_TYPES = read_named_types(SCHEMA_DIRECTORY)
_CURRENT = _VERSIONS[CURRENT_VERSION]
COMMANDS = _build_family(_CURRENT["CommandEnvelope"], "command", COMMAND_TYPES, _NAMED_TYPES)
EVENTS = _build_family(_CURRENT["EventEnvelope"], "event", EVENT_TYPES, _NAMED_TYPES)
OUTCOMES = _build_family(_CURRENT["Outcome"], None, (Outcome,), _NAMED_TYPES)
STATES = _build_family(_CURRENT["StateEnvelope"], "state", STATE_TYPES, _NAMED_TYPES)

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


def _enum_name(value: Any) -> Any:
    return None if value is None else value.name


# Fields whose model value is not the Avro value: (to Avro, from Avro).
_FieldConversion = tuple[Callable[[Any], Any], Callable[[Any], Any]]
FIELD_CONVERSIONS: dict[str, _FieldConversion] = {
    "metadata": (dict, lambda value: tuple(sorted(value.items()))),
    "balances": (
        _balances_to_avro,
        lambda value: tuple(AccountBalance(**item) for item in value),
    ),
    "field_fingerprints": (
        lambda value: [{"field": name, "fingerprint": digest} for name, digest in value],
        lambda value: tuple((item["field"], item["fingerprint"]) for item in value),
    ),
    "event_sequences": (list, tuple),
    "reason": (_enum_name, lambda value: None if value is None else RejectReason[value]),
}
TYPE_SPECIFIC_CONVERSIONS: dict[tuple[type[Any], str], _FieldConversion] = {
    (Outcome, "status"): (_enum_name, lambda value: OutcomeStatus[value]),
    (TransferState, "status"): (_enum_name, lambda value: TransferStatus[value]),
}


def _conversions_for(python_type: type[Any], names: tuple[str, ...]) -> dict[str, _FieldConversion]:
    found = {name: FIELD_CONVERSIONS[name] for name in names if name in FIELD_CONVERSIONS}
    for (owner, name), conversion in TYPE_SPECIFIC_CONVERSIONS.items():
        if owner is python_type:
            found[name] = conversion
    return found


_CONVERSIONS: dict[type[Any], dict[str, _FieldConversion]] = {
    branch.python_type: _conversions_for(branch.python_type, branch.field_names)
    for family in (COMMANDS, EVENTS, OUTCOMES, STATES)
    for branch in family.branches
}


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
    return python_type(**record)


# --------------------------------------------------------------------------- encode


def _encode(family: RecordFamily, value: Any) -> bytes:
    branch = family.by_type.get(type(value))
    if branch is None:
        raise EncodeError(f"{type(value).__name__} is not a {family.current.name} record")
    buffer = io.BytesIO()
    buffer.write(branch.prefix)
    try:
        schemaless_writer(buffer, branch.wire, to_avro(value, branch.field_names))
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
        raise EncodeError(f"{branch.python_type.__name__} does not fit its schema: {exc}") from exc
    return buffer.getvalue()


def encode_command(command: Command) -> bytes:
    """Single-object bytes of a command (a ``CommandEnvelope``)."""
    return _encode(COMMANDS, command)


def encode_event(event: Event) -> bytes:
    """Single-object bytes of an event (an ``EventEnvelope``)."""
    return _encode(EVENTS, event)


def encode_outcome(outcome: Outcome) -> bytes:
    """Single-object bytes of an outcome."""
    return _encode(OUTCOMES, outcome)


def encode_state(state: StateRecord) -> bytes:
    """Single-object bytes of a ``ledger.balances`` record (a ``StateEnvelope``)."""
    return _encode(STATES, state)


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


def _read(buffer: io.BytesIO, writer: Any, reader: Any, size: int, what: str) -> Any:
    try:
        record = schemaless_reader(
            buffer, writer, reader, return_record_name=True, return_record_name_override=True
        )
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
        return from_avro(branch.python_type, record)
    except (ValueError, TypeError, KeyError) as exc:
        raise BodyInvalidError(f"{branch.full_name}: {type(exc).__name__}: {exc}") from exc


def _decode(family: RecordFamily, data: bytes) -> Any:
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


def decode_command(data: bytes) -> Command:
    """The command in single-object bytes; raises a ``DecodeError`` subclass."""
    result: Command = _decode(COMMANDS, data)
    return result


def decode_event(data: bytes) -> Event:
    """The event in single-object bytes; raises a ``DecodeError`` subclass."""
    result: Event = _decode(EVENTS, data)
    return result


def decode_outcome(data: bytes) -> Outcome:
    """The outcome in single-object bytes; raises a ``DecodeError`` subclass."""
    result: Outcome = _decode(OUTCOMES, data)
    return result


def decode_state(data: bytes) -> StateRecord:
    """The ``ledger.balances`` record in single-object bytes; raises a ``DecodeError`` subclass."""
    result: StateRecord = _decode(STATES, data)
    return result


# --------------------------------------------------------------------------- canonical event bytes


def _hash_form_wire(full_name: str) -> Any:
    expanded = expand(full_name, _NAMED_TYPES)
    expanded["fields"] = [
        item for item in expanded["fields"] if item["name"] != HASH_FORM_OMITTED_FIELD
    ]
    return parse_schema(without_logical_types(expanded))


_HASH_FORMS: dict[type[Any], tuple[bytes, Any, tuple[str, ...]]] = {
    branch.python_type: (
        bytes((branch.index << 1,)),
        _hash_form_wire(branch.full_name),
        tuple(name for name in branch.field_names if name != HASH_FORM_OMITTED_FIELD),
    )
    for branch in EVENTS.branches
}


def event_canonical_bytes(event: Event) -> bytes:
    """The bytes an event's hash covers: deterministic, independent of ``event.hash``.

    Definition (``streamledger.v1``): the one-byte zig-zag union index of the event's type in
    ``EventEnvelope`` (0 = AccountOpened … 5 = PendingExpired), followed by the Avro binary
    encoding of the event record with its ``hash`` field left out, all other fields in schema
    order. No maps occur in events, so the encoding is unique. The chain hash is
    ``SHA-256(prev_hash + event_canonical_bytes(event))`` (see ``event_chain_hash``).
    """
    form = _HASH_FORMS.get(type(event))
    if form is None:
        raise EncodeError(f"{type(event).__name__} is not an event")
    index_byte, wire, names = form
    buffer = io.BytesIO()
    buffer.write(index_byte)
    try:
        schemaless_writer(buffer, wire, to_avro(event, names))
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
        raise EncodeError(f"{type(event).__name__} does not fit its schema: {exc}") from exc
    return buffer.getvalue()


def event_chain_hash(event: Event) -> bytes:
    """``SHA-256(event.prev_hash + event_canonical_bytes(event))``: what ``event.hash`` must be."""
    return hashlib.sha256(event.prev_hash + event_canonical_bytes(event)).digest()
