"""The processor's adapter around the core: stored outcomes carry their times in a header, and
a restore from those headers keeps the outcomes encoded yet decides exactly as a decoded one."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import ledger
from processors.metrics import ProcessorMetrics
from processors.partition_ledger import (
    WIRE_FORMAT,
    PartitionLedger,
    _split_balances,
    encoded_outcomes_of,
    outcome_times,
)
from schemas.keys import transaction_state_key, transfer_state_key
from schemas.model import Posting, PostTransaction
from tests.unit.ledger_builders import SECOND_US, T0_US, open_account, transfer

RETENTION_S = 60


def test_outcomes_restored_from_their_times_header_decide_like_the_originals() -> None:
    original = PartitionLedger(
        0, ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=RETENTION_S)
    )
    original.decide(open_account("cash", key="k1"), T0_US, 0)
    original.decide(open_account("sales", key="k2"), T0_US + SECOND_US, 1)
    outputs = original.staged_outputs()
    original.commit()
    assert len(outputs.outcome_times) == len(outputs.outcomes) == 2
    values = {key: value for key, value in outputs.outcomes if value is not None}
    times = {
        key: t for (key, _), t in zip(outputs.outcomes, outputs.outcome_times, strict=True) if t
    }
    state = ledger.restore(
        list(ledger.export_records(original.state)),
        (),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=RETENTION_S,
        encoded_outcomes=encoded_outcomes_of(values, times),
    )
    assert state.stream_time_us == original.state.stream_time_us
    assert state.outcome("acme", "k1") == original.state.outcome("acme", "k1")
    duplicate = ledger.decide(state, open_account("cash", key="k1"), T0_US + 2 * SECOND_US)
    assert isinstance(duplicate, ledger.Duplicate)
    late = T0_US + (RETENTION_S + 1) * SECOND_US
    assert ledger.expired_outcomes(state, late) == ledger.expired_outcomes(original.state, late)


def test_a_key_kept_forever_has_no_expiry_in_its_header() -> None:
    book = PartitionLedger(
        0, ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
    )
    book.decide(open_account("cash", key="k1"), T0_US, 0)
    stored = book.state.outcome("acme", "k1")
    assert stored is not None
    encoded = encoded_outcomes_of({b"acme/k1": b"v"}, {b"acme/k1": outcome_times(stored)})
    assert encoded.values == {b"acme/k1": b"v"}
    assert encoded.keys == [b"acme/k1"]
    assert list(encoded.times) == [T0_US, ledger.KEPT_FOREVER_US]


def payment(key: str, *amounts: int, payer: str = "card") -> PostTransaction:
    postings = tuple(
        Posting(debit_account_id=payer, credit_account_id=f"seller-{n}", amount=a, currency="USD")
        for n, a in enumerate(amounts)
    )
    return PostTransaction(
        tenant_id="acme",
        idempotency_key=key,
        submitted_at_us=T0_US,
        transaction_id=key,
        postings=postings,
    )


def test_accepted_transactions_feed_the_postings_histogram_and_stage_their_state() -> None:
    book = PartitionLedger(0, ledger.LedgerState(wire_format=WIRE_FORMAT))
    accounts = ("card", "seller-0", "seller-1", "seller-2")
    for offset, account in enumerate(accounts):
        book.decide(open_account(account), T0_US, offset)
    book.decide(open_account("wallet", debits_must_not_exceed_credits=True), T0_US, 4)
    book.decide(payment("pay-1", 9710, 260, 30), T0_US, 5)  # accepted: 3 postings
    book.decide(payment("pay-1", 9710, 260, 30), T0_US, 6)  # a duplicate: not again
    book.decide(payment("pay-2", 5, 5, payer="wallet"), T0_US, 7)  # rejected: no funds
    outputs = book.staged_outputs()
    assert transaction_state_key("acme", "pay-1") in {key for key, _ in outputs.states}
    metrics = ProcessorMetrics()
    outputs.count_into(metrics)
    name = "streamledger_processor_ledger_transaction_postings"
    found = {
        (sample.name, sample.labels.get("le")): sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
        if sample.name.startswith(name)
    }
    assert found[(name + "_count", None)] == 1 and found[(name + "_sum", None)] == 3
    assert found[(name + "_bucket", "2.0")] == 0 and found[(name + "_bucket", "3.0")] == 1
    assert found[(name + "_bucket", "64.0")] == found[(name + "_bucket", "+Inf")] == 1


def _restored_both_ways(
    book: PartitionLedger, outputs_records: list[tuple[bytes, bytes]], times: dict[bytes, bytes]
) -> tuple[ledger.LedgerState, ledger.LedgerState]:
    """The book's state restored with its outcomes decoded, and kept encoded (decision 0102)."""
    records = list(ledger.export_records(book.state))
    decoded = ledger.restore(
        records,
        list(ledger.outcomes_of(book.state)),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=RETENTION_S,
    )
    values = dict(outputs_records)
    encoded = ledger.restore(
        records,
        (),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=RETENTION_S,
        encoded_outcomes=encoded_outcomes_of(values, times),
    )
    return decoded, encoded


def test_outcomes_kept_encoded_expire_replace_and_abort_like_decoded_ones() -> None:
    """The encoded outcomes' expiry index (a sorted array and a cursor) answers as the heap of
    decoded ones through expiry, abort, commit and a key decided again after it expired."""
    book = PartitionLedger(
        0, ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=RETENTION_S)
    )
    for index in range(10):
        book.decide(open_account(f"a{index}", key=f"k{index}"), T0_US + index * SECOND_US, index)
    outputs = book.staged_outputs()
    book.commit()
    times = {key: t for (key, _), t in zip(outputs.outcomes, outputs.outcome_times, strict=True)}
    values = [(key, value) for key, value in outputs.outcomes if value is not None]
    states = _restored_both_ways(book, values, {k: t for k, t in times.items() if t})
    first_due = T0_US + (RETENTION_S + 2) * SECOND_US  # k0, k1 and k2 are due
    expired = [ledger.expired_outcomes(state, first_due) for state in states]
    assert expired[0] == expired[1] and [o.idempotency_key for o in expired[1]] == [
        "k0",
        "k1",
        "k2",
    ]
    for state in states:
        state.forget_outcomes(ledger.expired_outcomes(state, first_due))
        state.abort()  # the batch that forgot them aborts: they are back, still due
    assert [ledger.expired_outcomes(state, first_due) for state in states] == expired
    for state in states:
        state.forget_outcomes(ledger.expired_outcomes(state, first_due))
        state.commit()
        assert state.outcome_count == 7 and state.outcome("acme", "k1") is None
    again = open_account("b1", key="k1")  # the expired key, decided afresh, then aborted
    for state in states:
        assert isinstance(ledger.step(state, again, first_due), ledger.Accepted)
        state.abort()
        assert state.outcome("acme", "k1") is None
    duplicate = open_account("a5", key="k5")  # a key still kept: answered, decoded on use
    answers = [ledger.step(state, duplicate, first_due) for state in states]
    assert all(isinstance(answer, ledger.Duplicate) for answer in answers)
    assert answers[0].outcome == answers[1].outcome
    everything = T0_US + (RETENTION_S + 20) * SECOND_US
    last = [ledger.expired_outcomes(state, everything) for state in states]
    assert last[0] == last[1] and len(last[1]) == 7
    for state in states:
        state.forget_outcomes(ledger.expired_outcomes(state, everything))
        state.commit()  # the encoded part of the index is passed, and dropped
        assert state.outcome_count == 0
        assert ledger.expired_outcomes(state, everything) == ()


def test_a_settled_transfer_kept_encoded_is_reversed_and_put_back_by_an_abort() -> None:
    """A restore keeps a posted transfer encoded (decision 0102); a reversal decodes it and
    stages the new version, an abort puts the encoded one back, a commit keeps the new one."""
    book = PartitionLedger(0, ledger.LedgerState(wire_format=WIRE_FORMAT))
    for offset, command in enumerate(
        (open_account("cash"), open_account("sales"), transfer("t1", "cash", "sales", 5))
    ):
        book.decide(command, T0_US, offset)
    outputs = book.staged_outputs()
    book.commit()
    snapshot_records = dict(outputs.states)
    signing_keys, records, settled = _split_balances(
        {key: value for key, value in snapshot_records.items() if value is not None}
    )
    assert not signing_keys and list(settled.values) == [transfer_state_key("acme", "t1")]
    state = ledger.restore(records, (), wire_format=WIRE_FORMAT, encoded_transfers=settled)
    original = book.state.transfer("acme", "t1")
    assert original is not None and state.transfer("acme", "t1") == original
    reversal = transfer("t2", "sales", "cash", 5, reverses="t1")
    assert isinstance(ledger.step(state, reversal, T0_US + SECOND_US), ledger.Accepted)
    reversed_now = state.transfer("acme", "t1")
    assert reversed_now is not None and reversed_now.amount_reversed == 5
    assert not state._encoded_transfers
    state.abort()
    assert state.transfer("acme", "t1") == original
    assert list(state._encoded_transfers) == [transfer_state_key("acme", "t1")]
    assert isinstance(ledger.step(state, reversal, T0_US + SECOND_US), ledger.Accepted)
    state.commit()
    book.decide(reversal, T0_US + SECOND_US, 3)
    book.staged_outputs()
    book.commit()
    assert state.transfer("acme", "t1") == book.state.transfer("acme", "t1") == reversed_now
    assert sorted(map(repr, ledger.export_records(state))) == sorted(
        map(repr, ledger.export_records(book.state))
    )
