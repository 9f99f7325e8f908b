"""The projection's plan of metadata (migration 0009, decision 0056): the metadata a created
account or transfer carries goes to its row and one search-index row per entry; a transaction's
postings carry the transaction's; ending a pending transfer changes neither."""

from __future__ import annotations

import dataclasses

from projections.batch import fold_transfers, plan_batch
from schemas.model import Command, Posting, PostTransaction
from tests.unit.ledger_builders import T0_US, Ledger, open_account, post_pending, transfer

ORDER = (("channel", "web"), ("order_id", "A-17"))


def tagged(command: Command, metadata: tuple[tuple[str, str], ...]) -> Command:
    return dataclasses.replace(command, metadata=metadata)


def test_created_rows_carry_their_metadata_and_index_every_entry() -> None:
    book = Ledger()
    book.accept(tagged(open_account("cash"), (("team", "treasury"),)))
    book.accept(open_account("alice"))
    book.accept(tagged(transfer("t-1", "cash", "alice", 10, pending=True), ORDER))
    book.accept(tagged(post_pending("t-1"), (("reason", "settled"),)))
    book.accept(
        tagged(
            PostTransaction(
                tenant_id="acme",
                idempotency_key="tx-1",
                submitted_at_us=T0_US,
                transaction_id="x-1",
                postings=(
                    Posting(
                        debit_account_id="cash", credit_account_id="alice", amount=3, currency="USD"
                    ),
                    Posting(
                        debit_account_id="alice", credit_account_id="cash", amount=1, currency="USD"
                    ),
                ),
            ),
            (("order_id", "B-2"),),
        )
    )
    plan = plan_batch(book.events)
    assert [row[-1] for row in plan.accounts] == [{"team": "treasury"}, {}]
    assert plan.account_metadata == [("acme", "team", "treasury", 1, "cash")]
    assert plan.transfer_metadata == [
        ("acme", "channel", "web", 3, "t-1"),
        ("acme", "order_id", "A-17", 3, "t-1"),
        ("acme", "order_id", "B-2", 5, "x-1/0"),
        ("acme", "order_id", "B-2", 5, "x-1/1"),
    ]  # the PostPending's own metadata indexes nothing: a transfer's is its creation's
    assert plan.transaction_metadata == [("acme", "order_id", "B-2", 5, "x-1")]  # 0013
    (transaction,) = plan.transactions.values()
    assert transaction.metadata == {"order_id": "B-2"}
    transfers = fold_transfers({}, plan.transfer_events)
    assert transfers[("acme", "t-1")].status == "posted"  # ended, its metadata kept
    assert transfers[("acme", "t-1")].metadata == dict(ORDER)
    assert transfers[("acme", "x-1/1")].metadata == {"order_id": "B-2"}
