"""Multi-leg transactions (issue 16, decisions 0040/0041): rules, execution and fold.

A ``PostTransaction`` moves money along 1..``postings_max`` postings, all or nothing, as one
event. What its events do to each posting's accounts comes from ``ledger.effects`` (the
transfer event of the same meaning, posting by posting). The rules (decision 0040):

* reasons in ``RejectReason`` order, and within a reason the first posting that breaks it; the
  detail names it: ``"postings[3].debit_account_id: ..."``;
* funds, limits and overflow are checked on the **net** effect of all postings on each account
  (its counters after the whole transaction), never after each posting; the posting named is
  the first that debits (funds, debit overflow) or credits (limits, credit overflow) it;
* a transaction id shares the tenant's namespace with transfer ids; ``PostPending`` (full only)
  and ``VoidPending`` name a pending transaction by it; expiry releases every posting;
* a reversal names a posted transaction and has one posting per original posting, in the same
  order, accounts swapped, same currency, at most what is left to reverse of it.
"""

from __future__ import annotations

from typing import Final, cast

from ledger.decisions import Rejection
from ledger.draft import Draft, event_header
from ledger.effects import (
    amounts_posted_after,
    move_postings,
    posting_movements,
    transaction_reversed_by,
    transaction_status_after,
    transaction_with,
)
from ledger.state import LedgerState
from schemas._generated_records import (
    new_transaction_pending_expired_with_header,
    new_transaction_pending_posted_with_header,
    new_transaction_pending_voided_with_header,
    new_transaction_pending_with_header,
    new_transaction_posted_with_header,
    new_transaction_state,
)
from schemas.event_time import US_PER_S
from schemas.limits import POSTINGS_MAX
from schemas.model import (
    INT64_MAX,
    AccountState,
    Posting,
    PostPending,
    PostTransaction,
    RejectReason,
    TransactionPending,
    TransactionPendingExpired,
    TransactionPendingPosted,
    TransactionPendingVoided,
    TransactionPosted,
    TransactionState,
    TransferStatus,
    VoidPending,
)
from streamledger.errors import InvariantViolationError

PARTIAL_POST_DETAIL = (
    "amount: a pending transaction is posted in full (leave amount out); posting part of a "
    "transaction is not supported"
)


# --------------------------------------------------------------------------- rules


def transaction_rejection(
    draft: Draft, command: PostTransaction, effective_at_us: int
) -> Rejection | None:
    """The first rule a PostTransaction breaks, in RejectReason order, then posting order."""
    tenant_id = command.tenant_id
    if draft.id_taken(tenant_id, command.transaction_id):
        return RejectReason.TRANSFER_EXISTS, f"transaction_id: {command.transaction_id!r} exists"
    accounts = _touched_or_missing(draft, command)
    found = _account_rejection(accounts, command)
    if found is not None:
        return found
    if command.reverses is not None:
        found = _reversal_rejection(draft, command)
        if found is not None:
            return found
    # every account exists (UNKNOWN_ACCOUNT is checked): ``accounts`` is ``_touched_accounts``
    existing = cast(dict[str, AccountState], accounts)
    found = net_funds_rejection(existing, command.postings, pending=command.pending)
    timeout = command.pending_timeout_s
    if found is None and timeout is not None and effective_at_us + timeout * US_PER_S > INT64_MAX:
        return RejectReason.OVERFLOW, "pending_timeout_s: the expiry time would overflow"
    return found


def _touched_or_missing(draft: Draft, command: PostTransaction) -> dict[str, AccountState | None]:
    """Every account the postings name, in first-touched order (``touched_account_ids``), each
    looked up once (a payout names its source in every posting); None: no such account."""
    tenant_id = command.tenant_id
    found: dict[str, AccountState | None] = {}
    for posting in command.postings:
        debit_id, credit_id = posting.debit_account_id, posting.credit_account_id
        if debit_id not in found:
            found[debit_id] = draft.account(tenant_id, debit_id)
        if credit_id not in found:
            found[credit_id] = draft.account(tenant_id, credit_id)
    return found


def _account_rejection(
    found: dict[str, AccountState | None], command: PostTransaction
) -> Rejection | None:
    """UNKNOWN_ACCOUNT, then CURRENCY_MISMATCH, then SAME_ACCOUNT: each over every posting
    (``found``: ``_touched_or_missing``)."""
    postings = command.postings
    if None in found.values():
        for index, posting in enumerate(postings):
            for side, account_id in (
                ("debit_account_id", posting.debit_account_id),
                ("credit_account_id", posting.credit_account_id),
            ):
                if found[account_id] is None:
                    return RejectReason.UNKNOWN_ACCOUNT, (
                        f"postings[{index}].{side}: no account {account_id!r}"
                    )
    for index, posting in enumerate(postings):
        currency = posting.currency
        debit, credit = found[posting.debit_account_id], found[posting.credit_account_id]
        assert debit is not None and credit is not None
        if debit.currency != currency or credit.currency != currency:
            side, account = (
                ("debit_account_id", debit)
                if debit.currency != currency
                else ("credit_account_id", credit)
            )
            return RejectReason.CURRENCY_MISMATCH, (
                f"postings[{index}].{side}: account {account.account_id!r} holds "
                f"{account.currency}, the posting is in {currency}"
            )
    for index, posting in enumerate(postings):
        if posting.debit_account_id == posting.credit_account_id:
            return RejectReason.SAME_ACCOUNT, (
                f"postings[{index}].credit_account_id: equals debit_account_id"
            )
    return None


def _reversal_rejection(draft: Draft, command: PostTransaction) -> Rejection | None:
    assert command.reverses is not None
    original = draft.transaction(command.tenant_id, command.reverses)
    if original is None:
        return RejectReason.REVERSAL_TARGET_NOT_FOUND, (
            f"reverses: no transaction {command.reverses!r}"
        )
    name = original.transaction_id
    if original.status is not TransferStatus.POSTED:
        return RejectReason.REVERSAL_MISMATCH, (
            f"reverses: transaction {name!r} is {original.status.value}, not posted"
        )
    if len(command.postings) != len(original.postings):
        return RejectReason.REVERSAL_MISMATCH, (
            f"reverses: a reversal of {name!r} has one posting per original posting "
            f"({len(original.postings)})"
        )
    for index, (posting, old) in enumerate(zip(command.postings, original.postings, strict=True)):
        if (posting.debit_account_id, posting.credit_account_id, posting.currency) != (
            old.credit_account_id,
            old.debit_account_id,
            old.currency,
        ):
            return RejectReason.REVERSAL_MISMATCH, (
                f"postings[{index}]: a reversal of {name!r} debits {old.credit_account_id!r} "
                f"and credits {old.debit_account_id!r} in {old.currency}"
            )
    for index, posting in enumerate(command.postings):
        left = original.amounts_posted[index] - original.amounts_reversed[index]
        if posting.amount > left:
            return RejectReason.REVERSAL_EXCEEDS_ORIGINAL, (
                f"postings[{index}].amount: posting {index} of {name!r} has {left} left to reverse"
            )
    return None


def net_funds_rejection(
    accounts: dict[str, AccountState], postings: tuple[Posting, ...], *, pending: bool
) -> Rejection | None:
    """Balance flags, overdraft limits and int64 on each account's counters after the whole
    transaction (net). As for a transfer, pending debits count against a flag and pending
    credits do not help; a posted transaction's own credits do. Reasons in RejectReason order,
    within one the lowest posting index (the account's first debit or credit)."""
    # account id -> [debited, credited, first debiting posting, first crediting posting]
    moved: dict[str, list[int]] = {}
    for index, posting in enumerate(postings):
        amount = posting.amount
        debit = moved.get(posting.debit_account_id)
        if debit is None:
            debit = moved[posting.debit_account_id] = [0, 0, index, -1]
        elif debit[2] < 0:
            debit[2] = index
        debit[0] += amount
        credit = moved.get(posting.credit_account_id)
        if credit is None:
            credit = moved[posting.credit_account_id] = [0, 0, -1, index]
        elif credit[3] < 0:
            credit[3] = index
        credit[1] += amount
    failures: list[tuple[int, int, int, Rejection]] = []
    own = 0 if pending else 1  # a posted transaction's own credits/debits count
    for account_id, account in accounts.items():
        debits, credits, first_debit, first_credit = moved.get(account_id) or (0, 0, -1, -1)
        debit_total = account.debits_posted + account.debits_pending + debits
        credit_total = account.credits_posted + account.credits_pending + credits
        if debits and account.debits_must_not_exceed_credits:
            funds = account.credits_posted + own * credits + (account.overdraft_limit or 0)
            if debit_total > funds:
                failures.append(_failure(1, first_debit, "debit", account))
        if credits and account.credits_must_not_exceed_debits:
            room = account.debits_posted + own * debits + (account.overdraft_limit or 0)
            if credit_total > room:
                failures.append(_failure(2, first_credit, "credit", account))
        if debit_total > INT64_MAX:
            failures.append(_failure(3, first_debit, "debit", account))
        if credit_total > INT64_MAX:
            failures.append(_failure(3, first_credit, "credit", account))
    return min(failures)[3] if failures else None


SIDE_ORDER: Final = {"debit": 0, "credit": 1}  # one posting failing on both sides names its debit
_NET_FAILURES = {
    1: (RejectReason.INSUFFICIENT_FUNDS, "would exceed its credits"),
    2: (RejectReason.LIMIT_EXCEEDED, "would exceed its debits"),
    3: (RejectReason.OVERFLOW, "would overflow"),
}


def _failure(
    rank: int, index: int, side: str, account: AccountState
) -> tuple[int, int, int, Rejection]:
    """(reason rank, posting index, side: debit before credit, the rejection): the smallest is
    the one named (never a comparison of detail strings)."""
    reason, what = _NET_FAILURES[rank]
    detail = f"postings[{index}].{side}_account_id: account {account.account_id!r} {what}"
    return rank, index, SIDE_ORDER[side], (reason, detail)


def pending_transaction_rejection(
    command: PostPending | VoidPending, transaction: TransactionState
) -> Rejection | None:
    """PostPending/VoidPending of a transaction (named by its id in ``transfer_id``)."""
    name = transaction.transaction_id
    if transaction.status is TransferStatus.EXPIRED:
        return RejectReason.PENDING_EXPIRED, f"transfer_id: transaction {name!r} has expired"
    if transaction.status is not TransferStatus.PENDING:
        return RejectReason.PENDING_ALREADY_FINAL, (
            f"transfer_id: transaction {name!r} is already {transaction.status.value}"
        )
    if isinstance(command, PostPending) and command.amount is not None:
        return RejectReason.INVALID_COMMAND, PARTIAL_POST_DETAIL
    return None


# --------------------------------------------------------------------------- execution


def _touched_accounts(
    draft: Draft, tenant_id: str, postings: tuple[Posting, ...]
) -> dict[str, AccountState]:
    """Every account the postings touch, by id, in first-touched order (``touched_account_ids``),
    each looked up once; all exist (the rules checked it, the fold checks it)."""
    accounts: dict[str, AccountState] = {}
    for posting in postings:
        for account_id in (posting.debit_account_id, posting.credit_account_id):
            if account_id in accounts:
                continue
            account = draft.account(tenant_id, account_id)
            if account is None:
                raise InvariantViolationError(
                    f"{tenant_id}/{account_id}: a posting's account is missing"
                )
            accounts[account_id] = account
    return accounts


def execute_transaction(draft: Draft, command: PostTransaction, effective_at_us: int) -> None:
    """The event of an accepted PostTransaction: every posting at once."""
    tenant_id = command.tenant_id
    link = draft.next_link(tenant_id)
    sequence = link[0]
    event_type = "TransactionPending" if command.pending else "TransactionPosted"
    accounts = _touched_accounts(draft, tenant_id, command.postings)
    movements = posting_movements(event_type, command.postings)
    moved = move_postings(accounts, movements, sequence=sequence)
    timeout = command.pending_timeout_s
    expires_at_us = None if timeout is None else effective_at_us + timeout * US_PER_S
    status = transaction_status_after(event_type, None)
    assert status is not None
    transaction = new_transaction_state(
        tenant_id=tenant_id,
        transaction_id=command.transaction_id,
        postings=command.postings,
        status=status,
        amounts_posted=amounts_posted_after(event_type, command.postings),
        amounts_reversed=(0,) * len(command.postings),
        reverses=command.reverses,
        expires_at_us=expires_at_us,
        last_sequence=sequence,
    )
    header = event_header(
        tenant_id, link, command, effective_at_us, tuple(moved.values()), actor=draft.actor
    )
    for account in moved.values():
        draft.put_account(account)
    draft.put_transaction(transaction)
    if command.reverses is not None:
        original = draft.transaction(tenant_id, command.reverses)
        assert original is not None
        draft.put_transaction(transaction_reversed_by(original, command.postings, sequence))
    draft.record(
        new_transaction_pending_with_header(
            header,
            transaction_id=command.transaction_id,
            postings=command.postings,
            expires_at_us=expires_at_us,
        )
        if command.pending
        else new_transaction_posted_with_header(
            header,
            transaction_id=command.transaction_id,
            postings=command.postings,
            reverses=command.reverses,
        )
    )


def post_pending_transaction(draft: Draft, command: PostPending, effective_at_us: int) -> None:
    """Post every posting of a pending transaction in full; its reservations are released."""
    transaction = draft.transaction(command.tenant_id, command.transfer_id)
    assert transaction is not None and transaction.status is TransferStatus.PENDING
    postings = transaction.postings
    reserved = tuple(posting.amount for posting in postings)
    event_type = "TransactionPendingPosted"
    link = draft.next_link(command.tenant_id)
    accounts = _touched_accounts(draft, command.tenant_id, postings)
    movements = posting_movements(event_type, postings, reserved)
    moved = move_postings(accounts, movements, sequence=link[0])
    header = event_header(
        command.tenant_id, link, command, effective_at_us, tuple(moved.values()), actor=draft.actor
    )
    for account in moved.values():
        draft.put_account(account)
    draft.put_transaction(
        transaction_with(
            transaction,
            sequence=link[0],
            status=transaction_status_after(event_type, TransferStatus.PENDING),
            amounts_posted=amounts_posted_after(event_type, postings),
        )
    )
    draft.record(
        new_transaction_pending_posted_with_header(
            header,
            transaction_id=transaction.transaction_id,
            postings=postings,
            pending_amounts=reserved,
        )
    )


def release_transaction(
    draft: Draft,
    tenant_id: str,
    transaction_id: str,
    *,
    cause: VoidPending | None,
    effective_at_us: int,
    status: TransferStatus,
) -> None:
    """Void or expire a pending transaction: give every posting's reservation back.

    ``cause``: the ``VoidPending``, or ``None`` for an expiry (caused by time)."""
    transaction = draft.transaction(tenant_id, transaction_id)
    assert transaction is not None and transaction.status is TransferStatus.PENDING
    event_type = (
        "TransactionPendingExpired"
        if status is TransferStatus.EXPIRED
        else "TransactionPendingVoided"
    )
    link = draft.next_link(tenant_id)
    accounts = _touched_accounts(draft, tenant_id, transaction.postings)
    movements = posting_movements(event_type, transaction.postings)
    moved = move_postings(accounts, movements, sequence=link[0])
    header = event_header(
        tenant_id, link, cause, effective_at_us, tuple(moved.values()), actor=draft.actor
    )
    for account in moved.values():
        draft.put_account(account)
    draft.put_transaction(
        transaction_with(
            transaction,
            sequence=link[0],
            status=transaction_status_after(event_type, TransferStatus.PENDING),
            amounts_posted=amounts_posted_after(event_type, transaction.postings),
        )
    )
    draft.record(
        new_transaction_pending_expired_with_header(
            header, transaction_id=transaction_id, postings=transaction.postings
        )
        if status is TransferStatus.EXPIRED
        else new_transaction_pending_voided_with_header(
            header, transaction_id=transaction_id, postings=transaction.postings
        )
    )


# --------------------------------------------------------------------------- fold

TransactionEvent = (
    TransactionPosted
    | TransactionPending
    | TransactionPendingPosted
    | TransactionPendingVoided
    | TransactionPendingExpired
)
TRANSACTION_EVENT_CLASSES: Final = (
    TransactionPosted,
    TransactionPending,
    TransactionPendingPosted,
    TransactionPendingVoided,
    TransactionPendingExpired,
)


def _fold_error(event: TransactionEvent, problem: str) -> InvariantViolationError:
    return InvariantViolationError(f"event {event.event_id}: {problem}")


def fold_transaction(
    state: LedgerState, event: TransactionEvent
) -> tuple[list[AccountState], list[TransactionState]]:
    """The accounts (first-touched order) and transactions a logged transaction event changes,
    checked against ``state`` as the fold checks a transfer event."""
    event_type = type(event).__name__
    tenant_id = event.tenant_id
    existing = state.transaction(tenant_id, event.transaction_id)
    status = transaction_status_after(event_type, None if existing is None else existing.status)
    creating = isinstance(event, TransactionPosted | TransactionPending)
    if status is None or (creating and state.transfer(tenant_id, event.transaction_id)):
        raise _fold_error(event, f"transaction {event.transaction_id!r} cannot take this event")
    accounts = _fold_accounts(state, event)
    reserved = event.pending_amounts if isinstance(event, TransactionPendingPosted) else ()
    if existing is not None:
        _check_ending(event, existing)
    movements = posting_movements(event_type, event.postings, reserved)
    moved = move_postings(accounts, movements, sequence=event.sequence)
    posted = amounts_posted_after(event_type, event.postings)
    if existing is not None:
        return list(moved.values()), [
            transaction_with(
                existing, sequence=event.sequence, status=status, amounts_posted=posted
            )
        ]
    reverses = event.reverses if isinstance(event, TransactionPosted) else None
    transaction = new_transaction_state(
        tenant_id=tenant_id,
        transaction_id=event.transaction_id,
        postings=event.postings,
        status=status,
        amounts_posted=posted,
        amounts_reversed=(0,) * len(event.postings),
        reverses=reverses,
        expires_at_us=event.expires_at_us if isinstance(event, TransactionPending) else None,
        last_sequence=event.sequence,
    )
    transactions = [transaction]
    if reverses is not None:
        original = state.transaction(tenant_id, reverses)
        if original is None or original.status is not TransferStatus.POSTED:
            raise _fold_error(event, f"reverses {reverses!r}, which is not a posted transaction")
        transactions.append(transaction_reversed_by(original, event.postings, event.sequence))
    return list(moved.values()), transactions


def _fold_accounts(state: LedgerState, event: TransactionEvent) -> dict[str, AccountState]:
    """Every account the event's postings touch, first-touched order; each posting between two
    different existing accounts of its currency, with an amount in range."""
    if not 1 <= len(event.postings) <= POSTINGS_MAX:
        raise _fold_error(event, f"{len(event.postings)} postings")
    accounts: dict[str, AccountState] = {}
    for posting in event.postings:
        for account_id in (posting.debit_account_id, posting.credit_account_id):
            account = state.account(event.tenant_id, account_id)
            if account is None or account.currency != posting.currency:
                raise _fold_error(
                    event, f"account {account_id!r} is missing or not {posting.currency}"
                )
            accounts.setdefault(account_id, account)
        if posting.debit_account_id == posting.credit_account_id:
            raise _fold_error(event, "a posting debits and credits one account")
        if not 0 < posting.amount <= INT64_MAX:
            raise _fold_error(event, f"amount {posting.amount} out of range")
    return accounts


def _check_ending(event: TransactionEvent, pending: TransactionState) -> None:
    """An event that ends a pending transaction carries its postings (posted in full)."""
    if isinstance(event, TransactionPendingPosted) and event.pending_amounts != tuple(
        posting.amount for posting in pending.postings
    ):
        raise _fold_error(event, "pending amounts differ from the pending transaction's")
    if event.postings != pending.postings:
        raise _fold_error(event, "postings differ from the pending transaction's")
    if isinstance(event, TransactionPendingExpired) and (
        pending.expires_at_us is None or pending.expires_at_us > event.effective_at_us
    ):
        raise _fold_error(event, "expired before its expiry time")
