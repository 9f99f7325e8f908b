"""The full invariant check of a partition's state (O(state)), run after every restore.

Exceptions are for bugs and corrupt state, never for bad input::

    StreamLedgerError (streamledger.errors)
    └── InvariantViolationError   debits != credits in an event, a counter outside int64, a gap
                                  or a broken link in a tenant's sequence/hash chain, an event the
                                  fold cannot apply, restored records that do not add up.
                                  The loop must stop; it never catches and skips this.
"""

from __future__ import annotations

from ledger.effects import check_counters
from ledger.monitors import account_is_credit_normal, monitor_watch_entry
from ledger.state import LedgerState
from schemas.model import TransferStatus
from streamledger.errors import InvariantViolationError


def assert_invariants(state: LedgerState) -> None:
    """Full check (O(state)): per tenant and currency debits equal credits (posted and pending),
    counters within int64, pending counters equal the open pending transfers, and no record
    newer than its tenant's head. Raises InvariantViolationError.

    Transfers a restore kept encoded are settled and unchanged since (a change decodes them):
    they hold no pending amount, and ``restore`` checked their sequences against the heads
    (``assert_not_after_heads``), which only grow."""
    sums: dict[tuple[str, str], list[int]] = {}
    for account in state._accounts.values():
        check_counters(account)
        _check_not_after_head(state, account.tenant_id, account.last_sequence, account.account_id)
        total = sums.setdefault((account.tenant_id, account.currency), [0, 0, 0, 0])
        total[0] += account.debits_posted - account.credits_posted
        total[1] += account.debits_pending - account.credits_pending
    for (tenant_id, currency), (posted, pending) in (
        (key, value[:2]) for key, value in sums.items()
    ):
        if posted or pending:
            raise InvariantViolationError(
                f"tenant {tenant_id} {currency}: balances sum to {posted} posted, {pending} pending"
            )
    reserved: dict[tuple[str, str], list[int]] = {}
    for transfer in state._transfers.values():
        _check_not_after_head(
            state, transfer.tenant_id, transfer.last_sequence, transfer.transfer_id
        )
        if transfer.status is TransferStatus.PENDING:
            reserved.setdefault((transfer.tenant_id, transfer.debit_account_id), [0, 0])[0] += (
                transfer.amount
            )
            reserved.setdefault((transfer.tenant_id, transfer.credit_account_id), [0, 0])[1] += (
                transfer.amount
            )
    _reserve_pending_transactions(state, reserved)
    _check_monitors(state)
    for key, account in state._accounts.items():
        debits, credits = reserved.get(key, (0, 0))
        if (account.debits_pending, account.credits_pending) != (debits, credits):
            raise InvariantViolationError(
                f"account {key[0]}/{key[1]}: pending counters differ from its pending transfers"
            )


def assert_not_after_heads(state: LedgerState, last_sequences: dict[str, int]) -> None:
    """Each tenant's ``last_sequences`` entry (the highest sequence among records the state
    keeps encoded, decision 0102) is not past the tenant's head. Raises
    InvariantViolationError."""
    for tenant_id, sequence in last_sequences.items():
        _check_not_after_head(state, tenant_id, sequence, "(a transfer kept encoded)")


def _check_not_after_head(state: LedgerState, tenant_id: str, sequence: int, name: str) -> None:
    head = state._heads.get(tenant_id)
    if head is None or sequence > head.last_sequence:
        raise InvariantViolationError(f"{tenant_id}/{name}: sequence {sequence} is past the head")


def _reserve_pending_transactions(
    state: LedgerState, reserved: dict[tuple[str, str], list[int]]
) -> None:
    """Add every pending transaction's postings to ``reserved`` (debits, credits per account),
    and check no transaction is newer than its tenant's head."""
    for transaction in state._transactions.values():
        tenant_id = transaction.tenant_id
        _check_not_after_head(
            state, tenant_id, transaction.last_sequence, transaction.transaction_id
        )
        if transaction.status is TransferStatus.PENDING:
            for posting in transaction.postings:
                reserved.setdefault((tenant_id, posting.debit_account_id), [0, 0])[0] += (
                    posting.amount
                )
                reserved.setdefault((tenant_id, posting.credit_account_id), [0, 0])[1] += (
                    posting.amount
                )


def _check_monitors(state: LedgerState) -> None:
    """Every monitor watches an existing account of its tenant, is no newer than its head, and
    the per-account index and per-tenant counts agree with the monitors."""
    counts: dict[str, int] = {}
    for (tenant_id, monitor_id), monitor in state._monitors.items():
        if state._accounts.get((tenant_id, monitor.account_id)) is None:
            raise InvariantViolationError(f"{tenant_id}/{monitor_id}: its account does not exist")
        _check_not_after_head(state, tenant_id, monitor.last_sequence, monitor_id)
        entry = monitor_watch_entry(monitor)
        if entry not in state.account_watch_entries(tenant_id, monitor.account_id):
            raise InvariantViolationError(f"{tenant_id}/{monitor_id}: missing from its index")
        counts[tenant_id] = counts.get(tenant_id, 0) + 1
    for (tenant_id, account_id), watched in state._account_monitors.items():
        account = state._accounts.get((tenant_id, account_id))
        if account is not None and watched.credit_normal != account_is_credit_normal(account):
            raise InvariantViolationError(
                f"{tenant_id}/{account_id}: its monitors' normal side is not the account's"
            )
    indexed = sum(len(watched.entries) for watched in state._account_monitors.values())
    live_counts = {tenant: count for tenant, count in state._tenant_monitor_counts.items() if count}
    if indexed != len(state._monitors) or live_counts != counts:
        raise InvariantViolationError("the monitor indexes do not match the monitors")
