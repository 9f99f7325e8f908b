"""The partition state around the rules: batches (commit/abort), idempotency retention,
export and restore, and the fold's verification of events."""

from __future__ import annotations

import dataclasses

import pytest

import ledger
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import encode_event, event_chain_hash
from schemas.model import AccountState, TenantHead, TransferState, TransferStatus
from streamledger.errors import InvariantViolationError
from tests.unit.ledger_builders import (
    SECOND_US,
    T0_US,
    Ledger,
    open_account,
    transfer,
    with_accounts,
)

DAY_S = 86_400


def test_abort_puts_the_batch_back_and_commit_keeps_it() -> None:
    book = with_accounts("cash", "sales")
    book.state.commit()
    before = list(ledger.export_records(book.state))
    book.accept(transfer("t1", "cash", "sales", 5))
    book.accept(transfer("p1", "cash", "sales", 5, pending=True, pending_timeout_s=1))
    assert book.state.has_staged_changes and book.state.staged_records()
    book.state.abort()
    assert list(ledger.export_records(book.state)) == before
    assert book.state.outcome("acme", "transfer-t1") is None
    # the aborted pending transfer is gone from the expiry index too: nothing expires later
    decision = book.accept(open_account("late"), at_us=T0_US + 60 * SECOND_US)
    assert decision.events[0].sequence == 3
    book.accept(transfer("t1", "cash", "sales", 5))
    book.state.commit()
    assert not book.state.has_staged_changes and book.state.staged_records() == ()


def test_an_aborted_expiry_expires_again_after_the_rewind() -> None:
    # the expiry index drops an ended transfer's entry mid-batch; an abort must bring it back
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 5, pending=True, pending_timeout_s=1))
    book.state.commit()
    first = book.accept(open_account("a"), at_us=T0_US + 2 * SECOND_US)
    assert [type(e).__name__ for e in first.events] == ["PendingExpired", "AccountOpened"]
    book.accept(open_account("b"), at_us=T0_US + 3 * SECOND_US)  # nothing left to expire
    book.state.abort()
    again = book.accept(open_account("a"), at_us=T0_US + 2 * SECOND_US)
    assert again.events == first.events
    assert again.encoded_events == first.encoded_events


def test_decisions_carry_their_events_encoded() -> None:
    book = with_accounts("cash", "sales")
    decision = book.accept(transfer("t1", "cash", "sales", 5))
    assert decision.encoded_events == tuple(encode_event(e) for e in decision.events)
    assert decision.encoded_events[0][-32:] == decision.events[0].hash


def test_staged_records_hold_the_latest_version_once() -> None:
    book = with_accounts("cash", "sales")
    book.state.commit()
    book.accept(transfer("t1", "cash", "sales", 5))
    book.accept(transfer("t2", "cash", "sales", 7))
    records = book.state.staged_records()
    accounts = [r for r in records if isinstance(r, AccountState)]
    assert sorted((a.account_id, a.last_sequence) for a in accounts) == [("cash", 4), ("sales", 4)]
    heads = [r for r in records if isinstance(r, TenantHead)]
    assert [h.last_sequence for h in heads] == [4]


def test_outcome_retention_is_decided_on_stream_time() -> None:
    book = Ledger(retention_s=1 * DAY_S)
    decision = book.accept(open_account("cash"), at_us=T0_US)
    assert decision.outcome.expires_at_us == T0_US + DAY_S * SECOND_US
    book.accept(open_account("b"), at_us=T0_US + 10)
    assert ledger.expired_outcomes(book.state, book.state.stream_time_us) == ()
    later = T0_US + DAY_S * SECOND_US + 10
    book.accept(open_account("c"), at_us=later)
    expired = ledger.expired_outcomes(book.state, book.state.stream_time_us)
    assert [o.idempotency_key for o in expired] == ["open-cash", "open-b"]
    assert ledger.expired_outcomes(book.state, later, limit=1) == expired[:1]
    book.state.forget_outcomes(expired)
    book.state.commit()
    assert book.state.outcome("acme", "open-cash") is None
    assert ledger.expired_outcomes(book.state, later) == ()


def test_an_expired_key_is_free_even_before_its_tombstone() -> None:
    book = Ledger(retention_s=1 * DAY_S)
    book.accept(open_account("cash", key="k"), at_us=T0_US)
    after = T0_US + DAY_S * SECOND_US
    decision = book.run(open_account("other", key="k"), at_us=after)  # same key, other payload
    assert isinstance(decision, ledger.Accepted)
    # the old outcome is replaced, so no tombstone may be written for the key any more
    assert ledger.expired_outcomes(book.state, after) == ()


def test_retention_zero_keeps_keys_forever() -> None:
    book = Ledger(retention_s=0)
    decision = book.accept(open_account("cash"))
    assert decision.outcome.expires_at_us is None
    assert ledger.expired_outcomes(book.state, 2**62) == ()
    with pytest.raises(ValueError, match="idempotency_retention_s"):
        ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=-1)


def restored(book: Ledger) -> ledger.LedgerState:
    return ledger.restore(
        list(ledger.export_records(book.state)),
        list(ledger.outcomes_of(book.state)),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=book.retention_s,
    )


def test_restore_rebuilds_state_stream_time_and_expiry() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 5, pending=True, pending_timeout_s=10))
    book.accept(transfer("t1", "cash", "sales", 5))
    book.state.commit()
    state = restored(book)
    assert sorted(map(repr, ledger.export_records(state))) == sorted(
        map(repr, ledger.export_records(book.state))
    )
    assert state.stream_time_us == book.state.stream_time_us
    late = book.now_us + 11 * SECOND_US
    original = ledger.decide(book.state, open_account("x"), late)
    again = ledger.decide(state, open_account("x"), late)
    assert original == again and original.events[0].transfer_id == "p1"  # type: ignore[union-attr]


def test_restore_folds_the_events_tail_past_the_heads() -> None:
    book = with_accounts("cash", "sales")
    book.state.commit()
    records = list(ledger.export_records(book.state))
    outcomes = list(ledger.outcomes_of(book.state))
    book.accept(transfer("t1", "cash", "sales", 5))
    state = ledger.restore(records, outcomes, book.events, wire_format=WIRE_FORMAT)
    assert state.account("acme", "cash") == book.account("cash")
    assert state.head("acme") == book.state.head("acme")


def test_restore_refuses_records_that_do_not_add_up() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("t1", "cash", "sales", 5))
    records = [
        dataclasses.replace(r, credits_posted=4)
        if isinstance(r, AccountState) and r.account_id == "sales"
        else r
        for r in ledger.export_records(book.state)
    ]
    with pytest.raises(InvariantViolationError, match="sum"):
        ledger.restore(records, [], wire_format=WIRE_FORMAT)


def test_restore_refuses_pending_counters_without_their_transfer() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 5, pending=True))
    records = [r for r in ledger.export_records(book.state) if not isinstance(r, TransferState)]
    with pytest.raises(InvariantViolationError, match="pending"):
        ledger.restore(records, [], wire_format=WIRE_FORMAT)


# --------------------------------------------------------------------------- the fold


def folded(book: Ledger) -> ledger.LedgerState:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for event in book.events:
        ledger.apply(state, event)
    return state


def test_fold_of_the_events_equals_the_decided_state() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 50, pending=True, pending_timeout_s=1))
    book.accept(transfer("t1", "cash", "sales", 30))
    book.accept(transfer("r1", "sales", "cash", 10, reverses="t1"))
    book.accept(open_account("x"), at_us=book.now_us + 5 * SECOND_US)
    assert book.state.transfer("acme", "p1").status is TransferStatus.EXPIRED  # type: ignore[union-attr]
    state = folded(book)
    assert list(ledger.export_records(state)) == list(ledger.export_records(book.state))
    ledger.assert_invariants(state)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda e: dataclasses.replace(e, amount=6), "hash"),
        (lambda e: dataclasses.replace(e, sequence=4, event_id="acme:4"), "gap"),
        (lambda e: dataclasses.replace(e, prev_hash=bytes(32)), "prev_hash"),
        (lambda e: dataclasses.replace(e, event_id="acme-3"), "event_id"),
    ],
)
def test_fold_rejects_a_tampered_event(tamper: object, message: str) -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("t1", "cash", "sales", 5))
    book.events[-1] = tamper(book.events[-1])  # type: ignore[operator]
    with pytest.raises(InvariantViolationError, match=message):
        folded(book)


def test_fold_rejects_balances_that_are_not_the_folds() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("t1", "cash", "sales", 5))
    event = book.events[-1]
    wrong = dataclasses.replace(event.balances[0], debits_posted=6)
    forged = dataclasses.replace(event, balances=(wrong, event.balances[1]))
    book.events[-1] = dataclasses.replace(forged, hash=event_chain_hash(forged))
    with pytest.raises(InvariantViolationError, match="balances"):
        folded(book)
