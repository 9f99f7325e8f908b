"""The hand-written command readers (``schemas.avro_command_readers``) give fastavro's values.

``schemas.codec.decode_command`` reads the single-leg commands (decision 0104) and
``PostTransaction`` (decision 0139) by hand; for any
command the value must equal the generic (fastavro) decoder's, and for any bytes at all, a
truncated, extended or corrupted record included, the answer (a value or the ``DecodeError``,
whose kind names the dead-letter kind) must be the generic decoder's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import avro_command_readers, avro_readers, codec
from schemas.model import Posting, PostTransaction, VoidPending
from tests.unit.wire_strategies import (
    EXAMPLES,
    answer,
    changed_at_random,
    metadata_maps,
    post_transactions,
    public_fastavro_value,
    single_leg_commands,
)

# a key written twice would be decoded once
commands = single_leg_commands(metadata_maps) | post_transactions(metadata_maps)


def _generic(data: bytes) -> Any:
    """The generic decoder's answer: the value, or its ``DecodeError`` (type and message)."""
    return answer(lambda record: codec._decode(codec.COMMANDS, record), data)


def _hand_written(data: bytes) -> Any:
    return answer(codec.decode_command, data)


def test_every_hand_read_command_has_its_reader() -> None:
    assert len(codec._COMMAND_READERS) == len(avro_command_readers.READERS) == 5
    assert codec.COMMANDS.by_type[PostTransaction].prefix in codec._COMMAND_READERS


@EXAMPLES
@given(commands)
def test_the_reader_gives_fastavros_value(command: Any) -> None:
    data = codec.encode_command(command)
    branch = codec.COMMANDS.by_type[type(command)]
    read = avro_command_readers.READERS[type(command)](data, len(branch.prefix))
    assert read == codec._decode(codec.COMMANDS, data) == command
    assert read == public_fastavro_value(codec.COMMANDS, data)


@EXAMPLES
@given(commands, st.data())
def test_any_corruption_gets_the_generic_answer(command: Any, data: st.DataObject) -> None:
    encoded = codec.encode_command(command)
    corrupted = changed_at_random(data, encoded, codec.COMMANDS.prefix_bytes)
    assert _hand_written(corrupted) == _generic(corrupted)


@pytest.mark.parametrize(
    "body",
    [
        b"\x02a\x02k\x02\x01\x00",  # a negative map block count (one entry, with its size)
        b"\x02a\x02k\x02\x00",  # ends after the header
    ],
)
def test_unusual_bodies_get_the_generic_answer(body: bytes) -> None:
    data = codec.COMMANDS.by_type[VoidPending].prefix + body
    assert _hand_written(data) == _generic(data)


TRANSACTION_HEAD = b"\x02a\x02k\x02\x00\x02t"  # tenant a, key k, at 1 µs, no metadata, id t
TRANSACTION_TAIL = b"\x00\x00\x00"  # not pending, no timeout, reverses nothing


def _long(value: int) -> bytes:
    """An Avro long (zig-zag, then a base-128 varint)."""
    number = (value << 1) ^ (value >> 63)
    encoded = bytearray()
    while number >= 0x80:
        encoded.append(number & 0x7F | 0x80)
        number >>= 7
    encoded.append(number)
    return bytes(encoded)


def _posting(debit: bytes, credit: bytes, amount: int, currency: bytes) -> bytes:
    parts = (debit, credit, amount, currency)
    return b"".join(
        _long(len(part)) + part if isinstance(part, bytes) else _long(part) for part in parts
    )


def _transaction(postings_body: bytes) -> bytes:
    prefix = codec.COMMANDS.by_type[PostTransaction].prefix
    return prefix + TRANSACTION_HEAD + postings_body + TRANSACTION_TAIL


@pytest.mark.parametrize(
    "postings_body",
    [
        b"\x00",  # no postings (the contract rejects it; the wire carries it)
        # two blocks of one posting each, as another writer may block an array
        b"\x02"
        + _posting(b"x", b"y", 5, b"USD")
        + b"\x02"
        + _posting(b"y", b"z", 7, b"USD")
        + b"\x00",
        # a negative block count (one posting, with the block's byte size): fastavro's
        b"\x01"
        + _long(len(_posting(b"x", b"y", 5, b"USD")))
        + _posting(b"x", b"y", 5, b"USD")
        + b"\x00",
        b"\x02" + _posting(b"x", b"y", 5, b"USD"),  # the array's end missing
        b"\x04" + _posting(b"x", b"y", 5, b"USD") + b"\x00",  # two announced, one there
        b"\x02" + _posting(b"x", b"\xff", 5, b"USD") + b"\x00",  # not UTF-8
        b"\x02" + _posting(b"x", b"y", 5, b"USD") + b"\x00\x00",  # a byte left after
    ],
)
def test_unusual_postings_get_the_generic_answer(postings_body: bytes) -> None:
    data = _transaction(postings_body)
    assert _hand_written(data) == _generic(data)


def test_two_blocks_read_as_one_array() -> None:
    data = _transaction(
        b"\x02"
        + _posting(b"x", b"y", 5, b"USD")
        + b"\x02"
        + _posting(b"y", b"z", 7, b"USD")
        + b"\x00"
    )
    read = avro_command_readers.read_post_transaction(data, codec.COMMANDS.prefix_bytes)
    assert isinstance(read, PostTransaction)
    assert read.postings == (
        Posting(debit_account_id="x", credit_account_id="y", amount=5, currency="USD"),
        Posting(debit_account_id="y", credit_account_id="z", amount=7, currency="USD"),
    )
    assert read == codec._decode(codec.COMMANDS, data)


def test_a_posting_layout_it_was_not_written_for_is_not_read_by_hand() -> None:
    branch = codec.COMMANDS.by_type[PostTransaction]
    field, record_name, layout = avro_command_readers.ITEM_LAYOUTS[PostTransaction]
    wire, named = branch.wire, branch.named
    assert avro_readers.items_written_for(wire, named, field, record_name, layout)
    assert not avro_readers.items_written_for(wire, named, field, record_name, layout[:-1])
    assert not avro_readers.items_written_for(wire, named, field, "streamledger.v1.Other", layout)
    assert not avro_readers.items_written_for(wire, named, "metadata", record_name, layout)
