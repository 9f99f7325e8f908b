"""Every schema change is backward and forward compatible with the versions kept in history.

For each earlier version and each top-level record: data written with the new schema is read
with the old one (forward compatibility: old readers keep working) and data written with the old
schema is read with the new one (backward compatibility), with the values checked field by field.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import codec
from schemas.avro_schemas import (
    CURRENT_VERSION,
    history_versions,
    load_all_versions,
    without_logical_types,
)
from schemas.model import Outcome, OutcomeStatus, RejectReason
from tests.unit.contract_strategies import commands, events, notifications, outcomes, states

VERSIONS = load_all_versions()
CURRENT = VERSIONS[CURRENT_VERSION]
FAMILIES = {
    "CommandEnvelope": (codec.COMMANDS, commands),
    "EventEnvelope": (codec.EVENTS, events),
    "Outcome": (codec.OUTCOMES, outcomes),
    "StateEnvelope": (codec.STATES, states),
    "NotificationEnvelope": (codec.NOTIFICATIONS, notifications),  # since v1.5
}


def _avro_record(family: codec.RecordFamily, value: Any) -> dict[str, Any]:
    branch = family.by_type[type(value)]
    record = codec.to_avro(value, branch.field_names)
    if family.envelope_field is None:
        return record
    return {family.envelope_field: (branch.full_name, record)}


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(dict(schema)), record)
    return buffer.getvalue()


def _read(data: bytes, writer: Any, reader: Any) -> Any:
    return schemaless_reader(
        io.BytesIO(data),
        parse_schema(without_logical_types(writer)),  # times stay int microseconds
        parse_schema(without_logical_types(reader)),
        return_record_name=True,
        return_record_name_override=True,
    )


def _fields_of(record: dict[str, Any], envelope_field: str | None) -> dict[str, Any]:
    return record if envelope_field is None else record[envelope_field][1]


def test_history_is_kept() -> None:
    assert history_versions(), "schemas/history/ must keep the previous contract version"


@pytest.mark.parametrize("old_version", history_versions())
@pytest.mark.parametrize("record_name", list(FAMILIES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_both_directions(old_version: str, record_name: str, data: st.DataObject) -> None:
    family, strategy = FAMILIES[record_name]
    if record_name not in VERSIONS[old_version]:
        return  # a top-level record this version does not have (notifications before v1.5)
    old = VERSIONS[old_version][record_name].expanded
    new = CURRENT[record_name].expanded
    value = data.draw(strategy)
    record = _avro_record(family, value)
    new_fields = _fields_of(record, family.envelope_field)
    if family.envelope_field is not None and not _has_branch(old, family, type(value)):
        _assert_unknown_to_old_readers(new, old, record)
        return
    if isinstance(value, Outcome) and not _has_symbol(old, value):
        if _reason_default(old) is None:
            _assert_unknown_to_old_readers(new, old, record)
        else:
            _assert_read_as_default(new, old, record, _reason_default(old))
        return

    # forward: new writer, old reader — the old reader sees its own fields, unchanged
    seen_by_old = _fields_of(_read(_write(new, record), new, old), family.envelope_field)
    assert seen_by_old == {name: new_fields[name] for name in seen_by_old}

    # backward: old writer, new reader — fields the old version lacks take their defaults
    old_record = _strip_to(old, record, family.envelope_field, seen_by_old)
    seen_by_new = _fields_of(_read(_write(old, old_record), old, new), family.envelope_field)
    for name, old_value in seen_by_old.items():
        assert seen_by_new[name] == old_value
    assert set(seen_by_new) == set(new_fields)


def _has_branch(schema: Any, family: codec.RecordFamily, record_type: type[Any]) -> bool:
    union = schema["fields"][0]["type"]
    names = {branch if isinstance(branch, str) else branch["name"] for branch in union}
    full_name = family.by_type[record_type].full_name
    return full_name in names or full_name.rsplit(".", 1)[1] in names


def _has_symbol(outcome_schema: Any, outcome: Outcome) -> bool:
    """Whether the version of ``outcome_schema`` knows the outcome's reason: v1.5 appended
    three monitor reasons (decision 0059), which, like an appended branch, only readers of
    v1.5 on know; only monitor commands get them."""
    if outcome.reason is None:
        return True
    reason_type = next(f["type"] for f in outcome_schema["fields"] if f["name"] == "reason")
    enum = next(branch for branch in reason_type if isinstance(branch, dict))
    return outcome.reason.name in enum["symbols"]


def _reason_default(outcome_schema: Any) -> str | None:
    """The reader default of the version's ``RejectReason`` (since v1.5), if any."""
    reason_type = next(f["type"] for f in outcome_schema["fields"] if f["name"] == "reason")
    enum = next(branch for branch in reason_type if isinstance(branch, dict))
    default: str | None = enum.get("default")
    return default


def _assert_read_as_default(new: Any, old: Any, record: dict[str, Any], default: str) -> None:
    """A reason appended after ``old`` when ``old`` has a reader default (v1.5 on): the old
    reader reads the outcome, every field as written but the reason, which it takes for its
    default (``RATE_LIMITED`` under v1.5 is ``INVALID_COMMAND``, decision 0083)."""
    seen_by_old = _read(_write(new, record), new, old)
    assert seen_by_old["reason"] == default
    assert {name: v for name, v in seen_by_old.items() if name != "reason"} == {
        name: record[name] for name in seen_by_old if name != "reason"
    }


def _assert_unknown_to_old_readers(new: Any, old: Any, record: dict[str, Any]) -> None:
    """A record of a branch appended after ``old`` is readable by new readers only: an old
    reader fails on it (an appended branch never changes what an old reader reads)."""
    data = _write(new, record)
    with pytest.raises(Exception):  # noqa: B017 - fastavro's error type varies
        _read(data, new, old)


def _strip_to(
    old_schema: Any, record: dict[str, Any], envelope_field: str | None, fields: dict[str, Any]
) -> dict[str, Any]:
    if envelope_field is None:
        return dict(fields)
    return {envelope_field: (record[envelope_field][0], dict(fields))}


def test_the_v1_1_change_resolves_through_the_codec() -> None:
    """v1.0 outcomes (no expires_at_us) decode with the current reader; new ones carry it."""
    old = VERSIONS["v1.0"]["Outcome"]
    outcome_fields = {
        "tenant_id": "acme",
        "idempotency_key": "k",
        "command_type": "Transfer",
        "fingerprint": b"\x07" * 32,
        "field_fingerprints": b"\x01" * 8,
        "status": "REJECTED",
        "event_sequences": [],
        "reason": "INSUFFICIENT_FUNDS",
        "detail": "cash",
        "decided_at_us": 5,
    }
    old_bytes = codec.MARKER + old.fingerprint + _write(old.expanded, outcome_fields)
    decoded = codec.decode_outcome(old_bytes)
    assert isinstance(decoded, Outcome)
    assert decoded.expires_at_us is None
    assert decoded.detail == "cash"
    assert old.fingerprint != CURRENT["Outcome"].fingerprint


V1_2_FAMILIES: dict[str, tuple[codec.RecordFamily, Any, Any, Any]] = {
    "CommandEnvelope": (codec.COMMANDS, commands, codec.encode_command, codec.decode_command),
    "StateEnvelope": (codec.STATES, states, codec.encode_state, codec.decode_state),
}  # events: since v1.4 they carry metadata, see the test after this one


@pytest.mark.parametrize("record_name", list(V1_2_FAMILIES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_v1_3_appends_branches_so_v1_2_bytes_are_unchanged(
    record_name: str, data: st.DataObject
) -> None:
    """A command or state record of a type v1.2 knows has the same body under v1.3 and v1.4 (its
    union index did not move), so v1.2 bytes decode through the codec to the same value."""
    family, strategy, encode, decode = V1_2_FAMILIES[record_name]
    old = VERSIONS["v1.2"][record_name]
    value = data.draw(strategy)
    if not _has_branch(old.expanded, family, type(value)):
        return
    current_bytes = encode(value)
    body = current_bytes[codec.HEADER_BYTES :]
    old_bytes = codec.MARKER + old.fingerprint + _write(old.expanded, _avro_record(family, value))
    assert old_bytes[codec.HEADER_BYTES :] == body
    assert decode(old_bytes) == value


@pytest.mark.parametrize("old_version", ["v1.2", "v1.3"])
@settings(max_examples=60, deadline=None)
@given(event=events)
def test_v1_4_older_events_decode_without_metadata_and_keep_their_hash(
    old_version: str, event: Any
) -> None:
    """v1.4 adds ``metadata`` (default empty) before ``hash`` in every event record. An event
    written by an earlier version decodes to the same value with ``metadata=()``; its hash still
    covers its bytes **as written** (``record_canonical_bytes``), which is what a verifier
    hashes; written now, the same value has one more byte, the empty map, before its hash."""
    old = VERSIONS[old_version]["EventEnvelope"]
    if not _has_branch(old.expanded, codec.EVENTS, type(event)):
        return
    event = dataclasses.replace(event, metadata=(), actor="")
    record = _avro_record(codec.EVENTS, event)
    old_bytes = codec.MARKER + old.fingerprint + _write(old.expanded, record)
    assert codec.decode_event(old_bytes) == event
    assert codec.record_canonical_bytes(old_bytes) == old_bytes[codec.HEADER_BYTES : -32]
    assert old_bytes[-32:] == event.hash
    current = codec.encode_event(event)
    assert codec.record_canonical_bytes(current) == codec.event_canonical_bytes(event)
    # written now: the empty map, then (since v1.7) the empty actor
    assert codec.event_canonical_bytes(event) == (
        codec.record_canonical_bytes(old_bytes) + b"\x00\x00"
    )


@settings(max_examples=60, deadline=None)
@given(event=events)
def test_v1_4_metadata_is_in_the_canonical_bytes(event: Any) -> None:
    """The metadata an event carries is covered by its hash: other metadata, other bytes."""
    changed = dict(event.metadata)
    changed["zzz"] = changed.get("zzz", "") + "!"
    other = dataclasses.replace(event, metadata=tuple(sorted(changed.items())))
    assert codec.event_canonical_bytes(other) != codec.event_canonical_bytes(event)
    assert codec.decode_event(codec.encode_event(other)).metadata == other.metadata


@pytest.mark.parametrize(
    ("reason", "detail", "old_version"),
    [
        # v1.6 appends RATE_LIMITED (decision 0083); v1.5 added a reader default for exactly this
        (
            RejectReason.RATE_LIMITED,
            "tenant_id: rate limited: tenant over 1 commands/s (burst 1); retry after 1000 ms",
            "v1.5",
        ),
        # v1.7 appends UNAUTHENTICATED (signed commands, decision 0085)
        *(
            (
                RejectReason.UNAUTHENTICATED,
                "tenant_id: unauthenticated: key 'gw:v1' is not granted for tenant 'acme'",
                old_version,
            )
            for old_version in ("v1.5", "v1.6")
        ),
    ],
)
def test_an_appended_reason_reads_as_invalid_command_in_readers_with_the_default(
    reason: RejectReason, detail: str, old_version: str
) -> None:
    """A reason appended since v1.6 (``RATE_LIMITED``, ``UNAUTHENTICATED``): a reader of v1.5 or
    later reads such a reply as its reader default ``INVALID_COMMAND`` instead of failing, and
    v1.0-v1.4 readers, which have no default, fail on it."""
    rejected = Outcome(
        tenant_id="acme",
        idempotency_key="k",
        command_type="Transfer",
        fingerprint=b"\x07" * 32,
        field_fingerprints=b"\x01" * 8,
        status=OutcomeStatus.REJECTED,
        event_sequences=(),
        reason=reason,
        detail=detail,
        decided_at_us=5,
        expires_at_us=None,
    )
    record = _avro_record(codec.OUTCOMES, rejected)
    new = CURRENT["Outcome"].expanded
    _assert_read_as_default(
        new, VERSIONS[old_version]["Outcome"].expanded, record, "INVALID_COMMAND"
    )
    _assert_unknown_to_old_readers(new, VERSIONS["v1.4"]["Outcome"].expanded, record)
    assert codec.decode_outcome(codec.encode_outcome(rejected)) == rejected


@pytest.mark.parametrize("old_version", ["v1.4", "v1.5", "v1.6"])
@settings(max_examples=60, deadline=None)
@given(event=events)
def test_v1_7_older_events_decode_without_actor_and_keep_their_hash(
    old_version: str, event: Any
) -> None:
    """v1.7 adds ``actor`` (a string, default "") after ``metadata``, before ``hash``, in every
    event record (issue 21 part 3, decision 0093). An event written by v1.4-v1.6 decodes to the
    same value with ``actor=""``; its hash covers its bytes as written; written now, the same
    value has one more byte, the empty string's length, before its hash."""
    old = VERSIONS[old_version]["EventEnvelope"]
    if not _has_branch(old.expanded, codec.EVENTS, type(event)):
        return
    event = dataclasses.replace(event, actor="")
    old_bytes = (
        codec.MARKER + old.fingerprint + _write(old.expanded, _avro_record(codec.EVENTS, event))
    )
    assert codec.decode_event(old_bytes) == event
    assert old_bytes[-32:] == event.hash
    assert codec.event_canonical_bytes(event) == codec.record_canonical_bytes(old_bytes) + b"\x00"


@settings(max_examples=60, deadline=None)
@given(event=events)
def test_v1_7_actor_is_in_the_canonical_bytes_and_unknown_to_v1_6_readers(event: Any) -> None:
    """Who issued the command is covered by the event's hash: another actor, other bytes. A
    v1.6 reader resolves a v1.7 event by skipping ``actor`` (every other field as written)."""
    other = dataclasses.replace(event, actor=event.actor + "!")
    assert codec.event_canonical_bytes(other) != codec.event_canonical_bytes(event)
    assert codec.decode_event(codec.encode_event(other)).actor == other.actor
    new, old = CURRENT["EventEnvelope"].expanded, VERSIONS["v1.6"]["EventEnvelope"].expanded
    record = _avro_record(codec.EVENTS, event)
    name, seen_by_old = _read(_write(new, record), new, old)["event"]
    same_name, seen_by_new = _read(_write(new, record), new, new)["event"]
    assert name == same_name and seen_by_new["actor"] == event.actor
    assert seen_by_old == {k: v for k, v in seen_by_new.items() if k != "actor"}
