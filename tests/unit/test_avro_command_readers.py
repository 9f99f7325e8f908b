"""The hand-written command readers (``schemas.avro_command_readers``) give fastavro's values.

``schemas.codec.decode_command`` reads the single-leg commands by hand (decision 0104); for any
command the value must equal the generic (fastavro) decoder's, and for any bytes at all, a
truncated, extended or corrupted record included, the answer (a value or the kind of
``DecodeError``, which names the dead-letter kind) must be the generic decoder's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import avro_command_readers, codec
from schemas.model import (
    INT64_MAX,
    INT64_MIN,
    OpenAccount,
    PostPending,
    Transfer,
    VoidPending,
)

EXAMPLES = settings(max_examples=300, deadline=None)
longs = st.one_of(
    st.integers(INT64_MIN, INT64_MAX), st.sampled_from([0, -1, 63, 64, 8191, 8192, 2**35])
)
optional_longs = st.none() | longs
texts = st.text(max_size=40)
optional_texts = st.none() | texts
metadata = st.dictionaries(texts, texts, max_size=4).map(lambda pairs: tuple(sorted(pairs.items())))
_HEAD = {
    "tenant_id": texts,
    "idempotency_key": texts,
    "submitted_at_us": longs,
    "metadata": metadata,
}
commands = st.one_of(
    st.builds(
        Transfer,
        transfer_id=texts,
        debit_account_id=texts,
        credit_account_id=texts,
        amount=longs,
        currency=texts,
        pending=st.booleans(),
        pending_timeout_s=optional_longs,
        reverses=optional_texts,
        **_HEAD,
    ),
    st.builds(PostPending, transfer_id=texts, amount=optional_longs, **_HEAD),
    st.builds(VoidPending, transfer_id=texts, **_HEAD),
    st.builds(
        OpenAccount,
        account_id=texts,
        currency=texts,
        asset_scale=st.integers(-(2**31), 2**31 - 1),
        debits_must_not_exceed_credits=st.booleans(),
        credits_must_not_exceed_debits=st.booleans(),
        overdraft_limit=optional_longs,
        **_HEAD,
    ),
)


def _generic(data: bytes) -> Any:
    """The generic decoder's answer: the value, or the type of its ``DecodeError``."""
    try:
        return codec._decode(codec.COMMANDS, data)
    except codec.DecodeError as exc:
        return type(exc)


def _hand_written(data: bytes) -> Any:
    try:
        return codec.decode_command(data)
    except codec.DecodeError as exc:
        return type(exc)


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
    encoded = bytearray(codec.encode_command(command))
    prefix_bytes = codec.COMMANDS.prefix_bytes
    action = data.draw(st.sampled_from(("truncate", "extend", "flip")))
    if action == "truncate":
        del encoded[data.draw(st.integers(prefix_bytes, len(encoded) - 1)) :]
    elif action == "extend":
        encoded += data.draw(st.binary(min_size=1, max_size=4))
    else:
        index = data.draw(st.integers(prefix_bytes, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    corrupted = bytes(encoded)
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
