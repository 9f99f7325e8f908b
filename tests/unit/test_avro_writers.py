"""The hand-written writers (``schemas.avro_writers``) write fastavro's bytes.

Since decision 0104 also the records the processor writes per command: the single-leg transfer
events, the ``Outcome``, ``AccountState`` and ``TransferState`` (same checks, at the end).

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
from fastavro import schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from schemas import avro_writers, codec
from schemas.limits import POSTINGS_MAX
from schemas.model import (
    INT64_MAX,
    INT64_MIN,
    AccountBalance,
    AccountState,
    Outcome,
    OutcomeStatus,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    Posting,
    RejectReason,
    TransactionPosted,
    TransactionState,
    Transfer,
    TransferPending,
    TransferPosted,
    TransferState,
    TransferStatus,
)
from streamledger import native
from tests.unit.wire_strategies import (
    EXAMPLES,
    account_states,
    balances,
    hashes,
    longs,
    metadata_pairs,
    optional_longs,
    optional_texts,
    public_fastavro_bytes,
    single_leg_commands,
    texts,
    transfer_states,
)

postings = st.builds(
    Posting, debit_account_id=texts, credit_account_id=texts, amount=longs, currency=texts
)
posting_tuples = st.lists(postings, max_size=POSTINGS_MAX).map(tuple)
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
    metadata=metadata_pairs,
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


@EXAMPLES
@given(transactions_posted)
def test_transaction_posted_bytes_are_fastavros(event: TransactionPosted) -> None:
    unhashed = codec._encode_unhashed(event)
    assert bytes(unhashed) == _generic_event_bytes(event)
    placeholder = dataclasses.replace(event, hash=bytes(32))
    assert bytes(unhashed) == public_fastavro_bytes(codec.EVENTS, placeholder)
    digest, sealed = codec.seal_event(event)
    canonical = _generic_event_bytes(event)[codec.HEADER_BYTES : -32]
    assert digest == hashlib.sha256(event.prev_hash + canonical).digest()
    assert sealed == public_fastavro_bytes(codec.EVENTS, dataclasses.replace(event, hash=digest))


@EXAMPLES
@given(transaction_states)
def test_transaction_state_bytes_are_fastavros(state: TransactionState) -> None:
    encoded = codec.encode_state(state)
    assert encoded == codec._GENERIC_TRANSACTION_STATE_ENCODER(state)
    assert encoded == public_fastavro_bytes(codec.STATES, state)
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


# Around every power of two (each varint group count, the four-group packing, mypyc's unboxed
# int range at 2**62) and both int64 bounds, positive and negative.
_LONG_EDGES = sorted(
    {
        min(max(sign * ((1 << bit) + delta), INT64_MIN), INT64_MAX)
        for bit in range(64)
        for delta in (-1, 0, 1)
        for sign in (1, -1)
    }
)


def test_long_edges_are_fastavros() -> None:
    for value in _LONG_EDGES:
        written = bytearray()
        avro_writers.write_long(written, value)
        reference = io.BytesIO()
        schemaless_writer(reference, "long", value)
        assert bytes(written) == reference.getvalue(), value


# --------------------------------------------------------------------------- per-command records
# (decision 0104): the single-leg events, the outcome, the account and transfer state records

balance_tuples = st.lists(balances, max_size=4).map(tuple)
_EVENT_HEAD = {
    "tenant_id": texts,
    "sequence": longs,
    "event_id": texts,
    "idempotency_key": optional_texts,
    "effective_at_us": longs,
    "balances": balance_tuples,
    "prev_hash": hashes,
    "hash": hashes,
    "metadata": metadata_pairs,
    "actor": st.sampled_from(("", "system", "payments-gw:v1")) | texts,
    "transfer_id": texts,
    "debit_account_id": texts,
    "credit_account_id": texts,
    "amount": longs,
    "currency": texts,
}
transfer_events = st.one_of(
    st.builds(TransferPosted, reverses=optional_texts, **_EVENT_HEAD),
    st.builds(TransferPending, expires_at_us=optional_longs, **_EVENT_HEAD),
    st.builds(PendingPosted, pending_amount=longs, **_EVENT_HEAD),
    st.builds(PendingVoided, **_EVENT_HEAD),
    st.builds(PendingExpired, **_EVENT_HEAD),
)
outcomes = st.builds(
    Outcome,
    tenant_id=texts,
    idempotency_key=texts,
    command_type=st.sampled_from(("Transfer", "OpenAccount")) | texts,
    fingerprint=hashes,
    field_fingerprints=st.binary(max_size=80),
    status=st.sampled_from(OutcomeStatus),
    event_sequences=st.lists(longs, max_size=4).map(tuple),
    reason=st.none() | st.sampled_from(RejectReason),
    detail=texts,
    decided_at_us=longs,
    expires_at_us=optional_longs,
)
GENERIC_ENCODERS = {
    Outcome: codec._GENERIC_OUTCOME_ENCODER,
    AccountState: codec._GENERIC_ACCOUNT_STATE_ENCODER,
    TransferState: codec._GENERIC_TRANSFER_STATE_ENCODER,
}


@EXAMPLES
@given(transfer_events)
def test_transfer_event_bytes_are_fastavros(event: Any) -> None:
    unhashed = codec._encode_unhashed(event)
    placeholder = dataclasses.replace(event, hash=bytes(32))
    assert bytes(unhashed) == public_fastavro_bytes(codec.EVENTS, placeholder)
    digest, sealed = codec.seal_event(event)
    canonical = bytes(unhashed)[codec.HEADER_BYTES : -32]
    assert digest == hashlib.sha256(event.prev_hash + canonical).digest()
    assert sealed == public_fastavro_bytes(codec.EVENTS, dataclasses.replace(event, hash=digest))
    assert sealed == codec.encode_event(dataclasses.replace(event, hash=digest))


@EXAMPLES
@given(outcomes)
def test_outcome_bytes_are_fastavros(outcome: Outcome) -> None:
    encoded = codec.encode_outcome(outcome)
    assert encoded == codec._GENERIC_OUTCOME_ENCODER(outcome)
    assert encoded == public_fastavro_bytes(codec.OUTCOMES, outcome)
    assert codec.decode_outcome(encoded) == outcome


@EXAMPLES
@given(st.one_of(account_states, transfer_states))
def test_account_and_transfer_state_bytes_are_fastavros(state: Any) -> None:
    encoded = codec.encode_state(state)
    assert encoded == GENERIC_ENCODERS[type(state)](state)
    assert encoded == public_fastavro_bytes(codec.STATES, state)
    assert codec.decode_state(encoded) == state


OUTCOME = Outcome(
    tenant_id="acme",
    idempotency_key="k",
    command_type="Transfer",
    fingerprint=bytes(32),
    field_fingerprints=bytes(8),
    status=OutcomeStatus.REJECTED,
    reason=RejectReason.INSUFFICIENT_FUNDS,
    decided_at_us=1,
)
ACCOUNT_STATE = AccountState(
    tenant_id="acme",
    account_id="a",
    currency="USD",
    asset_scale=2,
    debits_must_not_exceed_credits=True,
    credits_must_not_exceed_debits=False,
    overdraft_limit=None,
    debits_posted=0,
    credits_posted=0,
    debits_pending=0,
    credits_pending=0,
    last_sequence=1,
)


@pytest.mark.parametrize(
    "value",
    [
        dataclasses.replace(OUTCOME, status="REJECTED"),  # type: ignore[arg-type]
        dataclasses.replace(OUTCOME, event_sequences=[1]),  # type: ignore[arg-type]
        dataclasses.replace(OUTCOME, field_fingerprints=bytearray(8)),  # type: ignore[arg-type]
        dataclasses.replace(OUTCOME, fingerprint=b"short"),
        dataclasses.replace(OUTCOME, detail="lone \ud800 surrogate"),
        dataclasses.replace(OUTCOME, decided_at_us=INT64_MAX + 1),
        dataclasses.replace(ACCOUNT_STATE, asset_scale=2**31),
        dataclasses.replace(ACCOUNT_STATE, debits_must_not_exceed_credits=1),  # type: ignore[arg-type]
        dataclasses.replace(ACCOUNT_STATE, currency=None),  # type: ignore[arg-type]
    ],
)
def test_what_the_record_writers_do_not_take_gets_the_generic_answer(value: Any) -> None:
    encode = codec.encode_outcome if isinstance(value, Outcome) else codec.encode_state
    try:
        expected: bytes | type[Exception] = GENERIC_ENCODERS[type(value)](value)
    except codec.EncodeError:
        expected = codec.EncodeError
    if expected is codec.EncodeError:
        with pytest.raises(codec.EncodeError):
            encode(value)
    else:
        assert encode(value) == expected


single_leg_commands_written = single_leg_commands(metadata_pairs)  # a key may repeat


@EXAMPLES
@given(single_leg_commands_written)
def test_single_leg_command_bytes_are_fastavros(command: Any) -> None:
    encoded = codec.encode_command(command)
    assert encoded == public_fastavro_bytes(codec.COMMANDS, command)
    if len(dict(command.metadata)) == len(command.metadata):  # a repeated key is written once
        assert codec.decode_command(encoded) == command


TRANSFER = Transfer(
    tenant_id="acme",
    idempotency_key="k",
    submitted_at_us=1,
    transfer_id="t",
    debit_account_id="a",
    credit_account_id="b",
    amount=5,
    currency="USD",
)


@pytest.mark.parametrize(
    "command",
    [
        dataclasses.replace(TRANSFER, pending=1),  # type: ignore[arg-type]
        dataclasses.replace(TRANSFER, amount=INT64_MAX + 1),
        dataclasses.replace(TRANSFER, currency=None),  # type: ignore[arg-type]
        dataclasses.replace(TRANSFER, metadata=[("a", "b")]),  # type: ignore[arg-type]
        dataclasses.replace(TRANSFER, transfer_id="lone \ud800 surrogate"),
    ],
)
def test_what_the_command_writer_does_not_take_gets_the_generic_answer(command: Transfer) -> None:
    generic = next(
        cell.cell_contents
        for cell in codec._COMMAND_ENCODERS[Transfer].__closure__ or ()
        if callable(cell.cell_contents)
    )
    try:
        expected: bytes | type[Exception] = generic(command)
    except codec.EncodeError:
        expected = codec.EncodeError
    if expected is codec.EncodeError:
        with pytest.raises(codec.EncodeError):
            codec.encode_command(command)
    else:
        assert codec.encode_command(command) == expected
