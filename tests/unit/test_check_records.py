"""The bench check's readers (``workloads.check_records``) give the codec's compared fields.

The correctness check compares, per outcome, (tenant, key) -> (status, reason, event sequences)
and, per event, (tenant, sequence) -> (type, idempotency key). Its readers skip the codec's
model values; they may only because, for any outcome and any event of the contract, they give
exactly those fields of ``decode_outcome`` / ``decode_event``, and for any bytes at all (a
valid record changed, cut or extended at random) the same fields or the codec's same error.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from schemas import codec
from schemas.model import Event, Outcome, OutcomeStatus, RejectReason
from tests.unit.contract_strategies import events, outcomes
from tests.unit.wire_strategies import EXAMPLES, answer, changed_at_random
from workloads import check_records


def codec_outcome_fields(data: bytes) -> tuple[Any, Any]:
    outcome = codec.decode_outcome(data)
    reason = None if outcome.reason is None else outcome.reason.value
    key = (outcome.tenant_id, outcome.idempotency_key)
    return key, (outcome.status.value, reason, outcome.event_sequences)


def codec_event_fields(data: bytes) -> tuple[Any, Any]:
    event = codec.decode_event(data)
    return (event.tenant_id, event.sequence), (type(event).__name__, event.idempotency_key)


def test_the_outcome_reader_is_in_use() -> None:
    """The current schema has the layout the reader was written for (else: the codec, correct
    but as slow as before)."""
    assert codec.OUTCOMES.by_type[Outcome].prefix == check_records.OUTCOME_PREFIX


@EXAMPLES
@given(outcomes)
def test_outcome_fields_are_the_codecs(outcome: Outcome) -> None:
    data = codec.encode_outcome(outcome)
    fields = check_records.read_outcome_fields(data, codec.OUTCOMES.prefix_bytes)  # by hand
    assert fields == check_records.outcome_fields(data) == codec_outcome_fields(data)
    reason = None if outcome.reason is None else outcome.reason.value
    assert fields == (
        (outcome.tenant_id, outcome.idempotency_key),
        (outcome.status.value, reason, outcome.event_sequences),
    )


def test_every_status_and_reason_reads_by_hand() -> None:
    for status in OutcomeStatus:
        for reason in (None, *RejectReason):
            outcome = Outcome(
                tenant_id="t",
                idempotency_key="k",
                command_type="Transfer",
                fingerprint=bytes(32),
                field_fingerprints=b"\x01" * 16,
                status=status,
                event_sequences=(1, 2, 2**40),
                reason=reason,
                decided_at_us=5,
            )
            data = codec.encode_outcome(outcome)
            fields = check_records.read_outcome_fields(data, codec.OUTCOMES.prefix_bytes)
            assert fields == codec_outcome_fields(data)


@EXAMPLES
@given(outcomes, st.data())
def test_any_outcome_bytes_get_the_codecs_answer(outcome: Outcome, data: st.DataObject) -> None:
    """A record changed at random: the same fields or the codec's same error."""
    changed = changed_at_random(data, codec.encode_outcome(outcome), codec.OUTCOMES.prefix_bytes)
    assert answer(check_records.outcome_fields, changed) == answer(codec_outcome_fields, changed)


@EXAMPLES
@given(events)
def test_event_fields_are_the_codecs(event: Event) -> None:
    data = codec.encode_event(event)
    assert check_records.event_fields(data) == codec_event_fields(data)
    assert check_records.event_fields(data) == (
        (event.tenant_id, event.sequence),
        (type(event).__name__, event.idempotency_key),
    )


@EXAMPLES
@given(events, st.data())
def test_any_event_bytes_get_the_codecs_answer(event: Event, data: st.DataObject) -> None:
    changed = changed_at_random(data, codec.encode_event(event), codec.EVENTS.prefix_bytes)
    assert answer(check_records.event_fields, changed) == answer(codec_event_fields, changed)
