"""An independent, deliberately simple fold of commands: what the topics must hold afterwards.

Written from DESIGN.md's rules, NOT with ``ledger``: plain dicts, one function per
command type, no fingerprints (a command's payload is compared field by field instead). It covers
what ``ledger_workload`` and ``producers.loadgen`` without expiring pending transfers generate:
overdraft limits and reversals, but no pending timeouts that pass and retention far away.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from schemas.model import Command, OpenAccount, PostPending, Transfer, VoidPending

NOT_PAYLOAD = ("tenant_id", "idempotency_key", "submitted_at_us")


@dataclass
class Account:
    currency: str
    guarded: bool  # debits must not exceed credits
    overdraft_limit: int = 0  # how far past its credits a guarded account may go
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def counters(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)


@dataclass
class Pending:
    debit: str
    credit: str
    amount: int
    status: str = "pending"


@dataclass
class Posted:
    """A posted transfer, as far as reversals need it."""

    debit: str
    credit: str
    amount: int
    reversed: int = 0


@dataclass
class ExpectedEvent:
    tenant_id: str
    sequence: int
    kind: str
    idempotency_key: str
    amount: int | None
    balances: dict[str, tuple[int, int, int, int]]


@dataclass
class ExpectedOutcome:
    status: str  # "accepted" / "rejected"
    reason: str | None
    sequences: tuple[int, ...]


@dataclass
class Tenant:
    accounts: dict[str, Account] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    transfers: set[str] = field(default_factory=set)
    posted: dict[str, Posted] = field(default_factory=dict)
    payloads: dict[str, tuple[str, dict[str, object]]] = field(default_factory=dict)
    sequence: int = 0


@dataclass
class ReferenceLedger:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    events: list[ExpectedEvent] = field(default_factory=list)
    outcomes: dict[tuple[str, str], ExpectedOutcome] = field(default_factory=dict)

    def fold(self, commands: list[Command]) -> ReferenceLedger:
        for command in commands:
            self.one(command)
        return self

    def one(self, command: Command) -> None:
        tenant = self.tenants.setdefault(command.tenant_id, Tenant())
        payload = (type(command).__name__, _payload(command))
        stored = tenant.payloads.get(command.idempotency_key)
        if stored is not None:
            return  # duplicate (same payload) or key reuse (other payload): nothing written
        tenant.payloads[command.idempotency_key] = payload
        reason = _invalid(command) or _rejection(tenant, command)
        key = (command.tenant_id, command.idempotency_key)
        if reason is not None:
            self.outcomes[key] = ExpectedOutcome("rejected", reason, ())
            return
        first = len(self.events)
        _execute(self, tenant, command)
        sequences = tuple(event.sequence for event in self.events[first:])
        self.outcomes[key] = ExpectedOutcome("accepted", None, sequences)

    def emit(
        self, tenant: Tenant, command: Command, kind: str, amount: int | None, accounts: list[str]
    ) -> None:
        tenant.sequence += 1
        balances = {name: tenant.accounts[name].counters() for name in accounts}
        self.events.append(
            ExpectedEvent(
                command.tenant_id, tenant.sequence, kind, command.idempotency_key, amount, balances
            )
        )


def _payload(command: Command) -> dict[str, object]:
    return {
        f.name: getattr(command, f.name)
        for f in dataclasses.fields(command)
        if f.name not in NOT_PAYLOAD
    }


def _invalid(command: Command) -> str | None:
    if isinstance(command, Transfer) and command.amount <= 0:
        return "invalid_command"
    return None


def _rejection(tenant: Tenant, command: Command) -> str | None:
    if isinstance(command, OpenAccount):
        return "account_exists" if command.account_id in tenant.accounts else None
    if isinstance(command, Transfer):
        return _transfer_rejection(tenant, command)
    pending = tenant.pending.get(command.transfer_id)
    if pending is None:
        return "pending_not_found"
    if pending.status != "pending":
        return "pending_already_final"
    if isinstance(command, PostPending) and (command.amount or 0) > pending.amount:
        return "amount_exceeds_pending"
    return None


def _transfer_rejection(tenant: Tenant, command: Transfer) -> str | None:
    if command.transfer_id in tenant.transfers:
        return "transfer_exists"
    debit = tenant.accounts.get(command.debit_account_id)
    credit = tenant.accounts.get(command.credit_account_id)
    if debit is None or credit is None:
        return "unknown_account"
    if debit.currency != command.currency or credit.currency != command.currency:
        return "currency_mismatch"
    if command.debit_account_id == command.credit_account_id:
        return "same_account"
    if command.reverses is not None:
        reason = _reversal_rejection(tenant, command)
        if reason is not None:
            return reason
    spent = debit.debits_posted + debit.debits_pending + command.amount
    if debit.guarded and spent > debit.credits_posted + debit.overdraft_limit:
        return "insufficient_funds"
    return None


def _reversal_rejection(tenant: Tenant, command: Transfer) -> str | None:
    """A reversal moves money back along a posted transfer, never more than was posted."""
    assert command.reverses is not None
    if command.reverses not in tenant.transfers:
        return "reversal_target_not_found"
    original = tenant.posted.get(command.reverses)
    if original is None:
        return "reversal_mismatch"  # pending, voided: nothing posted to reverse
    if (command.debit_account_id, command.credit_account_id) != (original.credit, original.debit):
        return "reversal_mismatch"
    if original.reversed + command.amount > original.amount:
        return "reversal_exceeds_original"
    return None


def _execute(ledger: ReferenceLedger, tenant: Tenant, command: Command) -> None:
    if isinstance(command, OpenAccount):
        tenant.accounts[command.account_id] = Account(
            command.currency,
            command.debits_must_not_exceed_credits,
            command.overdraft_limit or 0,
        )
        ledger.emit(tenant, command, "AccountOpened", None, [command.account_id])
    elif isinstance(command, Transfer):
        tenant.transfers.add(command.transfer_id)
        debit = tenant.accounts[command.debit_account_id]
        credit = tenant.accounts[command.credit_account_id]
        names = [command.debit_account_id, command.credit_account_id]
        if command.pending:
            debit.debits_pending += command.amount
            credit.credits_pending += command.amount
            tenant.pending[command.transfer_id] = Pending(names[0], names[1], command.amount)
            ledger.emit(tenant, command, "TransferPending", command.amount, names)
        else:
            debit.debits_posted += command.amount
            credit.credits_posted += command.amount
            tenant.posted[command.transfer_id] = Posted(names[0], names[1], command.amount)
            if command.reverses is not None:
                tenant.posted[command.reverses].reversed += command.amount
            ledger.emit(tenant, command, "TransferPosted", command.amount, names)
    else:
        _finish(ledger, tenant, command)


def _finish(ledger: ReferenceLedger, tenant: Tenant, command: PostPending | VoidPending) -> None:
    pending = tenant.pending[command.transfer_id]
    debit, credit = tenant.accounts[pending.debit], tenant.accounts[pending.credit]
    debit.debits_pending -= pending.amount
    credit.credits_pending -= pending.amount
    names = [pending.debit, pending.credit]
    if isinstance(command, PostPending):
        posted = pending.amount if command.amount is None else command.amount
        debit.debits_posted += posted
        credit.credits_posted += posted
        pending.status = "posted"
        tenant.posted[command.transfer_id] = Posted(names[0], names[1], posted)
        ledger.emit(tenant, command, "PendingPosted", posted, names)
    else:
        pending.status = "voided"
        ledger.emit(tenant, command, "PendingVoided", pending.amount, names)


# --------------------------------------------------------------------------- pending expiry
# (added for the chaos rounds, tests/chaos/rounds.py)


def expire_pending(ledger: ReferenceLedger, tenant_id: str, transfer_id: str) -> None:
    """A pending transfer's timeout passed: release its reservation, count its event.

    When stream time passes a deadline depends on wall-clock record timestamps, so the fold
    cannot place the ``PendingExpired`` event in the tenant's sequence: it is counted in
    ``tenant.sequence`` but not listed in ``ledger.events``. Callers compare the expiries apart
    (and only fold workloads where an expiry changes no other decision).
    """
    tenant = ledger.tenants[tenant_id]
    pending = tenant.pending[transfer_id]
    assert pending.status == "pending", f"{tenant_id}/{transfer_id} is {pending.status}"
    tenant.accounts[pending.debit].debits_pending -= pending.amount
    tenant.accounts[pending.credit].credits_pending -= pending.amount
    pending.status = "expired"
    tenant.sequence += 1
