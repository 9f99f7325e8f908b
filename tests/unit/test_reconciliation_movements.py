"""``movements_of`` (issue 20): a transaction's movements, posting by posting, as the plain
definition gives them — one per posting and account, a zero posting none, the movement id the
posting's index, the reference the metadata's (its last value for a key written twice)."""

from __future__ import annotations

from reconciliation.matching import MICROSECONDS_PER_DAY, Movement, movements_of
from reconciliation.statement import Direction
from schemas.model import GENESIS_HASH, Posting, TransactionPendingPosted, TransactionPosted

DAY = 20_000


def posting(debit: str, credit: str, amount: int) -> Posting:
    return Posting(debit_account_id=debit, credit_account_id=credit, amount=amount, currency="EUR")


def movement(
    account: str, index: int, amount: int, direction: Direction, reference: str | None
) -> Movement:
    return Movement(
        tenant_id="acme", account_id=account, movement_id=f"acme:7#{index}", amount=amount,
        direction=direction, date_days=DAY, external_reference=reference,
    )  # fmt: skip


def test_a_transactions_postings_each_move_both_accounts() -> None:
    postings = (posting("bank", "a", 100), posting("a", "b", 0), posting("c", "bank", 30))
    header = {
        "tenant_id": "acme", "sequence": 7, "event_id": "acme:7", "idempotency_key": "k",
        "effective_at_us": DAY * MICROSECONDS_PER_DAY + 5, "balances": (),
        "prev_hash": GENESIS_HASH, "hash": GENESIS_HASH,
        "metadata": (("external_ref", "first"), ("external_ref", "E2E-1"), ("other", "x")),
    }  # fmt: skip
    posted = TransactionPosted(**header, transaction_id="t", postings=postings, reverses=None)  # type: ignore[arg-type]
    expected = (
        movement("bank", 0, 100, Direction.CREDIT, "E2E-1"),
        movement("a", 0, 100, Direction.DEBIT, "E2E-1"),
        movement("c", 2, 30, Direction.CREDIT, "E2E-1"),
        movement("bank", 2, 30, Direction.DEBIT, "E2E-1"),
    )
    assert movements_of(posted, "external_ref") == expected
    pending_posted = TransactionPendingPosted(
        **header,
        transaction_id="t",
        postings=postings,
        pending_amounts=(100, 0, 30),  # type: ignore[arg-type]
    )
    assert movements_of(pending_posted, "external_ref") == expected
    without = TransactionPosted(
        **{**header, "metadata": ()}, transaction_id="t", postings=postings, reverses=None
    )  # type: ignore[arg-type]
    assert all(found.external_reference is None for found in movements_of(without, "external_ref"))
    assert all(found.external_reference is None for found in movements_of(posted, "missing"))
