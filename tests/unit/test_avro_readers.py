"""The hand-written state readers (``schemas.avro_readers``) read what fastavro reads.

``decode_state`` reads a current ``TransferState``, ``AccountState`` or ``TenantHead`` by hand;
for any value of those types (int64 bounds, any Unicode text, None in each optional field) it
must give exactly the value fastavro's public ``schemaless_reader`` gives on the whole envelope,
and for any bytes at all (a valid record changed, cut or extended at random) the same value or
the same error as the generic path (fastavro's ``_read_data``): the reader either agrees with it
or leaves the record to it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import avro_readers, codec
from schemas.model import AccountState, StateRecord, TenantHead, TransferState, TransferStatus
from tests.unit.wire_strategies import (
    EXAMPLES,
    account_states,
    answer,
    changed_at_random,
    int64,
    public_fastavro_value,
    tenant_heads,
    transfer_states,
)

read_by_hand = st.one_of(transfer_states, account_states, tenant_heads)


def _answer(decode: Any, data: bytes) -> tuple[str, Any]:
    """A decoder's value, or its error's type and message (any error: the answer compared)."""
    return answer(decode, data, Exception)


def _generic(data: bytes) -> StateRecord:
    result: StateRecord = codec._decode(codec.STATES, data)
    return result


def test_every_reader_is_in_use() -> None:
    """The current schemas have the layouts the readers were written for (else: a warning
    and fastavro, correct but slower: the restore figure in bench/README.md would not hold)."""
    expected = {codec.STATES.by_type[kind].prefix for kind in (TransferState, AccountState)}
    expected.add(codec.STATES.by_type[TenantHead].prefix)
    assert set(codec._STATE_READERS) == expected


@EXAMPLES
@given(read_by_hand)
def test_the_value_is_fastavros(state: StateRecord) -> None:
    data = codec.encode_state(state)
    decoded = codec.decode_state(data)
    assert decoded == state
    assert decoded == public_fastavro_value(codec.STATES, data)
    assert decoded == _generic(data)
    for name in type(state).__dataclass_fields__:  # bool stays bool, int stays int
        assert type(getattr(decoded, name)) is type(getattr(state, name)), name


@EXAMPLES
@given(read_by_hand, st.data())
def test_any_bytes_get_the_generic_answer(state: StateRecord, data: st.DataObject) -> None:
    """A record changed at random: the same value or the same error as fastavro's path."""
    changed = changed_at_random(data, codec.encode_state(state), codec.STATES.prefix_bytes)
    assert _answer(codec.decode_state, changed) == _answer(_generic, changed)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff" * 11,  # a long of more than ten bytes
        b"\xff" * 9 + b"\x02",  # ten bytes, but past 64 bits
        b"\x80",  # cut inside a long
    ],
)
def test_long_outside_int64_is_not_read(body: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        avro_readers.read_long(body, 0)


@given(int64)
def test_long_is_zig_zag_varint(value: int) -> None:
    number = (value << 1) ^ (value >> 63)  # zig-zag
    encoded = bytearray()
    while number >= 0x80:
        encoded.append((number & 0x7F) | 0x80)
        number >>= 7
    encoded.append(number)
    assert avro_readers.read_long(bytes(encoded) + b"\x00", 0) == (value, len(encoded))


def test_buffers_other_than_bytes_take_the_generic_path() -> None:
    head = TenantHead(tenant_id="acme", last_sequence=3, last_hash=b"\x01" * 32)
    data = codec.encode_state(head)
    for buffer in (bytearray(data), memoryview(data)):
        decoded = codec.decode_state(buffer)  # type: ignore[arg-type]
        assert decoded == head
        assert type(decoded.last_hash) is bytes  # type: ignore[union-attr]


def test_repeating_strings_are_shared() -> None:
    """A restored transfer shares its tenant, accounts and currency with the other records
    (memory per key); its own id is its own."""
    first, second = (
        TransferState(
            tenant_id="acme",
            transfer_id=transfer_id,
            debit_account_id="funding",
            credit_account_id="acct-0001",
            currency="USD",
            amount=5,
            status=TransferStatus.POSTED,
            amount_posted=5,
            amount_reversed=0,
            reverses=None,
            expires_at_us=None,
            last_sequence=1,
        )
        for transfer_id in ("tr-1", "tr-2")
    )
    one = codec.decode_state(codec.encode_state(first))
    two = codec.decode_state(codec.encode_state(second))
    assert isinstance(one, TransferState) and isinstance(two, TransferState)
    assert one.debit_account_id is two.debit_account_id
    assert one.currency is two.currency and one.tenant_id is two.tenant_id


def _split_one(data: bytes) -> tuple[dict[bytes, bytes], dict[str, int], list[bytes]]:
    return codec.split_settled_transfers({b"acme/transfer/t1": data})


@EXAMPLES
@given(read_by_hand)
def test_settled_transfers_are_kept_and_everything_else_decoded(state: StateRecord) -> None:
    """Decision 0102: a settled TransferState is kept as it is, with its sequence read without
    decoding it; a pending one and any other record go to the decoder."""
    data = codec.encode_state(state)
    settled, last_sequences, others = _split_one(data)
    if (
        isinstance(state, TransferState)
        and state.status is not TransferStatus.PENDING
        and state.last_sequence >= 0  # sequences start at 1; a negative one is decoded
    ):
        assert (settled, last_sequences, others) == (
            {b"acme/transfer/t1": data},
            {"acme": state.last_sequence},
            [],
        )
    else:
        assert (settled, last_sequences, others) == ({}, {}, [data])


@EXAMPLES
@given(transfer_states, st.data())
def test_a_changed_transfer_is_kept_only_if_it_decodes_to_a_settled_one(
    state: TransferState, data: st.DataObject
) -> None:
    """A record changed at random is kept encoded only if it reads as plain bytes of a settled
    transfer with that sequence (or fails only in a string's UTF-8, checked on first use)."""
    encoded = bytearray(codec.encode_state(state))
    position = data.draw(st.integers(codec.STATES.prefix_bytes, max(len(encoded) - 1, 0)))
    encoded[position] = data.draw(st.integers(0, 255))
    changed = bytes(encoded)
    settled, last_sequences, others = _split_one(changed)
    if others:
        assert others == [changed] and not settled and not last_sequences
        return
    kind, value = _answer(codec.decode_state, changed)
    if kind == "value":
        assert isinstance(value, TransferState) and value.status is not TransferStatus.PENDING
        assert last_sequences == {"acme": value.last_sequence}
    else:
        assert value[0] is UnicodeDecodeError or issubclass(value[0], codec.DecodeError)


def encoded_transfer(
    tenant_id: str,
    transfer_id: str,
    *,
    status: TransferStatus = TransferStatus.POSTED,
    last_sequence: int = 1,
) -> bytes:
    """The stored state of a transfer of 5 from cash to sales (posted in full when POSTED)."""
    return codec.encode_state(
        TransferState(
            tenant_id=tenant_id,
            transfer_id=transfer_id,
            debit_account_id="cash",
            credit_account_id="sales",
            currency="USD",
            amount=5,
            status=status,
            amount_posted=5 if status is TransferStatus.POSTED else 0,
            amount_reversed=0,
            reverses=None,
            expires_at_us=None,
            last_sequence=last_sequence,
        )
    )


def test_two_tenants_keep_their_highest_sequence() -> None:
    values = {
        b"acme/transfer/a": encoded_transfer("acme", "a", last_sequence=7),
        b"acme/transfer/b": encoded_transfer("acme", "b", last_sequence=3),
        b"bolt/transfer/c": encoded_transfer("bolt", "c", last_sequence=2),
    }
    settled, last_sequences, others = codec.split_settled_transfers(values)
    assert settled == values and not others
    assert last_sequences == {"acme": 7, "bolt": 2}


def test_the_settled_keep_their_order_among_the_others() -> None:
    """Decision 0129: the settled transfers are what is left of a copy of the values once the
    others are taken out: in the values' order, whatever came between them."""

    def transfer(tenant_id: str, transfer_id: str, status: TransferStatus) -> bytes:
        return encoded_transfer(
            tenant_id, transfer_id, status=status, last_sequence=len(transfer_id)
        )

    head = codec.encode_state(TenantHead(tenant_id="acme", last_sequence=9))
    values = {
        b"acme/transfer/c": transfer("acme", "c", TransferStatus.POSTED),
        b"acme/head": head,
        b"bolt/transfer/aa": transfer("bolt", "aa", TransferStatus.PENDING),
        b"acme/transfer/a": transfer("acme", "a", TransferStatus.POSTED),
        b"bolt/transfer/bbb": transfer("bolt", "bbb", TransferStatus.POSTED),
    }
    settled, last_sequences, others = codec.split_settled_transfers(values)
    assert list(settled) == [b"acme/transfer/c", b"acme/transfer/a", b"bolt/transfer/bbb"]
    assert settled == {key: values[key] for key in settled}
    assert last_sequences == {"acme": 1, "bolt": 3}
    assert others == [head, values[b"bolt/transfer/aa"]]


def test_a_settled_transfer_under_a_key_without_the_separator_is_refused() -> None:
    posted = encoded_transfer("acme", "t1")
    with pytest.raises(ValueError, match="without"):
        codec.split_settled_transfers({b"acme-transfer-t1": posted})
