"""The reconciliation records on Kafka: Avro single-object encoding, contract version v1.2.

Same wire format as the ledger's records (``C3 01`` + the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form + the Avro binary body), but a contract
of its own (decision 0052): the ``.avsc`` files in ``reconciliation/avro/`` (namespace
``streamledger.reconciliation.v1``), versioned apart from the ledger's ``schemas/`` so the two
evolve without touching each other's history. Each top-level record is one self-contained file;
the fingerprint says which record a value is, so ``ledger.statements`` carries four kinds
(``Statement``, ``StatementLine``, ``ManualMatch``, ``ManualUnmatch``) with no envelope, and
``ledger.reconciliation`` two (``ReconciliationResult``, ``ManualRefusal``, decision 0107).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

import reconciliation
from reconciliation.manual_refusal import ManualRefusal
from reconciliation.matching import (
    ManualMatch,
    ManualUnmatch,
    MatchRule,
    ReconciliationResult,
    ReconciliationState,
)
from reconciliation.statement import (
    Balance,
    Direction,
    Statement,
    StatementFormat,
    StatementLine,
)
from schemas.avro_schemas import fingerprint_bytes, without_logical_types
from schemas.codec import (
    HEADER_BYTES,
    MARKER,
    BodyInvalidError,
    TruncatedError,
    UnknownFingerprintError,
    WrongMarkerError,
)

# v1.1: camt054 appended to Statement.format; v1.2: ManualRefusal (decision 0107)
RECONCILIATION_CONTRACT_VERSION: Final = "v1.2"
# the package's directory, not this file's: compiled (scripts/build_native.py), this module is
# a binary under build/native/
AVRO_DIRECTORY: Final = Path(reconciliation.__file__).resolve().parent / "avro"
TOP_LEVEL_RECORDS: Final = (
    "Statement",
    "StatementLine",
    "ManualMatch",
    "ManualUnmatch",
    "ReconciliationResult",
    "ManualRefusal",
)
ReconciliationRecord = (
    Statement | StatementLine | ManualMatch | ManualUnmatch | ReconciliationResult | ManualRefusal
)


@dataclass(frozen=True, slots=True)
class RecordSchema:
    name: str
    canonical_form: str
    header: bytes  # marker + fingerprint
    wire: Any  # fastavro-parsed, logical types stripped (days and microseconds stay ints)


def _load(name: str) -> RecordSchema:
    definition = json.loads((AVRO_DIRECTORY / f"{name}.avsc").read_text(encoding="utf-8"))
    canonical_form = to_parsing_canonical_form(definition)
    return RecordSchema(
        name=name,
        canonical_form=canonical_form,
        header=MARKER + fingerprint_bytes(canonical_form),
        wire=parse_schema(without_logical_types(definition)),
    )


SCHEMAS: Final = {name: _load(name) for name in TOP_LEVEL_RECORDS}
# ``Statement`` as written before "camt054" was appended to its ``format`` enum (decision 0099):
# the same bytes read with today's schema (an appended symbol keeps every earlier index)
STATEMENT_HEADERS_BEFORE: Final = (bytes.fromhex("c30140cf141c4d110def"),)
BY_HEADER: Final = {schema.header: schema for schema in SCHEMAS.values()} | {
    header: SCHEMAS["Statement"] for header in STATEMENT_HEADERS_BEFORE
}


def encode(record: ReconciliationRecord) -> bytes:
    if type(record) is ReconciliationResult and _longs_fit(record):
        return encode_result(record)  # the matcher's output: by hand, the same bytes
    return encode_with_fastavro(record)


def encode_with_fastavro(record: ReconciliationRecord) -> bytes:
    schema = SCHEMAS[type(record).__name__]
    buffer = io.BytesIO()
    buffer.write(schema.header)
    schemaless_writer(buffer, schema.wire, _to_avro(record))
    return buffer.getvalue()


_STATE_INDEX: Final = {state: index for index, state in enumerate(ReconciliationState)}
_RULE_BYTES: Final = {rule: bytes((2, index << 1)) for index, rule in enumerate(MatchRule)}
_RESULT_HEADER: Final = SCHEMAS["ReconciliationResult"].header
LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1


def _longs_fit(result: ReconciliationResult) -> bool:
    """Avro longs are 64-bit: anything else is fastavro's to refuse."""
    return (
        LONG_MIN <= result.line_amount <= LONG_MAX
        and LONG_MIN <= result.movement_amount <= LONG_MAX
        and LONG_MIN <= result.decided_at_us <= LONG_MAX
    )


def _write_long(buffer: bytearray, value: int) -> None:
    """Avro's long: zig-zag, then 7 bits a byte, least significant first."""
    unsigned = (value << 1) ^ (value >> 63)
    while unsigned > 0x7F:
        buffer.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    buffer.append(unsigned)


def _write_string(buffer: bytearray, value: str) -> None:
    encoded = value.encode()
    _write_long(buffer, len(encoded))
    buffer += encoded


def _write_strings(buffer: bytearray, values: tuple[str, ...]) -> None:
    """An array of strings as fastavro writes it: one block (its count), then the end (0)."""
    if values:
        _write_long(buffer, len(values))
        for value in values:
            _write_string(buffer, value)
    buffer.append(0)


def encode_result(result: ReconciliationResult) -> bytes:
    """``encode(result)``, written by hand: the bytes fastavro writes (a property test compares),
    at a fraction of the cost (one result per decided item, the matcher's every output)."""
    buffer = bytearray(_RESULT_HEADER)
    _write_string(buffer, result.tenant_id)
    _write_string(buffer, result.account_id)
    buffer.append(_STATE_INDEX[result.state] << 1)  # enum index: a long, < 64
    if result.rule is None:
        buffer.append(0)  # the union's branch 0: null
    else:
        buffer += _RULE_BYTES[result.rule]  # branch 1, then the enum's index
    _write_string(buffer, result.reason)
    _write_strings(buffer, result.line_ids)
    _write_strings(buffer, result.movement_ids)
    _write_long(buffer, result.line_amount)
    _write_long(buffer, result.movement_amount)
    _write_long(buffer, result.decided_at_us)
    return bytes(buffer)


_LINE_HEADER: Final = SCHEMAS["StatementLine"].header
_DIRECTIONS: Final = tuple(Direction)  # the enum's symbols, in the schema's order
INT_MIN: Final = -(1 << 31)
INT_MAX: Final = (1 << 31) - 1
LONG_BYTES_MAX: Final = 10  # a 64-bit long takes at most 10 bytes of 7 bits
UNUSUAL: Final = "not what the importer writes: left to fastavro"


def _read_long(data: bytes, position: int) -> tuple[int, int]:
    byte = data[position]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), position + 1
    unsigned, shift, end = byte & 0x7F, 7, position + LONG_BYTES_MAX
    position += 1
    while True:
        byte = data[position]
        position += 1
        unsigned |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (unsigned >> 1) ^ -(unsigned & 1), position
        shift += 7
        if position >= end:
            raise ValueError(UNUSUAL)


def _read_string(data: bytes, position: int) -> tuple[str, int]:
    size, position = _read_long(data, position)
    end = position + size
    if size < 0 or end > len(data):
        raise ValueError(UNUSUAL)
    return data[position:end].decode(), end


def _read_optional_string(data: bytes, position: int) -> tuple[str | None, int]:
    branch = data[position]
    if branch == 0:
        return None, position + 1
    if branch != 2:  # the union's branch 1 (string), zig-zag
        raise ValueError(UNUSUAL)
    return _read_string(data, position + 1)


def _read_int(data: bytes, position: int) -> tuple[int, int]:
    value, position = _read_long(data, position)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(UNUSUAL)
    return value, position


def read_line(value: bytes) -> StatementLine | None:
    """A ``StatementLine`` record read by hand (what ``decode`` gives through fastavro, a
    property test compares); None for anything unusual (an unknown branch, symbol or boolean
    byte, an int beyond 32 bits, bytes left over, invalid UTF-8, a short body)."""
    try:
        return _read_line_fields(value, HEADER_BYTES)
    except (ValueError, IndexError):  # UnicodeDecodeError is a ValueError
        return None


def _read_line_fields(data: bytes, position: int) -> StatementLine:
    tenant_id, position = _read_string(data, position)
    account_id, position = _read_string(data, position)
    line_id, position = _read_string(data, position)
    file_sha256, position = _read_string(data, position)
    statement_id, position = _read_optional_string(data, position)
    line_number, position = _read_int(data, position)
    amount, position = _read_long(data, position)
    currency, position = _read_string(data, position)
    direction, reversal = data[position], data[position + 1]
    if direction not in {0, 2} or reversal not in {0, 1}:
        raise ValueError(UNUSUAL)
    booking_date_days, position = _read_int(data, position + 2)
    value_date_days: int | None = None
    if data[position] == 2:  # the union's branch 1 (int)
        value_date_days, position = _read_int(data, position + 1)
    elif data[position] == 0:
        position += 1
    else:
        raise ValueError(UNUSUAL)
    optional = []
    for _ in range(6):  # bank and entry references, end-to-end, counterparty x2, remittance
        text, position = _read_optional_string(data, position)
        optional.append(text)
    if position != len(data):
        raise ValueError(UNUSUAL)
    bank, entry, end_to_end, name, counterparty_account, remittance = optional
    return StatementLine(
        tenant_id=tenant_id, account_id=account_id, line_id=line_id, file_sha256=file_sha256,
        statement_id=statement_id, line_number=line_number, amount=amount, currency=currency,
        direction=_DIRECTIONS[direction >> 1], reversal=reversal == 1,
        booking_date_days=booking_date_days, value_date_days=value_date_days,
        bank_reference=bank, entry_reference=entry, end_to_end_reference=end_to_end,
        counterparty_name=name, counterparty_account=counterparty_account,
        remittance_information=remittance,
    )  # fmt: skip


def decode(value: bytes) -> ReconciliationRecord:
    """A record of ``ledger.statements`` or ``ledger.reconciliation``; ``DecodeError`` else."""
    return _decode(value, lines_by_hand=True)


def decode_with_fastavro(value: bytes) -> ReconciliationRecord:
    """``decode`` without the hand-written line reader (what a property test compares it with)."""
    return _decode(value, lines_by_hand=False)


def _decode(value: bytes, *, lines_by_hand: bool) -> ReconciliationRecord:
    if len(value) < HEADER_BYTES:
        raise TruncatedError(f"{len(value)} bytes, a record needs at least {HEADER_BYTES}")
    if value[:2] != MARKER:
        raise WrongMarkerError(f"first bytes {value[:2].hex()}, expected {MARKER.hex()}")
    header = value[:HEADER_BYTES]
    if lines_by_hand and header == _LINE_HEADER:
        line = read_line(value)
        if line is not None:
            return line  # else something unusual: fastavro reads it, or says what is wrong
    schema = BY_HEADER.get(header)
    if schema is None:
        raise UnknownFingerprintError(f"fingerprint {value[2:HEADER_BYTES].hex()}")
    try:
        body = schemaless_reader(io.BytesIO(value[HEADER_BYTES:]), schema.wire, None)
    except (ValueError, EOFError, KeyError, IndexError, TypeError) as exc:
        raise BodyInvalidError(f"{schema.name}: {exc}") from exc
    assert isinstance(body, dict)
    return _from_avro(schema.name, body)


def _balance_to_avro(balance: Balance | None) -> dict[str, int] | None:
    return None if balance is None else {"amount": balance.amount, "date": balance.date_days}


def _balance_from_avro(value: Mapping[str, int] | None) -> Balance | None:
    return None if value is None else Balance(amount=value["amount"], date_days=value["date"])


def _to_avro(record: ReconciliationRecord) -> dict[str, Any]:
    if isinstance(record, StatementLine):
        return _line_to_avro(record)
    if isinstance(record, Statement):
        return _statement_to_avro(record)
    if isinstance(record, ManualMatch):
        return {
            "tenant_id": record.tenant_id,
            "account_id": record.account_id,
            "line_ids": list(record.line_ids),
            "movement_ids": list(record.movement_ids),
            "actor": record.actor,
            "note": record.note,
            "requested_at_us": record.requested_at_us,
        }
    if isinstance(record, ManualUnmatch):
        return _unmatch_to_avro(record)
    if isinstance(record, ManualRefusal):
        return _refusal_to_avro(record)
    return {
        "tenant_id": record.tenant_id,
        "account_id": record.account_id,
        "state": record.state.value,
        "rule": None if record.rule is None else record.rule.value,
        "reason": record.reason,
        "line_ids": list(record.line_ids),
        "movement_ids": list(record.movement_ids),
        "line_amount": record.line_amount,
        "movement_amount": record.movement_amount,
        "decided_at_us": record.decided_at_us,
    }


def _unmatch_to_avro(request: ManualUnmatch) -> dict[str, Any]:
    return {
        "tenant_id": request.tenant_id,
        "account_id": request.account_id,
        "result_id": request.result_id,
        "line_ids": list(request.line_ids),
        "movement_ids": list(request.movement_ids),
        "line_amount": request.line_amount,
        "movement_amount": request.movement_amount,
        "actor": request.actor,
        "note": request.note,
        "requested_at_us": request.requested_at_us,
    }


def _refusal_to_avro(refusal: ManualRefusal) -> dict[str, Any]:
    return {
        "tenant_id": refusal.tenant_id,
        "account_id": refusal.account_id,
        "request_id": refusal.request_id,
        "request_type": refusal.request_type,
        "actor": refusal.actor,
        "line_ids": list(refusal.line_ids),
        "movement_ids": list(refusal.movement_ids),
        "reason": refusal.reason,
        "refused_at_us": refusal.refused_at_us,
    }


def _line_to_avro(line: StatementLine) -> dict[str, Any]:
    return {
        "tenant_id": line.tenant_id,
        "account_id": line.account_id,
        "line_id": line.line_id,
        "file_sha256": line.file_sha256,
        "statement_id": line.statement_id,
        "line_number": line.line_number,
        "amount": line.amount,
        "currency": line.currency,
        "direction": line.direction.value,
        "reversal": line.reversal,
        "booking_date": line.booking_date_days,
        "value_date": line.value_date_days,
        "bank_reference": line.bank_reference,
        "entry_reference": line.entry_reference,
        "end_to_end_reference": line.end_to_end_reference,
        "counterparty_name": line.counterparty_name,
        "counterparty_account": line.counterparty_account,
        "remittance_information": line.remittance_information,
    }


def _statement_to_avro(statement: Statement) -> dict[str, Any]:
    return {
        "tenant_id": statement.tenant_id,
        "account_id": statement.account_id,
        "file_sha256": statement.file_sha256,
        "format": statement.format.name.lower(),
        "statement_id": statement.statement_id,
        "currency": statement.currency,
        "opening_balance": _balance_to_avro(statement.opening_balance),
        "closing_balance": _balance_to_avro(statement.closing_balance),
        "from_date": statement.from_date_days,
        "to_date": statement.to_date_days,
        "line_count": statement.line_count,
        "new_line_count": statement.new_line_count,
        "entries_not_booked": statement.entries_not_booked,
        "imported_at_us": statement.imported_at_us,
    }


def _from_avro(name: str, body: dict[str, Any]) -> ReconciliationRecord:
    if name == "StatementLine":
        return StatementLine(
            **{key: body[key] for key in _LINE_SAME_NAMES},
            direction=Direction(body["direction"]),
            booking_date_days=body["booking_date"],
            value_date_days=body["value_date"],
        )
    if name == "Statement":
        return Statement(
            **{key: body[key] for key in _STATEMENT_SAME_NAMES},
            format=StatementFormat[body["format"].upper()],
            opening_balance=_balance_from_avro(body["opening_balance"]),
            closing_balance=_balance_from_avro(body["closing_balance"]),
            from_date_days=body["from_date"],
            to_date_days=body["to_date"],
        )
    if name == "ManualMatch":
        return ManualMatch(
            tenant_id=body["tenant_id"],
            account_id=body["account_id"],
            line_ids=tuple(body["line_ids"]),
            movement_ids=tuple(body["movement_ids"]),
            actor=body["actor"],
            note=body["note"],
            requested_at_us=body["requested_at_us"],
        )
    if name == "ManualRefusal":
        return ManualRefusal(
            **{key: body[key] for key in _REFUSAL_SAME_NAMES},
            line_ids=tuple(body["line_ids"]),
            movement_ids=tuple(body["movement_ids"]),
        )
    if name == "ManualUnmatch":
        return ManualUnmatch(
            **{key: body[key] for key in _UNMATCH_SAME_NAMES},
            line_ids=tuple(body["line_ids"]),
            movement_ids=tuple(body["movement_ids"]),
        )
    return ReconciliationResult(
        tenant_id=body["tenant_id"],
        account_id=body["account_id"],
        state=ReconciliationState(body["state"]),
        rule=None if body["rule"] is None else MatchRule(body["rule"]),
        reason=body["reason"],
        line_ids=tuple(body["line_ids"]),
        movement_ids=tuple(body["movement_ids"]),
        line_amount=body["line_amount"],
        movement_amount=body["movement_amount"],
        decided_at_us=body["decided_at_us"],
    )


_LINE_SAME_NAMES: Final = (
    "tenant_id",
    "account_id",
    "line_id",
    "file_sha256",
    "statement_id",
    "line_number",
    "amount",
    "currency",
    "reversal",
    "bank_reference",
    "entry_reference",
    "end_to_end_reference",
    "counterparty_name",
    "counterparty_account",
    "remittance_information",
)
_UNMATCH_SAME_NAMES: Final = (
    "tenant_id",
    "account_id",
    "result_id",
    "line_amount",
    "movement_amount",
    "actor",
    "note",
    "requested_at_us",
)
_REFUSAL_SAME_NAMES: Final = (
    "tenant_id",
    "account_id",
    "request_id",
    "request_type",
    "actor",
    "reason",
    "refused_at_us",
)
_STATEMENT_SAME_NAMES: Final = (
    "tenant_id",
    "account_id",
    "file_sha256",
    "statement_id",
    "currency",
    "line_count",
    "new_line_count",
    "entries_not_booked",
    "imported_at_us",
)
