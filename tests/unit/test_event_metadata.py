"""Schemas v1.4 (decision 0055): every event caused by a command carries that command's metadata.

The core copies ``metadata`` from the command into its event (``OpenAccount``, ``Transfer``,
``PostPending``, ``VoidPending``, ``PostTransaction``, and the post or void of a pending
transaction); an expiry, caused by time, carries none. The metadata is in the hash: the event
bytes the core seals decode back to it, and a replay gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib

from hypothesis import given, settings

from schemas.codec import decode_event, record_canonical_bytes
from schemas.model import (
    AccountOpened,
    Command,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    Posting,
    PostTransaction,
    TransactionPendingExpired,
    TransactionPendingPosted,
    TransactionPendingVoided,
    TransactionPosted,
    TransferPending,
    TransferPosted,
)
from tests.unit.contract_strategies import metadata_values
from tests.unit.ledger_builders import (
    SECOND_US,
    T0_US,
    Ledger,
    open_account,
    post_pending,
    transfer,
    void_pending,
)

ORDER = (("order_id", "A-17"),)
REFUND = (("external_ref", "psp-9"), ("reason", "refund"))


def tagged(command: Command, metadata: tuple[tuple[str, str], ...]) -> Command:
    return dataclasses.replace(command, metadata=metadata)


def posting(debit: str, credit: str, amount: int) -> Posting:
    return Posting(debit_account_id=debit, credit_account_id=credit, amount=amount, currency="USD")


def transaction(transaction_id: str, **fields: object) -> PostTransaction:
    return PostTransaction(
        tenant_id="acme",
        idempotency_key=f"tx-{transaction_id}",
        submitted_at_us=T0_US,
        transaction_id=transaction_id,
        postings=(posting("cash", "alice", 5), posting("cash", "bob", 7)),
        **fields,  # type: ignore[arg-type]
    )


def book_with_accounts() -> Ledger:
    book = Ledger()
    for account_id, metadata in (("cash", ()), ("alice", ORDER), ("bob", ())):
        book.accept(tagged(open_account(account_id), metadata))
    return book


def test_account_opened_carries_the_open_accounts_metadata() -> None:
    book = book_with_accounts()
    opened = [event for event in book.events if isinstance(event, AccountOpened)]
    assert [(event.account_id, event.metadata) for event in opened] == [
        ("cash", ()),
        ("alice", ORDER),
        ("bob", ()),
    ]


def test_transfer_events_carry_the_metadata_of_their_own_command() -> None:
    book = book_with_accounts()
    posted = book.accept(tagged(transfer("t-1", "cash", "alice", 10), ORDER))
    pending = book.accept(tagged(transfer("t-2", "cash", "bob", 20, pending=True), ORDER))
    completed = book.accept(tagged(post_pending("t-2", 5), REFUND))
    book.accept(transfer("t-3", "cash", "bob", 30, pending=True))
    voided = book.accept(tagged(void_pending("t-3"), REFUND))
    assert [type(event) for event in posted.events] == [TransferPosted]
    assert posted.events[0].metadata == ORDER
    assert [type(event) for event in pending.events] == [TransferPending]
    assert pending.events[0].metadata == ORDER
    assert [(type(event), event.metadata) for event in completed.events] == [
        (PendingPosted, REFUND)  # the PostPending's metadata, not the transfer's
    ]
    assert [(type(event), event.metadata) for event in voided.events] == [(PendingVoided, REFUND)]


def test_an_expiry_carries_no_metadata() -> None:
    book = book_with_accounts()
    book.accept(
        tagged(transfer("t-1", "cash", "alice", 10, pending=True, pending_timeout_s=1), ORDER)
    )
    book.accept(tagged(transaction("x-1", pending=True, pending_timeout_s=1), ORDER))
    later = book.run(open_account("carol"), at_us=book.now_us + 5 * SECOND_US)
    expired = [
        event
        for event in later.events
        if isinstance(event, PendingExpired | TransactionPendingExpired)
    ]
    assert len(expired) == 2
    assert all(event.metadata == () for event in expired)


def test_transaction_events_carry_the_metadata_of_their_own_command() -> None:
    book = book_with_accounts()
    posted = book.accept(tagged(transaction("x-1"), ORDER))
    assert [(type(event), event.metadata) for event in posted.events] == [
        (TransactionPosted, ORDER)
    ]
    book.accept(transaction("x-2", pending=True))
    completed = book.accept(tagged(post_pending("x-2"), REFUND))
    assert [(type(event), event.metadata) for event in completed.events] == [
        (TransactionPendingPosted, REFUND)
    ]
    book.accept(transaction("x-3", pending=True))
    voided = book.accept(tagged(void_pending("x-3"), ORDER))
    assert [(type(event), event.metadata) for event in voided.events] == [
        (TransactionPendingVoided, ORDER)
    ]


@settings(max_examples=50, deadline=None)
@given(metadata=metadata_values)
def test_the_sealed_bytes_carry_the_metadata_and_the_hash_covers_it(
    metadata: tuple[tuple[str, str], ...],
) -> None:
    book = book_with_accounts()
    decision = book.accept(tagged(transfer("t-1", "cash", "alice", 10), metadata))
    (event,) = decision.events
    (encoded,) = decision.encoded_events
    assert decode_event(encoded) == event
    assert event.metadata == metadata
    assert hashlib.sha256(event.prev_hash + record_canonical_bytes(encoded)).digest() == event.hash
