"""The matcher's event reader (``reconciliation.event_movements``) gives what the full decoder
gives.

For any contract event (Hypothesis over the contract's edge values: int64 bounds, any Unicode
text, None in each optional field, metadata, actors), ``event_movements`` must give the tenant,
the effective time and ``movements_of`` of ``decode_event`` (fastavro); for the event types read
by hand, the hand reader itself must give it; and for any bytes at all (a valid event changed,
cut or extended at random) the same answer or the same error as ``decode_event``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation import event_movements
from reconciliation.event_movements import EventMovements
from reconciliation.matching import DEFAULT_EXTERNAL_REFERENCE_KEY, movements_of
from schemas import codec
from schemas.codec import HEADER_BYTES
from schemas.model import GENESIS_HASH, Event, Posting, TransactionPosted
from tests.unit.contract_strategies import events

EXAMPLES = settings(max_examples=300, deadline=None)
HAND_READ = frozenset(event_movements.HAND_READERS)
hand_read_events = events.filter(lambda event: type(event).__name__ in HAND_READ)


def _reference_keys(event: Event) -> st.SearchStrategy[str]:
    keys = [key for key, _ in getattr(event, "metadata", ())]
    return st.sampled_from([*keys, DEFAULT_EXTERNAL_REFERENCE_KEY])


def _expected(data: bytes, reference_key: str) -> EventMovements:
    event = codec.decode_event(data)
    return EventMovements(
        event.tenant_id, event.effective_at_us, movements_of(event, reference_key)
    )


def _answer(read: Any, data: bytes, reference_key: str) -> tuple[str, Any]:
    try:
        return "value", read(data, reference_key)
    except Exception as exc:  # noqa: BLE001 - the error is the answer compared
        return "error", (type(exc), str(exc))


def test_every_hand_reader_is_in_use() -> None:
    """The current schema has the layouts the readers were written for (else: decode_event,
    correct but slower; the reconciliation figure in bench/README.md would not hold)."""
    in_use = {
        branch.python_type.__name__
        for prefix, branch in codec.EVENTS.by_prefix.items()
        if bytes(prefix) in event_movements.READERS
    }
    assert in_use == HAND_READ


@EXAMPLES
@given(event=events, data=st.data())
def test_the_movements_are_those_of_the_decoded_event(event: Event, data: st.DataObject) -> None:
    reference_key = data.draw(_reference_keys(event))
    encoded = codec.encode_event(event)
    expected = _expected(encoded, reference_key)
    assert event_movements.event_movements(encoded, reference_key) == expected
    reader = event_movements.READERS.get(encoded[: event_movements.PREFIX_BYTES])
    assert (reader is not None) == (type(event).__name__ in HAND_READ)
    if reader is not None:  # by hand, not through the fallback
        assert reader(encoded, event_movements.PREFIX_BYTES, reference_key) == expected


@EXAMPLES
@given(event=hand_read_events, data=st.data())
def test_any_bytes_get_the_answer_of_decode_event(event: Event, data: st.DataObject) -> None:
    """An event changed at random: the same movements or the same error as decode_event's."""
    reference_key = data.draw(_reference_keys(event))
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
    assert _answer(event_movements.event_movements, changed, reference_key) == _answer(
        _expected, changed, reference_key
    )


def test_a_zero_posting_and_an_empty_reference_make_nothing() -> None:
    postings = (
        Posting(debit_account_id="bank", credit_account_id="a", amount=0, currency="EUR"),
        Posting(debit_account_id="c", credit_account_id="bank", amount=30, currency="EUR"),
    )
    event = TransactionPosted(
        tenant_id="acme", sequence=7, event_id="acme:7", idempotency_key="k",
        effective_at_us=5, balances=(), prev_hash=GENESIS_HASH, hash=GENESIS_HASH,
        metadata=(("external_ref", ""),), transaction_id="t", postings=postings, reverses=None,
    )  # fmt: skip
    encoded = codec.encode_event(event)
    found = event_movements.event_movements(encoded, DEFAULT_EXTERNAL_REFERENCE_KEY)
    assert found == _expected(encoded, DEFAULT_EXTERNAL_REFERENCE_KEY)
    assert [movement.movement_id for movement in found.movements] == ["acme:7#1", "acme:7#1"]
    assert all(movement.external_reference is None for movement in found.movements)


def test_a_schema_of_another_layout_gets_no_hand_reader() -> None:
    for prefix, branch in codec.EVENTS.by_prefix.items():
        name = branch.python_type.__name__
        if name not in HAND_READ:
            continue
        assert bytes(prefix) in event_movements.READERS
        fields = [field for field in branch.wire["fields"] if field["name"] != "actor"]
        assert event_movements.written_for(branch.wire, name)
        assert not event_movements.written_for({**branch.wire, "fields": fields}, name)
