"""The rules per command type: contract checks the rules rely on, and business rejections.

Each function returns the first rule a command breaks as ``(RejectReason, detail)``, in
``RejectReason``'s precedence order, or None; the detail starts with the field it concerns.
Rejections are values: nothing here raises on input.
"""

from __future__ import annotations

from typing import Final

from ledger.decisions import Rejection
from ledger.draft import Draft
from ledger.monitor_steps import monitor_rejection
from ledger.transactions import pending_transaction_rejection, transaction_rejection
from schemas.event_time import US_PER_S
from schemas.limits import first_violation
from schemas.model import (
    INT64_MAX,
    AccountState,
    Command,
    CreateMonitor,
    DeleteMonitor,
    OpenAccount,
    PostPending,
    RejectReason,
    Transfer,
    TransferStatus,
    VoidPending,
)

SCOPE_FIELDS: Final = frozenset({"tenant_id", "idempotency_key"})


# --------------------------------------------------------------------------- validation


def command_violation(command: Command) -> tuple[str, str] | None:
    """(field, reason) of the first contract violation, or None: the contract's one check
    (``schemas.limits.first_violation``, which the SDK runs too). The rules below rely on what
    it guarantees: amounts and overdraft limits in range, at most one balance flag, a timeout
    only on a pending transfer, a reversal never pending; the execution's counter checks
    (``InvariantViolationError``) stop the process if that ever stops being true."""
    return first_violation(command)


# --------------------------------------------------------------------------- rules


def _transfer_rejection(draft: Draft, command: Transfer) -> Rejection | None:
    """The first rule a Transfer breaks, in RejectReason order."""
    tenant_id = command.tenant_id
    if draft.id_taken(tenant_id, command.transfer_id):  # a transfer's or a transaction's
        return RejectReason.TRANSFER_EXISTS, f"transfer_id: {command.transfer_id!r} exists"
    debit = draft.account(tenant_id, command.debit_account_id)
    credit = draft.account(tenant_id, command.credit_account_id)
    if debit is None:
        return _unknown_account("debit_account_id", command.debit_account_id)
    if credit is None:
        return _unknown_account("credit_account_id", command.credit_account_id)
    if debit.currency != command.currency:
        return _currency_mismatch("debit_account_id", debit, command.currency)
    if credit.currency != command.currency:
        return _currency_mismatch("credit_account_id", credit, command.currency)
    if command.debit_account_id == command.credit_account_id:
        return RejectReason.SAME_ACCOUNT, "credit_account_id: equals debit_account_id"
    if command.reverses is not None:
        found = _reversal_rejection(draft, command)
        if found is not None:
            return found
    return _funds_rejection(debit, credit, command)


def _unknown_account(field: str, account_id: str) -> Rejection:
    return RejectReason.UNKNOWN_ACCOUNT, f"{field}: no account {account_id!r}"


def _currency_mismatch(field: str, account: AccountState, currency: str) -> Rejection:
    return RejectReason.CURRENCY_MISMATCH, (
        f"{field}: account {account.account_id!r} holds {account.currency}, "
        f"the transfer is in {currency}"
    )


def _reversal_rejection(draft: Draft, command: Transfer) -> Rejection | None:
    assert command.reverses is not None
    original = draft.transfer(command.tenant_id, command.reverses)
    if original is None:
        return RejectReason.REVERSAL_TARGET_NOT_FOUND, f"reverses: no transfer {command.reverses!r}"
    if original.status is not TransferStatus.POSTED:
        return RejectReason.REVERSAL_MISMATCH, (
            f"reverses: transfer {original.transfer_id!r} is {original.status.value}, not posted"
        )
    if (command.debit_account_id, command.credit_account_id) != (
        original.credit_account_id,
        original.debit_account_id,
    ):
        return RejectReason.REVERSAL_MISMATCH, (
            f"reverses: a reversal of {original.transfer_id!r} debits "
            f"{original.credit_account_id!r} and credits {original.debit_account_id!r}"
        )
    if original.amount_reversed + command.amount > original.amount_posted:
        return RejectReason.REVERSAL_EXCEEDS_ORIGINAL, (
            f"amount: {original.transfer_id!r} has "
            f"{original.amount_posted - original.amount_reversed} left to reverse"
        )
    return None


def _funds_rejection(
    debit: AccountState, credit: AccountState, command: Transfer
) -> Rejection | None:
    """Flags and overdraft limits (pending counts against them), then int64 overflow."""
    amount = command.amount
    debit_total = debit.debits_posted + debit.debits_pending + amount
    credit_total = credit.credits_posted + credit.credits_pending + amount
    if debit.debits_must_not_exceed_credits and debit_total > debit.credits_posted + (
        debit.overdraft_limit or 0
    ):
        return RejectReason.INSUFFICIENT_FUNDS, (
            f"debit_account_id: account {debit.account_id!r} would exceed its credits"
        )
    if credit.credits_must_not_exceed_debits and credit_total > credit.debits_posted + (
        credit.overdraft_limit or 0
    ):
        return RejectReason.LIMIT_EXCEEDED, (
            f"credit_account_id: account {credit.account_id!r} would exceed its debits"
        )
    if debit_total > INT64_MAX:
        return _overflow("debit_account_id", debit)
    if credit_total > INT64_MAX:
        return _overflow("credit_account_id", credit)
    return None


def _overflow(field: str, account: AccountState) -> Rejection:
    return RejectReason.OVERFLOW, f"{field}: account {account.account_id!r} would overflow"


def _pending_rejection(draft: Draft, command: PostPending | VoidPending) -> Rejection | None:
    transfer = draft.transfer(command.tenant_id, command.transfer_id)
    transaction = None if transfer else draft.transaction(command.tenant_id, command.transfer_id)
    if transaction is not None:
        return pending_transaction_rejection(command, transaction)
    if transfer is None:
        return RejectReason.PENDING_NOT_FOUND, f"transfer_id: no transfer {command.transfer_id!r}"
    if transfer.status is TransferStatus.EXPIRED:
        return RejectReason.PENDING_EXPIRED, f"transfer_id: {command.transfer_id!r} has expired"
    if transfer.status is not TransferStatus.PENDING:
        return RejectReason.PENDING_ALREADY_FINAL, (
            f"transfer_id: {command.transfer_id!r} is already {transfer.status.value}"
        )
    amount = command.amount if isinstance(command, PostPending) else None
    if amount is not None and amount > transfer.amount:
        return RejectReason.AMOUNT_EXCEEDS_PENDING, (
            f"amount: {amount} exceeds the pending amount {transfer.amount}"
        )
    return None


def rule_rejection(draft: Draft, command: Command, effective_at_us: int) -> Rejection | None:
    if isinstance(command, OpenAccount):
        if draft.account(command.tenant_id, command.account_id) is not None:
            return RejectReason.ACCOUNT_EXISTS, f"account_id: {command.account_id!r} exists"
        return None
    if isinstance(command, Transfer):
        found = _transfer_rejection(draft, command)
        timeout = command.pending_timeout_s
        if (
            found is None
            and timeout is not None
            and effective_at_us + timeout * US_PER_S > INT64_MAX
        ):
            return RejectReason.OVERFLOW, "pending_timeout_s: the expiry time would overflow"
        return found
    if isinstance(command, PostPending | VoidPending):
        return _pending_rejection(draft, command)
    if isinstance(command, CreateMonitor | DeleteMonitor):
        return monitor_rejection(draft, command)
    return transaction_rejection(draft, command, effective_at_us)


def invalid(violation: tuple[str, str]) -> Rejection:
    """The ``INVALID_COMMAND`` rejection of a contract violation (field, reason)."""
    return RejectReason.INVALID_COMMAND, f"{violation[0]}: {violation[1]}"
