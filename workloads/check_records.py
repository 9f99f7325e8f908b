"""The fields of ledger events and outcomes that the bench's correctness check compares
(``bench.ledger_check.check``), read without building model values (decision 0147). Here in
``workloads``, not in ``bench``, so that its unit test may import it (tests do not import
``bench``).

The check compares, per outcome, (tenant, key) -> (status, reason, event sequences) and, per
event, (tenant, sequence) -> (type, idempotency key). ``schemas.codec.decode_outcome`` and
``decode_event`` build the whole frozen model value of every record for that: 7.0 s of the
check's 8.5 s at 103,800 commands (decision 0141). Here:

- an event is read by ``projections.event_records.decode_event_record``: the projection's
  reader (hand-written for the payment events, fastavro's dict for the others, the codec for
  anything else), which reads and checks every byte of the record and whose record is the
  codec's (``tests/unit/test_projection_event_records.py``, every event type);
- an outcome under the current schema is read by hand (``read_outcome_fields``): every field of
  the record is read and checked as ``schemas.avro_readers`` reads (longs within int64, strict
  UTF-8, enum and union indexes in range, no byte left after the record), and only the compared
  ones are kept. Anything it does not take plainly (an older schema, a damaged record, a schema
  whose layout is not the one it was written for) goes through ``decode_outcome``, whose value
  or ``DecodeError`` stands. ``tests/unit/test_check_records.py`` compares both readers
  with the codec (Hypothesis: any outcome or event, and any one changed at random).

So every record is still read whole, and every compared field is the codec's. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from projections.event_records import EVENT_TYPE_FIELD, decode_event_record
from schemas.avro_readers import (
    HASH_BYTES,
    NULL_BRANCH,
    VALUE_BRANCH,
    field_layout,
    read_block_count,
    read_long,
    read_optional_long,
    read_string,
    skip_fixed,
)
from schemas.codec import OUTCOMES, decode_outcome
from schemas.model import Outcome, OutcomeStatus, RejectReason

# (tenant, key) and (status, reason, event sequences), as ``ledger_check.check`` compares them
OutcomeKey = tuple[str, str]
OutcomeFields = tuple[str, str | None, tuple[int, ...]]
# (tenant, sequence) and (event type, idempotency key)
EventKey = tuple[str, int]
EventFields = tuple[str, str | None]

OUTCOME_LAYOUT: Final = (
    ("tenant_id", "string"),
    ("idempotency_key", "string"),
    ("command_type", "string"),
    ("fingerprint", f"fixed{HASH_BYTES}"),
    ("field_fingerprints", "bytes"),
    ("status", "enum"),
    ("event_sequences", "array"),
    ("reason", "null|enum"),
    ("detail", "string"),
    ("decided_at_us", "long"),
    ("expires_at_us", "null|long"),
)


def _enum_values(
    wire: Mapping[str, Any], named: Mapping[str, Any], field_name: str, kind: type[Any]
) -> tuple[str | None, ...]:
    """Per symbol index of an enum field (or of the enum branch of a ``["null", enum]``): the
    model member's value, or None where the model has no member of that name (the codec
    rejects that index; the hand reader leaves it to the codec)."""
    (field,) = (each for each in wire["fields"] if each["name"] == field_name)
    enum_type = field["type"]
    if isinstance(enum_type, list):
        enum_type = enum_type[VALUE_BRANCH]
    if isinstance(enum_type, str):
        enum_type = named[enum_type]
    members = {member.name: member.value for member in kind}
    return tuple(members.get(symbol) for symbol in enum_type["symbols"])


def _outcome_reader_usable() -> bool:
    """Whether the current ``Outcome`` schema has the layout the reader was written for (its
    ``event_sequences`` an array of longs)."""
    branch = OUTCOMES.by_type[Outcome]
    if field_layout(branch.wire, branch.named) != OUTCOME_LAYOUT:
        return False
    (sequences,) = (each for each in branch.wire["fields"] if each["name"] == "event_sequences")
    return bool(sequences["type"].get("items") == "long")


_OUTCOME_BRANCH: Final = OUTCOMES.by_type[Outcome]
OUTCOME_PREFIX: Final = _OUTCOME_BRANCH.prefix if _outcome_reader_usable() else None
_PREFIX_BYTES: Final = len(_OUTCOME_BRANCH.prefix)
_STATUSES: Final = _enum_values(
    _OUTCOME_BRANCH.wire, _OUTCOME_BRANCH.named, "status", OutcomeStatus
)
_REASONS: Final = _enum_values(_OUTCOME_BRANCH.wire, _OUTCOME_BRANCH.named, "reason", RejectReason)


def _enum_value(values: tuple[str | None, ...], data: bytes, position: int) -> tuple[str, int]:
    index, position = read_long(data, position)
    if not 0 <= index < len(values):
        raise ValueError(f"enum index {index}")
    value = values[index]
    if value is None:
        raise ValueError(f"enum index {index}: no model member")
    return value, position


def read_outcome_fields(data: bytes, position: int) -> tuple[OutcomeKey, OutcomeFields]:
    """The compared fields of a current-schema outcome body from ``position``; every other
    field is read and checked too. Raises ``IndexError`` or ``ValueError`` for anything not
    plainly valid (the codec decides it then)."""
    tenant_id, position = read_string(data, position)
    idempotency_key, position = read_string(data, position)
    _, position = read_string(data, position)  # command_type
    position = skip_fixed(data, position, HASH_BYTES)  # fingerprint
    length, position = read_long(data, position)  # field_fingerprints (bytes)
    if length < 0 or position + length > len(data):
        raise ValueError("a bytes length outside the record")
    position += length
    status, position = _enum_value(_STATUSES, data, position)
    sequences: list[int] = []
    count, position = read_block_count(data, position)
    while count:
        for _ in range(count):
            sequence, position = read_long(data, position)
            sequences.append(sequence)
        count, position = read_block_count(data, position)
    branch, position = read_long(data, position)
    reason: str | None = None
    if branch == VALUE_BRANCH:
        reason, position = _enum_value(_REASONS, data, position)
    elif branch != NULL_BRANCH:
        raise ValueError(f"union branch {branch}")
    _, position = read_string(data, position)  # detail
    _, position = read_long(data, position)  # decided_at_us
    _, position = read_optional_long(data, position)  # expires_at_us
    if position != len(data):
        raise ValueError(f"{len(data) - position} bytes left after the record")
    return (tenant_id, idempotency_key), (status, reason, tuple(sequences))


def outcome_fields(data: bytes) -> tuple[OutcomeKey, OutcomeFields]:
    """The compared fields of an outcome in single-object bytes: by hand under the current
    schema, else (or if the hand reader does not take it) through ``decode_outcome``, whose
    ``DecodeError`` stands."""
    if (
        OUTCOME_PREFIX is not None
        and type(data) is bytes
        and data[:_PREFIX_BYTES] == OUTCOME_PREFIX
    ):
        try:
            return read_outcome_fields(data, _PREFIX_BYTES)
        except (IndexError, ValueError):
            pass  # not plainly valid: the codec decides
    outcome = decode_outcome(data)
    reason = None if outcome.reason is None else outcome.reason.value
    key = (outcome.tenant_id, outcome.idempotency_key)
    return key, (outcome.status.value, reason, outcome.event_sequences)


def event_fields(data: bytes) -> tuple[EventKey, EventFields]:
    """The compared fields of an event in single-object bytes (``decode_event_record``: every
    byte read and checked; raises what ``decode_event`` raises)."""
    record = decode_event_record(data)
    return (record["tenant_id"], record["sequence"]), (
        str(record[EVENT_TYPE_FIELD]),
        record["idempotency_key"],
    )
