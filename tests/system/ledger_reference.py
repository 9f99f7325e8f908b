"""An independent, deliberately simple fold of commands: what the topics must hold afterwards.

Written from DESIGN.md's rules and docs/contract.md, NOT with ``ledger``: plain dicts, one
function per command type, no fingerprints (a command's payload is compared field by field
instead). It covers what ``ledger_workload`` and ``producers.loadgen`` without expiring pending
transfers generate: overdraft limits and reversals, but no pending timeouts that pass (the
caller places expiries, ``expire_pending``) and retention far away.

Multi-leg transactions (issue 16; contract.md "Multi-leg transactions", decisions 0040/0041,
written again here from those words, decision 0067): all postings or none; reasons in
precedence order and within a reason the first posting that breaks it (``ExpectedOutcome.named``
is the field the rejection's detail names, ``postings[3].debit_account_id``); funds, limits and
overflow on each account's counters after the whole transaction; ``PostPending`` of a pending
transaction posts every posting in full (an ``amount`` is ``invalid_command``); ``VoidPending``
and expiry release every posting; a reversal has one posting per original posting, accounts
swapped, at most what is left of each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final

from schemas.model import (
    Command,
    OpenAccount,
    PostPending,
    PostTransaction,
    Transfer,
    VoidPending,
)

NOT_PAYLOAD = ("tenant_id", "idempotency_key", "submitted_at_us")
POSTINGS_MAX: Final = 64  # contract.md Limits: postings_max
COUNTER_MAX: Final = 2**63 - 1  # a balance counter is a signed 64-bit integer


@dataclass
class Account:
    currency: str
    guarded: bool  # debits must not exceed credits
    overdraft_limit: int = 0  # how far past its credits a guarded account may go
    credit_guarded: bool = False  # credits must not exceed debits (by overdraft_limit)
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
class Leg:
    """One posting of a transaction, as the fold needs it."""

    debit: str
    credit: str
    amount: int
    currency: str


@dataclass
class Transaction:
    legs: list[Leg]
    status: str  # "pending" / "posted" / "voided" / "expired"
    reversed: list[int] = field(default_factory=list)  # per leg, of a posted transaction


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
    named: str | None = None  # the field the detail names; set for transaction rejections


@dataclass
class Tenant:
    accounts: dict[str, Account] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    transfers: set[str] = field(default_factory=set)
    posted: dict[str, Posted] = field(default_factory=dict)
    transactions: dict[str, Transaction] = field(default_factory=dict)
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
        found = _invalid(command) or _rejection(tenant, command)
        key = (command.tenant_id, command.idempotency_key)
        if found is not None:
            reason, named = found if isinstance(found, tuple) else (found, None)
            self.outcomes[key] = ExpectedOutcome("rejected", reason, (), named)
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


Found = str | tuple[str, str] | None  # a reason, or a reason and the field its detail names


def _invalid(command: Command) -> Found:
    if isinstance(command, Transfer) and command.amount <= 0:
        return "invalid_command"
    if isinstance(command, PostTransaction):
        if not 1 <= len(command.postings) <= POSTINGS_MAX:
            return "invalid_command", "postings"
        for index, posting in enumerate(command.postings):
            if posting.amount <= 0:
                return "invalid_command", f"postings[{index}].amount"
    return None


def _rejection(tenant: Tenant, command: Command) -> Found:
    if isinstance(command, OpenAccount):
        return "account_exists" if command.account_id in tenant.accounts else None
    if isinstance(command, Transfer):
        return _transfer_rejection(tenant, command)
    if isinstance(command, PostTransaction):
        return _transaction_rejection(tenant, command)
    if not isinstance(command, PostPending | VoidPending):
        raise NotImplementedError(f"the reference fold does not decide {type(command).__name__}")
    if command.transfer_id in tenant.transactions:
        return _finish_transaction_rejection(tenant.transactions[command.transfer_id], command)
    pending = tenant.pending.get(command.transfer_id)
    if pending is None:
        return "pending_not_found"
    if pending.status == "expired":
        return "pending_expired"
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
    received = credit.credits_posted + credit.credits_pending + command.amount
    if credit.credit_guarded and received > credit.debits_posted + credit.overdraft_limit:
        return "limit_exceeded"
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
            command.credits_must_not_exceed_debits,
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
    elif isinstance(command, PostTransaction):
        _execute_transaction(ledger, tenant, command)
    elif not isinstance(command, PostPending | VoidPending):
        raise NotImplementedError(f"the reference fold does not decide {type(command).__name__}")
    elif command.transfer_id in tenant.transactions:
        _finish_transaction(ledger, tenant, command)
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
    """A pending transfer's or transaction's timeout passed: release its reservation, count its
    event.

    When stream time passes a deadline depends on wall-clock record timestamps, so the fold
    cannot place the ``PendingExpired`` event in the tenant's sequence: it is counted in
    ``tenant.sequence`` but not listed in ``ledger.events``. Callers compare the expiries apart
    (and only fold workloads where an expiry changes no other decision).
    """
    tenant = ledger.tenants[tenant_id]
    if transfer_id in tenant.transactions:
        transaction = tenant.transactions[transfer_id]
        assert transaction.status == "pending", f"{tenant_id}/{transfer_id} is {transaction.status}"
        _release(tenant, transaction.legs)
        transaction.status = "expired"
        tenant.sequence += 1
        return
    pending = tenant.pending[transfer_id]
    assert pending.status == "pending", f"{tenant_id}/{transfer_id} is {pending.status}"
    tenant.accounts[pending.debit].debits_pending -= pending.amount
    tenant.accounts[pending.credit].credits_pending -= pending.amount
    pending.status = "expired"
    tenant.sequence += 1


# --------------------------------------------------------------------------- transactions
# contract.md "Multi-leg transactions" and "Rule precedence", decisions 0040/0041 (issue 16)


def _transaction_rejection(tenant: Tenant, command: PostTransaction) -> Found:
    """Reasons in precedence order; within one, the first posting, debit side first."""
    if command.transaction_id in tenant.transfers:
        return "transfer_exists", "transaction_id"
    legs = [(index, posting) for index, posting in enumerate(command.postings)]
    sides = [
        (index, side, account_id, posting.currency)
        for index, posting in legs
        for side, account_id in (
            ("debit_account_id", posting.debit_account_id),
            ("credit_account_id", posting.credit_account_id),
        )
    ]
    for index, side, account_id, _ in sides:
        if account_id not in tenant.accounts:
            return "unknown_account", f"postings[{index}].{side}"
    for index, side, account_id, currency in sides:
        if tenant.accounts[account_id].currency != currency:
            return "currency_mismatch", f"postings[{index}].{side}"
    for index, posting in legs:
        if posting.debit_account_id == posting.credit_account_id:
            return "same_account", f"postings[{index}].credit_account_id"
    if command.reverses is not None:
        found = _transaction_reversal_rejection(tenant, command)
        if found is not None:
            return found
    return _net_rejection(tenant, command)


def _transaction_reversal_rejection(tenant: Tenant, command: PostTransaction) -> Found:
    assert command.reverses is not None
    original = tenant.transactions.get(command.reverses)
    if original is None:
        return "reversal_target_not_found", "reverses"
    if original.status != "posted" or len(original.legs) != len(command.postings):
        return "reversal_mismatch", "reverses"
    for index, (leg, posting) in enumerate(zip(original.legs, command.postings, strict=True)):
        swapped = (posting.debit_account_id, posting.credit_account_id) == (leg.credit, leg.debit)
        if not swapped or posting.currency != leg.currency:
            return "reversal_mismatch", f"postings[{index}]"
    for index, (leg, posting) in enumerate(zip(original.legs, command.postings, strict=True)):
        if original.reversed[index] + posting.amount > leg.amount:
            return "reversal_exceeds_original", f"postings[{index}].amount"
    return None


@dataclass
class NetEffect:
    """What one transaction does to one account, summed over its postings."""

    debits: int = 0
    credits: int = 0
    first_debit: int | None = None  # index of the first posting debiting the account
    first_credit: int | None = None


def _net_effects(command: PostTransaction) -> dict[str, NetEffect]:
    effects: dict[str, NetEffect] = {}
    for index, posting in enumerate(command.postings):
        debit = effects.setdefault(posting.debit_account_id, NetEffect())
        debit.debits += posting.amount
        debit.first_debit = index if debit.first_debit is None else debit.first_debit
        credit = effects.setdefault(posting.credit_account_id, NetEffect())
        credit.credits += posting.amount
        credit.first_credit = index if credit.first_credit is None else credit.first_credit
    return effects


def _net_rejection(tenant: Tenant, command: PostTransaction) -> Found:
    """Funds, then limits, then overflow, each on the counters after every posting; the posting
    named is the account's first debiting (funds, debit overflow) or crediting one."""
    funds: list[int] = []
    limits: list[int] = []
    overflow: list[tuple[int, int]] = []  # (posting, 0 debit side / 1 credit side)
    for account_id, effect in _net_effects(command).items():
        account = tenant.accounts[account_id]
        posted_credits = account.credits_posted + (0 if command.pending else effect.credits)
        posted_debits = account.debits_posted + (0 if command.pending else effect.debits)
        debits = account.debits_posted + account.debits_pending + effect.debits
        credits = account.credits_posted + account.credits_pending + effect.credits
        if effect.first_debit is not None:
            if account.guarded and debits > posted_credits + account.overdraft_limit:
                funds.append(effect.first_debit)
            if debits > COUNTER_MAX:
                overflow.append((effect.first_debit, 0))
        if effect.first_credit is not None:
            if account.credit_guarded and credits > posted_debits + account.overdraft_limit:
                limits.append(effect.first_credit)
            if credits > COUNTER_MAX:
                overflow.append((effect.first_credit, 1))
    if funds:
        return "insufficient_funds", f"postings[{min(funds)}].debit_account_id"
    if limits:
        return "limit_exceeded", f"postings[{min(limits)}].credit_account_id"
    if overflow:
        index, side = min(overflow)
        return "overflow", f"postings[{index}].{('debit', 'credit')[side]}_account_id"
    return None


def _finish_transaction_rejection(
    transaction: Transaction, command: PostPending | VoidPending
) -> Found:
    if transaction.status == "expired":
        return "pending_expired", "transfer_id"
    if transaction.status != "pending":
        return "pending_already_final", "transfer_id"
    if isinstance(command, PostPending) and command.amount is not None:
        return "invalid_command", "amount"  # a pending transaction is posted in full
    return None


def _touched(legs: list[Leg]) -> list[str]:
    """Every account the legs touch, once, in first-touched order (the events' balances)."""
    return list(dict.fromkeys(name for leg in legs for name in (leg.debit, leg.credit)))


def _execute_transaction(ledger: ReferenceLedger, tenant: Tenant, command: PostTransaction) -> None:
    legs = [
        Leg(p.debit_account_id, p.credit_account_id, p.amount, p.currency) for p in command.postings
    ]
    tenant.transfers.add(command.transaction_id)
    for leg in legs:
        debit, credit = tenant.accounts[leg.debit], tenant.accounts[leg.credit]
        if command.pending:
            debit.debits_pending += leg.amount
            credit.credits_pending += leg.amount
        else:
            debit.debits_posted += leg.amount
            credit.credits_posted += leg.amount
    status = "pending" if command.pending else "posted"
    tenant.transactions[command.transaction_id] = Transaction(legs, status, [0] * len(legs))
    if command.reverses is not None:
        original = tenant.transactions[command.reverses]
        for index, leg in enumerate(legs):
            original.reversed[index] += leg.amount
    kind = "TransactionPending" if command.pending else "TransactionPosted"
    ledger.emit(tenant, command, kind, None, _touched(legs))


def _release(tenant: Tenant, legs: list[Leg]) -> None:
    for leg in legs:
        tenant.accounts[leg.debit].debits_pending -= leg.amount
        tenant.accounts[leg.credit].credits_pending -= leg.amount


def _finish_transaction(
    ledger: ReferenceLedger, tenant: Tenant, command: PostPending | VoidPending
) -> None:
    transaction = tenant.transactions[command.transfer_id]
    _release(tenant, transaction.legs)
    if isinstance(command, PostPending):
        for leg in transaction.legs:
            tenant.accounts[leg.debit].debits_posted += leg.amount
            tenant.accounts[leg.credit].credits_posted += leg.amount
        transaction.status = "posted"
        kind = "TransactionPendingPosted"
    else:
        transaction.status = "voided"
        kind = "TransactionPendingVoided"
    ledger.emit(tenant, command, kind, None, _touched(transaction.legs))
