"""Multi-leg transactions in the contract (schemas v1.3, issue 16 phase 1): the command and its
events on the wire, the limits naming ``postings[i].<field>``, the fingerprint covering every
posting, key reuse naming the first differing posting field, one stored event per
transaction."""

from __future__ import annotations

import dataclasses

import pytest

import ledger
from producers.jsonl import command_from_line, command_to_line
from schemas import codec, limits
from schemas.model import (
    AccountBalance,
    Outcome,
    OutcomeStatus,
    Posting,
    PostTransaction,
    TransactionPendingPosted,
    TransactionState,
    TransferStatus,
)
from tests.unit.ledger_builders import T0_US, with_accounts


def posting(debit: str, credit: str, amount: int, currency: str = "USD") -> Posting:
    return Posting(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency=currency
    )


def transaction(*postings: Posting, **fields: object) -> PostTransaction:
    values: dict[str, object] = {
        "tenant_id": "acme",
        "idempotency_key": "tx-1",
        "submitted_at_us": T0_US,
        "transaction_id": "tx-1",
        "postings": postings,
    } | fields
    return PostTransaction(**values)  # type: ignore[arg-type]


PAYMENT = transaction(
    posting("card", "merchant", 9710),
    posting("card", "platform", 260),
    posting("card", "network", 30),
)
FX = transaction(
    posting("customer_eur", "fx_liquidity_eur", 10000, "EUR"),
    posting("fx_liquidity_usd", "customer_usd", 10837, "USD"),
    metadata=(("fx_pair", "EUR/USD"), ("fx_rate", "1.0837")),
    idempotency_key="fx-1",
    transaction_id="fx-1",
)


def test_post_transaction_is_the_last_command_branch_and_round_trips() -> None:
    data = codec.encode_command(PAYMENT)
    assert data[codec.HEADER_BYTES] == 4 << 1  # union branch 4, after VoidPending
    assert codec.decode_command(data) == PAYMENT
    assert codec.decode_command(codec.encode_command(FX)) == FX


def test_transaction_events_and_state_are_the_last_branches() -> None:
    names = [branch.python_type.__name__ for branch in codec.EVENTS.branches]
    # appended in v1.3 as event branches 6..10 and state branch 3; later versions append after
    assert names[6:11] == [
        "TransactionPosted",
        "TransactionPending",
        "TransactionPendingPosted",
        "TransactionPendingVoided",
        "TransactionPendingExpired",
    ]
    assert codec.STATES.branches[3].python_type is TransactionState
    event = TransactionPendingPosted(
        tenant_id="acme",
        sequence=7,
        event_id="acme:7",
        idempotency_key="post-tx-1",
        effective_at_us=T0_US,
        balances=(AccountBalance(account_id="card", currency="USD", debits_posted=10000),),
        prev_hash=bytes(32),
        hash=bytes(32),
        transaction_id="tx-1",
        postings=PAYMENT.postings,
        pending_amounts=(9710, 260, 30),
    )
    digest, data = codec.seal_event(event)
    decoded = codec.decode_event(data)
    assert decoded == dataclasses.replace(event, hash=digest)
    assert data[codec.HEADER_BYTES] == 8 << 1
    state = TransactionState(
        tenant_id="acme",
        transaction_id="tx-1",
        postings=PAYMENT.postings,
        status=TransferStatus.POSTED,
        amounts_posted=(9710, 260, 30),
        amounts_reversed=(0, 0, 0),
        reverses=None,
        expires_at_us=None,
        last_sequence=7,
    )
    assert codec.decode_state(codec.encode_state(state)) == state


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"postings": ()}, "postings"),
        ({"postings": tuple(posting("a", "b", 1) for _ in range(65))}, "postings"),
        ({"transaction_id": "tx 1"}, "transaction_id"),
        ({"pending_timeout_s": 10}, "pending_timeout_s"),
        ({"pending": True, "reverses": "tx-0"}, "reverses"),
        ({"reverses": "tx-1"}, "reverses"),
    ],
)
def test_transaction_limits(changes: dict[str, object], field: str) -> None:
    violation = limits.first_violation(dataclasses.replace(PAYMENT, **changes))  # type: ignore[arg-type]
    assert violation is not None and violation[0] == field


def test_a_broken_posting_is_named_by_its_index_and_field() -> None:
    postings = (*PAYMENT.postings, posting("a", "b", 0))
    violation = limits.first_violation(dataclasses.replace(PAYMENT, postings=postings))
    assert violation == ("postings[3].amount", "0 is outside 1..9223372036854775807")
    postings = (posting("a", "b", 5, "usd"),)
    violation = limits.first_violation(dataclasses.replace(PAYMENT, postings=postings))
    assert violation is not None and violation[0] == "postings[0].currency"
    assert limits.first_violation(PAYMENT) is None
    assert limits.first_violation(dataclasses.replace(PAYMENT, postings=PAYMENT.postings * 22))
    assert (
        limits.first_violation(dataclasses.replace(PAYMENT, postings=PAYMENT.postings[:1] * 64))
        is None
    )


def _stored(command: PostTransaction) -> Outcome:
    fingerprint, field_fingerprints = ledger.command_fingerprint(command)
    return Outcome(
        tenant_id="acme",
        idempotency_key=command.idempotency_key,
        command_type="PostTransaction",
        fingerprint=fingerprint,
        field_fingerprints=field_fingerprints,
        status=OutcomeStatus.ACCEPTED,
        decided_at_us=T0_US,
    )


def test_fingerprint_covers_every_posting_and_names_the_first_difference() -> None:
    assert ledger.command_fingerprint(PAYMENT) == ledger.reference_command_fingerprint(PAYMENT)
    _, field_fingerprints = ledger.command_fingerprint(PAYMENT)
    assert len(field_fingerprints) == 8 * (6 + 4 * 3)
    names = [
        name for name, _ in ledger.field_fingerprint_pairs("PostTransaction", field_fingerprints)
    ]
    assert names[:6] == list(ledger.FINGERPRINT_FIELDS[PostTransaction])
    assert names[6:10] == [
        "postings[0].debit_account_id",
        "postings[0].credit_account_id",
        "postings[0].amount",
        "postings[0].currency",
    ]
    stored = _stored(PAYMENT)
    changed = list(PAYMENT.postings)
    changed[2] = posting("card", "network", 31)
    cases = {
        "postings[2].amount": dataclasses.replace(PAYMENT, postings=tuple(changed)),
        "postings[2]": dataclasses.replace(PAYMENT, postings=PAYMENT.postings[:2]),
        "postings[3]": dataclasses.replace(
            PAYMENT, postings=(*PAYMENT.postings, posting("a", "b", 1))
        ),
        "pending": dataclasses.replace(PAYMENT, pending=True),
        "metadata": dataclasses.replace(PAYMENT, metadata=(("order", "A-17"),)),
    }
    for expected, command in cases.items():
        assert ledger.first_differing_field(stored, command) == expected
        assert ledger.command_fingerprint(command)[0] != stored.fingerprint


def test_postings_reordered_are_another_command() -> None:
    swapped = dataclasses.replace(PAYMENT, postings=PAYMENT.postings[::-1])
    assert ledger.command_fingerprint(swapped)[0] != ledger.command_fingerprint(PAYMENT)[0]
    assert (
        ledger.first_differing_field(_stored(PAYMENT), swapped) == "postings[0].credit_account_id"
    )


def test_json_lines_round_trip_a_transaction() -> None:
    line = command_to_line(FX)
    assert '"postings":[{"debit_account_id":"customer_eur"' in line
    assert command_from_line(line, default_submitted_at_us=0) == FX


def test_the_core_decides_a_transaction_as_one_stored_event() -> None:
    book = with_accounts("card", "merchant", "platform", "network")
    decision = book.accept(PAYMENT)
    assert len(decision.events) == 1 and decision.changes.outcome is not None
    assert book.state.outcome("acme", PAYMENT.idempotency_key) == decision.outcome
