"""What an event does: the one definition of postings and transfer status transitions.

Every money event moves the same amount on both of its accounts, one or two *postings* (which is
what makes debits equal credits in every event): the debit account's ``debits_<counter>`` and the
credit account's ``credits_<counter>`` change by the amount.

=================  =======================================  =====================================
event              postings (kind, amount)                  the transfer's status
=================  =======================================  =====================================
TransferPosted     (posted, amount)                         created posted; a reversal adds
                                                            ``amount`` to the reversed
                                                            transfer's ``amount_reversed``
TransferPending    (pending, amount)                        created pending
PendingPosted      (posted, amount), (released, pending)    pending -> posted
PendingVoided      (released, amount)                       pending -> voided
PendingExpired     (released, amount)                       pending -> expired
=================  =======================================  =====================================

``posted``/``pending``: that counter grows by the amount; ``released``: the pending counter
shrinks by it. Used by the core (``ledger.execution`` builds events with it, ``ledger.fold``
checks them with it) and by the projection's planner (``projections.batch``: journal rows and
transfer rows). ``projections.verify`` is the deliberately independent second implementation.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Final

from schemas._generated_records import (
    new_account_balance,
    new_account_state,
    new_transaction_state,
    new_transfer_state,
)
from schemas.model import (
    INT64_MAX,
    AccountBalance,
    AccountState,
    TransactionState,
    TransferState,
    TransferStatus,
)
from schemas.model import Posting as ModelPosting  # ``Posting`` here is (kind, amount)
from streamledger.errors import InvariantViolationError


class PostingKind(enum.Enum):
    PENDING = "pending"  # the side's pending counter grows by the amount
    POSTED = "posted"  # the side's posted counter grows by the amount
    RELEASED = "released"  # the side's pending counter shrinks by the amount


Posting = tuple[PostingKind, int]

# the status a creating event gives its new transfer
CREATED_STATUS: Final[Mapping[str, TransferStatus]] = {
    "TransferPosted": TransferStatus.POSTED,
    "TransferPending": TransferStatus.PENDING,
}
# the status an event that ends a pending transfer gives it
FINAL_STATUS: Final[Mapping[str, TransferStatus]] = {
    "PendingPosted": TransferStatus.POSTED,
    "PendingVoided": TransferStatus.VOIDED,
    "PendingExpired": TransferStatus.EXPIRED,
}
MONEY_EVENT_TYPES: Final = frozenset({*CREATED_STATUS, *FINAL_STATUS})


def postings(
    event_type: str, amount: int, pending_amount: int | None = None
) -> tuple[Posting, ...]:
    """The postings a money event makes on each of its two accounts (the table above);
    ``pending_amount`` is a ``PendingPosted``'s reservation, released whole."""
    if event_type == "TransferPosted":
        return ((PostingKind.POSTED, amount),)
    if event_type == "TransferPending":
        return ((PostingKind.PENDING, amount),)
    if event_type == "PendingPosted":
        assert pending_amount is not None
        return ((PostingKind.POSTED, amount), (PostingKind.RELEASED, pending_amount))
    assert event_type in FINAL_STATUS, event_type
    return ((PostingKind.RELEASED, amount),)


def counter_changes(
    event_type: str, amount: int, pending_amount: int | None = None
) -> tuple[int, int]:
    """(added to posted, added to pending, may be < 0) on both accounts: ``postings`` summed."""
    posted = pending = 0
    for kind, value in postings(event_type, amount, pending_amount):
        if kind is PostingKind.POSTED:
            posted += value
        elif kind is PostingKind.PENDING:
            pending += value
        else:
            pending -= value
    return posted, pending


def next_status(event_type: str, current: TransferStatus | None) -> TransferStatus | None:
    """The transfer's status after the event, or None when the event cannot apply to a transfer
    in ``current`` (None: there is no such transfer): a creating event needs none, an ending
    event a pending one."""
    if event_type in CREATED_STATUS:
        return CREATED_STATUS[event_type] if current is None else None
    if current is not TransferStatus.PENDING:
        return None
    return FINAL_STATUS[event_type]


def amount_posted_after(event_type: str, amount: int) -> int:
    """The transfer's ``amount_posted`` after a money event of ``amount`` created or ended it:
    what the event's postings post."""
    kinds = postings(event_type, amount, pending_amount=0)
    return sum(value for kind, value in kinds if kind is PostingKind.POSTED)


def reversible(status: TransferStatus | None) -> bool:
    """Whether a transfer in ``status`` can be reversed (only a posted one can)."""
    return status is TransferStatus.POSTED


def reversed_total(amount_posted: int, amount_reversed: int, amount: int) -> int | None:
    """A reversed transfer's ``amount_reversed`` after a reversal of ``amount``, or None when
    that would reverse more than was posted."""
    total = amount_reversed + amount
    return total if total <= amount_posted else None


# --------------------------------------------------------------------------- the core's records
# Built with the typed builders (``new_*``, decision 0034): these run for every command.


def check_counters(account: AccountState) -> None:
    """Every counter in [0, INT64_MAX], and posted + pending per side too (so posting never
    overflows)."""
    debits = (account.debits_posted, account.debits_pending)
    credits = (account.credits_posted, account.credits_pending)
    if (
        debits[0] < 0
        or debits[1] < 0
        or credits[0] < 0
        or credits[1] < 0
        or debits[0] + debits[1] > INT64_MAX
        or credits[0] + credits[1] > INT64_MAX
    ):
        raise InvariantViolationError(
            f"account {account.tenant_id}/{account.account_id}: counters outside int64 "
            f"(debits {debits}, credits {credits})"
        )


def move_counters(
    debit: AccountState, credit: AccountState, *, posted: int, pending: int, sequence: int
) -> tuple[AccountState, AccountState]:
    """Add ``posted`` to both posted counters and ``pending`` (may be < 0) to both pending ones.

    The same amounts on both sides is what makes debits equal credits in every event.
    """
    new_debit = _with_counters(
        debit,
        debits_posted=debit.debits_posted + posted,
        credits_posted=debit.credits_posted,
        debits_pending=debit.debits_pending + pending,
        credits_pending=debit.credits_pending,
        sequence=sequence,
    )
    new_credit = _with_counters(
        credit,
        debits_posted=credit.debits_posted,
        credits_posted=credit.credits_posted + posted,
        debits_pending=credit.debits_pending,
        credits_pending=credit.credits_pending + pending,
        sequence=sequence,
    )
    check_counters(new_debit)
    check_counters(new_credit)
    return new_debit, new_credit


def _with_counters(
    account: AccountState,
    *,
    debits_posted: int,
    credits_posted: int,
    debits_pending: int,
    credits_pending: int,
    sequence: int,
) -> AccountState:
    # Built field by field: dataclasses.replace costs several times more on this hot path.
    return new_account_state(
        tenant_id=account.tenant_id,
        account_id=account.account_id,
        currency=account.currency,
        asset_scale=account.asset_scale,
        debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
        overdraft_limit=account.overdraft_limit,
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        credits_pending=credits_pending,
        last_sequence=sequence,
    )


def balance_of(account: AccountState) -> AccountBalance:
    return new_account_balance(
        account_id=account.account_id,
        currency=account.currency,
        debits_posted=account.debits_posted,
        credits_posted=account.credits_posted,
        debits_pending=account.debits_pending,
        credits_pending=account.credits_pending,
    )


def with_status(
    transfer: TransferState, *, status: TransferStatus, amount_posted: int, sequence: int
) -> TransferState:
    # spelled out rather than dataclasses.replace: this runs for every pending transfer's end
    return new_transfer_state(
        tenant_id=transfer.tenant_id,
        transfer_id=transfer.transfer_id,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        currency=transfer.currency,
        amount=transfer.amount,
        status=status,
        amount_posted=amount_posted,
        amount_reversed=transfer.amount_reversed,
        reverses=transfer.reverses,
        expires_at_us=transfer.expires_at_us,
        last_sequence=sequence,
    )


def reversed_by(original: TransferState, amount: int, sequence: int) -> TransferState:
    """``original`` after a reversal of ``amount`` (posted by the event at ``sequence``)."""
    total = reversed_total(original.amount_posted, original.amount_reversed, amount)
    if total is None:
        raise InvariantViolationError(f"transfer {original.transfer_id}: reversed beyond posted")
    return dataclasses.replace(original, amount_reversed=total, last_sequence=sequence)


# --------------------------------------------------------------------------- multi-leg transactions
# A transaction event does, to each posting's two accounts, what the transfer event of the same
# meaning does to its two (issue 16, decision 0040): the table above, applied posting by posting.

TRANSACTION_MEANING: Final[Mapping[str, str]] = {
    "TransactionPosted": "TransferPosted",
    "TransactionPending": "TransferPending",
    "TransactionPendingPosted": "PendingPosted",
    "TransactionPendingVoided": "PendingVoided",
    "TransactionPendingExpired": "PendingExpired",
}
TRANSACTION_EVENT_TYPES: Final = frozenset(TRANSACTION_MEANING)
# (debit account id, credit account id, added to both posted counters, added to both pending)
Movement = tuple[str, str, int, int]


def posting_movements(
    event_type: str, postings: tuple[ModelPosting, ...], pending_amounts: tuple[int, ...] = ()
) -> tuple[Movement, ...]:
    """What a transaction event does, posting by posting, in order (``counter_changes`` of the
    transfer event of the same meaning; ``pending_amounts``: a TransactionPendingPosted's)."""
    meaning = TRANSACTION_MEANING[event_type]
    if not pending_amounts and meaning in _LINEAR_MEANINGS:
        # one posting kind, of the posting's amount: ``counter_changes`` is linear in it
        posted, pending = _LINEAR_MEANINGS[meaning]
        return tuple(
            [
                (
                    posting.debit_account_id,
                    posting.credit_account_id,
                    posted * posting.amount,
                    pending * posting.amount,
                )
                for posting in postings
            ]
        )
    reserved: tuple[int | None, ...] = pending_amounts or (None,) * len(postings)
    return tuple(
        (
            posting.debit_account_id,
            posting.credit_account_id,
            *counter_changes(meaning, posting.amount, pending_amount),
        )
        for posting, pending_amount in zip(postings, reserved, strict=True)
    )


# The meanings whose postings are one kind of the event's amount: (posted, pending) per unit.
_LINEAR_MEANINGS: Final[Mapping[str, tuple[int, int]]] = {
    meaning: counter_changes(meaning, 1)
    for meaning in ("TransferPosted", "TransferPending", "PendingVoided", "PendingExpired")
}


def touched_account_ids(postings: tuple[ModelPosting, ...]) -> tuple[str, ...]:
    """Every account the postings touch, once, in first-touched order (posting 0's debit
    account, its credit account, then each later posting's new ones): the order of a
    transaction event's ``balances``."""
    touched: dict[str, None] = {}
    for posting in postings:
        touched[posting.debit_account_id] = None
        touched[posting.credit_account_id] = None
    return tuple(touched)


def move_postings(
    accounts: Mapping[str, AccountState], movements: tuple[Movement, ...], *, sequence: int
) -> dict[str, AccountState]:
    """``accounts`` (every touched one, by id, in first-touched order) after all ``movements``,
    counters checked once at the end: a transaction is one change, not N. Per currency the
    movements add as much to debits as to credits (asserted)."""
    counters: dict[str, list[int]] = {}
    for account_id, account in accounts.items():
        counters[account_id] = [
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        ]
    for debit_id, credit_id, posted, pending in movements:
        debit, credit = counters[debit_id], counters[credit_id]
        debit[0] += posted
        debit[2] += pending
        credit[1] += posted
        credit[3] += pending
    moved: dict[str, AccountState] = {}
    net: dict[str, list[int]] = {}  # per currency: debits minus credits added, posted, pending
    for account_id, account in accounts.items():
        debits_posted, credits_posted, debits_pending, credits_pending = counters[account_id]
        new = _with_counters(
            account,
            debits_posted=debits_posted,
            credits_posted=credits_posted,
            debits_pending=debits_pending,
            credits_pending=credits_pending,
            sequence=sequence,
        )
        check_counters(new)
        moved[account_id] = new
        total = net.get(account.currency)
        if total is None:
            total = net[account.currency] = [0, 0]
        total[0] += (debits_posted - account.debits_posted) - (
            credits_posted - account.credits_posted
        )
        total[1] += (debits_pending - account.debits_pending) - (
            credits_pending - account.credits_pending
        )
    _check_net_zero(net)
    return moved


def _check_net_zero(sums: dict[str, list[int]]) -> None:
    """Per currency, a transaction adds as much to debits as to credits, posted and pending:
    true of every posting by construction, asserted for the whole transaction (``sums``: per
    currency, debits minus credits added to the posted and to the pending counters)."""
    for currency, (posted, pending) in sums.items():
        if posted or pending:
            raise InvariantViolationError(
                f"a transaction moves {posted} posted, {pending} pending net in {currency}"
            )


def transaction_status_after(
    event_type: str, current: TransferStatus | None
) -> TransferStatus | None:
    """``next_status`` of a transaction: as the transfer event of the same meaning."""
    return next_status(TRANSACTION_MEANING[event_type], current)


def amounts_posted_after(event_type: str, postings: tuple[ModelPosting, ...]) -> tuple[int, ...]:
    """Per posting, what a creating or ending transaction event posts (``amount_posted_after``)."""
    meaning = TRANSACTION_MEANING[event_type]
    return tuple(amount_posted_after(meaning, posting.amount) for posting in postings)


def transaction_with(
    transaction: TransactionState,
    *,
    sequence: int,
    status: TransferStatus | None = None,
    amounts_posted: tuple[int, ...] | None = None,
    amounts_reversed: tuple[int, ...] | None = None,
) -> TransactionState:
    """``transaction`` with a new status, posted or reversed amounts, changed at ``sequence``."""
    return new_transaction_state(
        tenant_id=transaction.tenant_id,
        transaction_id=transaction.transaction_id,
        postings=transaction.postings,
        status=transaction.status if status is None else status,
        amounts_posted=transaction.amounts_posted if amounts_posted is None else amounts_posted,
        amounts_reversed=(
            transaction.amounts_reversed if amounts_reversed is None else amounts_reversed
        ),
        reverses=transaction.reverses,
        expires_at_us=transaction.expires_at_us,
        last_sequence=sequence,
    )


def transaction_reversed_by(
    original: TransactionState, postings: tuple[ModelPosting, ...], sequence: int
) -> TransactionState:
    """``original`` after a reversal whose posting ``i`` reverses its posting ``i``."""
    totals = tuple(
        reversed_total(posted, already, posting.amount)
        for posted, already, posting in zip(
            original.amounts_posted, original.amounts_reversed, postings, strict=True
        )
    )
    if any(total is None for total in totals):
        raise InvariantViolationError(
            f"transaction {original.transaction_id}: reversed beyond posted"
        )
    return transaction_with(
        original, sequence=sequence, amounts_reversed=tuple(t or 0 for t in totals)
    )
