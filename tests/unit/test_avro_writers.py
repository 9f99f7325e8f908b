"""The hand-written multi-leg writers (``schemas.avro_writers``) write fastavro's bytes.

``TransactionPosted`` (sealed once per multi-leg transaction) and ``TransactionState`` (one
state record per transaction and batch) are written by hand; each must give exactly the bytes
of the generic encoder (fastavro's ``write_data`` on the record's Avro dict) and of fastavro's
public ``schemaless_writer`` on the whole envelope, for any value, including int64 bounds,
any Unicode text, metadata and 0..64 postings; a value the writer does not take (a wrong type,
a long outside int64, a lone surrogate) takes the generic path, with its bytes or its error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import avro_writers, codec
from schemas.limits import POSTINGS_MAX
from schemas.model import (
    INT64_MAX,
    INT64_MIN,
    AccountBalance,
    Posting,
    TransactionPosted,
    TransactionState,
    TransferStatus,
)
from streamledger import native

EXAMPLES = settings(max_examples=300, deadline=None)
int64 = st.integers(INT64_MIN, INT64_MAX)
longs = st.one_of(int64, st.integers(-200, 20_000), st.sampled_from([0, 63, 64, 8191, 8192]))
texts = st.text(max_size=40)  # any code point but surrogates (see the surrogate test)
optional_texts = st.none() | texts
hashes = st.binary(min_size=32, max_size=32)
postings = st.builds(
    Posting, debit_account_id=texts, credit_account_id=texts, amount=longs, currency=texts
)
posting_tuples = st.lists(postings, max_size=POSTINGS_MAX).map(tuple)
balances = st.builds(
    AccountBalance,
    account_id=texts,
    currency=texts,
    debits_posted=longs,
    credits_posted=longs,
    debits_pending=longs,
    credits_pending=longs,
)
metadata = st.lists(st.tuples(texts, texts), max_size=4).map(lambda pairs: tuple(sorted(pairs)))
transactions_posted = st.builds(
    TransactionPosted,
    tenant_id=texts,
    sequence=longs,
    event_id=texts,
    idempotency_key=optional_texts,
    effective_at_us=longs,
    balances=st.lists(balances, max_size=2 * POSTINGS_MAX).map(tuple),
    prev_hash=hashes,
    hash=hashes,
    metadata=metadata,
    actor=st.sampled_from(("", "system", "payments-gw:v1")) | texts,  # since contract v1.7
    transaction_id=texts,
    postings=posting_tuples,
    reverses=optional_texts,
)
transaction_states = st.builds(
    TransactionState,
    tenant_id=texts,
    transaction_id=texts,
    postings=posting_tuples,
    status=st.sampled_from(TransferStatus),
    amounts_posted=st.lists(longs, max_size=8).map(tuple),
    amounts_reversed=st.lists(longs, max_size=8).map(tuple),
    reverses=optional_texts,
    expires_at_us=st.none() | longs,
    last_sequence=longs,
)


def _generic_event_bytes(event: TransactionPosted) -> bytes:
    """The generic (fastavro ``write_data``) unhashed encoder's bytes."""
    return bytes(codec._GENERIC_TRANSACTION_POSTED_UNHASHED(event))


def _public_fastavro_bytes(family: codec.RecordFamily, value: Any) -> bytes:
    """fastavro's public writer on the whole envelope, with the single-object header."""
    branch = family.by_type[type(value)]
    record = {family.envelope_field: (branch.full_name, codec.to_avro(value, branch.field_names))}
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(dict(family.current.expanded)), record)
    return codec.MARKER + family.current.fingerprint + buffer.getvalue()


@EXAMPLES
@given(transactions_posted)
def test_transaction_posted_bytes_are_fastavros(event: TransactionPosted) -> None:
    unhashed = codec._encode_unhashed(event)
    assert bytes(unhashed) == _generic_event_bytes(event)
    placeholder = dataclasses.replace(event, hash=bytes(32))
    assert bytes(unhashed) == _public_fastavro_bytes(codec.EVENTS, placeholder)
    digest, sealed = codec.seal_event(event)
    canonical = _generic_event_bytes(event)[codec.HEADER_BYTES : -32]
    assert digest == hashlib.sha256(event.prev_hash + canonical).digest()
    assert sealed == _public_fastavro_bytes(codec.EVENTS, dataclasses.replace(event, hash=digest))


@EXAMPLES
@given(transaction_states)
def test_transaction_state_bytes_are_fastavros(state: TransactionState) -> None:
    encoded = codec.encode_state(state)
    assert encoded == codec._GENERIC_TRANSACTION_STATE_ENCODER(state)
    assert encoded == _public_fastavro_bytes(codec.STATES, state)
    assert codec.decode_state(encoded) == state


POSTING = Posting(debit_account_id="a", credit_account_id="b", amount=5, currency="USD")


def _event(**changes: Any) -> TransactionPosted:
    event = TransactionPosted(
        tenant_id="acme",
        sequence=1,
        event_id="acme:1",
        idempotency_key="k",
        effective_at_us=1,
        balances=(AccountBalance(account_id="a", currency="USD", debits_posted=5),),
        prev_hash=bytes(32),
        hash=bytes(32),
        metadata=(),
        transaction_id="tx",
        postings=(POSTING,),
        reverses=None,
    )
    return dataclasses.replace(event, **changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"sequence": INT64_MAX + 1},
        {"effective_at_us": INT64_MIN - 1},
        {"sequence": 1.5},
        {"tenant_id": 7},
        {"transaction_id": "lone \ud800 surrogate"},
        {"actor": "lone \ud800 surrogate"},  # since contract v1.7
        {"actor": None},
        {"prev_hash": b"short"},
        {"postings": [POSTING]},
        {"postings": (dataclasses.replace(POSTING, amount=2**64),)},
        {"balances": (AccountBalance(account_id=None, currency="USD"),)},  # type: ignore[arg-type]
    ],
)
def test_what_the_writer_does_not_take_gets_the_generic_answer(changes: dict[str, Any]) -> None:
    event = _event(**changes)
    with pytest.raises(avro_writers.NotPlainError):
        avro_writers.write_transaction_posted(bytearray(), event, bytes(32))
    try:
        expected: bytes | type[Exception] = _generic_event_bytes(event)
    except codec.EncodeError:
        expected = codec.EncodeError
    if expected is codec.EncodeError:
        with pytest.raises(codec.EncodeError):
            codec.seal_event(event)
    else:
        assert bytes(codec._encode_unhashed(event)) == expected


def test_a_true_counter_is_not_a_long() -> None:
    """``bool`` is an ``int`` subclass: the Python writer leaves it to fastavro (which writes
    1); compiled, mypyc takes it as the ``int`` 1 and writes fastavro's bytes itself."""
    event = _event(sequence=True)
    written = bytearray(codec.EVENTS.by_type[TransactionPosted].prefix)
    if "schemas.avro_writers" in native.compiled_modules():
        avro_writers.write_transaction_posted(written, event, bytes(32))
        assert bytes(written) == _generic_event_bytes(event)
    else:
        with pytest.raises(avro_writers.NotPlainError):
            avro_writers.write_transaction_posted(written, event, bytes(32))
    assert bytes(codec._encode_unhashed(event)) == _generic_event_bytes(event)


@given(st.integers(INT64_MIN, INT64_MAX))
def test_long_is_zig_zag_varint(value: int) -> None:
    written = bytearray()
    avro_writers.write_long(written, value)
    reference = io.BytesIO()
    schemaless_writer(reference, "long", value)
    assert bytes(written) == reference.getvalue()
