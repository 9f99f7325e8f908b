"""The projection's hand-written event readers (``projections.event_reader``) read what fastavro
reads.

For any contract event of a type read by hand (Hypothesis over the contract's edge values: int64
bounds, any Unicode text, None in each optional field, metadata, actors), the hand reader's dict
must be exactly fastavro's ``_read_data`` dict of the same body, with the same value types; and for
any bytes at all (a valid event changed, cut or extended at random), ``decode_event_record``
must give the same record or the same error as the path without the hand readers (fastavro,
then the codec).
"""

from __future__ import annotations

import importlib.machinery
import io
import os
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import event_reader, event_records
from projections.event_records import (
    BRANCH_NAMES,
    CURRENT_HEADER,
    EVENT_TYPE_FIELD,
    EventRecord,
    decode_event_record,
    event_record,
    read_body,
)
from schemas import codec
from schemas.codec import HEADER_BYTES
from schemas.model import Event
from streamledger import native
from tests.unit.contract_strategies import events

EXAMPLES = settings(max_examples=300, deadline=None)
HAND_READ = frozenset(event_reader.HAND_READERS)
hand_read_events = events.filter(lambda event: type(event).__name__ in HAND_READ)


def test_the_readers_run_compiled_unless_the_sources_are_asked_for() -> None:
    """Decision 0100: the native build serves this module (CI runs this file both ways)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = str(event_reader.__file__).endswith(suffixes)
    assert compiled == (os.environ.get(native.PURE_PYTHON_VARIABLE) != "1")


def test_every_hand_reader_is_in_use() -> None:
    """The current schema has the layouts the readers were written for (else: fastavro, correct
    but slower; the projection figure in bench/README.md would not hold)."""
    in_use = {BRANCH_NAMES[index] for index, reader in enumerate(event_reader.READERS) if reader}
    assert in_use == HAND_READ


def _fastavro_record(data: bytes) -> dict[str, Any]:
    index = data[HEADER_BYTES] >> 1
    buffer = io.BytesIO(data)
    buffer.seek(HEADER_BYTES + 1)
    record: dict[str, Any] = read_body(buffer, index)
    assert buffer.tell() == len(data)
    return record


def _without_hand_readers(data: bytes) -> EventRecord:
    """``decode_event_record`` as it was before the hand readers: fastavro, then the codec."""
    index_byte = data[HEADER_BYTES] if len(data) > HEADER_BYTES else 1
    index = index_byte >> 1
    if (
        data[:HEADER_BYTES] == CURRENT_HEADER
        and not index_byte & 1
        and index_byte <= codec.UNION_INDEX_MAX << 1
        and index < len(BRANCH_NAMES)
    ):
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_BYTES + 1)
        try:
            record: dict[str, Any] = read_body(buffer, index)
        except Exception:  # noqa: BLE001 - the codec below names what is wrong
            record = {}
        if record and buffer.tell() == len(data):
            record[EVENT_TYPE_FIELD] = BRANCH_NAMES[index]
            return cast(EventRecord, record)
    return event_record(codec.decode_event(data))


def _answer(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "value", decode(data)
    except Exception as exc:  # noqa: BLE001 - the error is the answer compared
        return "error", (type(exc), str(exc))


@EXAMPLES
@given(event=hand_read_events)
def test_the_record_is_fastavros(event: Event) -> None:
    data = codec.encode_event(event)
    index = data[HEADER_BYTES] >> 1
    reader = event_reader.READERS[index]
    assert reader is not None
    by_hand = reader(data, HEADER_BYTES + 1)
    expected = _fastavro_record(data)
    assert by_hand == expected
    assert list(by_hand) == list(expected)  # the same field order
    for name, value in expected.items():  # bool stays bool, None stays None
        assert type(by_hand[name]) is type(value), name
    assert decode_event_record(data) == {**expected, EVENT_TYPE_FIELD: type(event).__name__}


@EXAMPLES
@given(event=hand_read_events, data=st.data())
def test_any_bytes_get_the_answer_without_hand_readers(event: Event, data: st.DataObject) -> None:
    """An event changed at random: the same record or the same error as fastavro's path."""
    encoded = bytearray(codec.encode_event(event))
    change = data.draw(st.sampled_from(["replace", "cut", "extend", "insert"]))
    position = data.draw(st.integers(HEADER_BYTES + 1, max(len(encoded) - 1, HEADER_BYTES + 1)))
    if change == "replace":
        encoded[position] = data.draw(st.integers(0, 255))
    elif change == "cut":
        del encoded[position:]
    elif change == "extend":
        encoded += data.draw(st.binary(min_size=1, max_size=4))
    else:
        encoded[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    changed = bytes(encoded)
    assert _answer(decode_event_record, changed) == _answer(_without_hand_readers, changed)


def test_a_schema_of_another_layout_gets_no_hand_reader() -> None:
    branch = codec.EVENTS.branches[BRANCH_NAMES.index("TransferPosted")]
    fields = [field for field in branch.wire["fields"] if field["name"] != "actor"]
    assert event_reader.written_for(branch.wire, "TransferPosted")
    assert not event_reader.written_for({**branch.wire, "fields": fields}, "TransferPosted")
    assert event_records.HAND_READERS is event_reader.READERS
