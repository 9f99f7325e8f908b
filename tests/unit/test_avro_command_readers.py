"""The hand-written command readers (``schemas.avro_command_readers``) give fastavro's values.

``schemas.codec.decode_command`` reads the single-leg commands by hand (decision 0104); for any
command the value must equal the generic (fastavro) decoder's, and for any bytes at all, a
truncated, extended or corrupted record included, the answer (a value or the ``DecodeError``,
whose kind names the dead-letter kind) must be the generic decoder's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import avro_command_readers, codec
from schemas.model import VoidPending
from tests.unit.wire_strategies import (
    EXAMPLES,
    answer,
    changed_at_random,
    metadata_maps,
    single_leg_commands,
)

commands = single_leg_commands(metadata_maps)  # a key written twice would be decoded once


def _generic(data: bytes) -> Any:
    """The generic decoder's answer: the value, or its ``DecodeError`` (type and message)."""
    return answer(lambda record: codec._decode(codec.COMMANDS, record), data)


def _hand_written(data: bytes) -> Any:
    return answer(codec.decode_command, data)


def test_every_single_leg_command_has_its_reader() -> None:
    assert len(codec._COMMAND_READERS) == len(avro_command_readers.READERS) == 4


@EXAMPLES
@given(commands)
def test_the_reader_gives_fastavros_value(command: Any) -> None:
    data = codec.encode_command(command)
    branch = codec.COMMANDS.by_type[type(command)]
    read = avro_command_readers.READERS[type(command)](data, len(branch.prefix))
    assert read == codec._decode(codec.COMMANDS, data) == command


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
