"""Small builders for the ledger core's tests: commands with defaults, and a clocked ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ledger
from processors.partition_ledger import WIRE_FORMAT
from schemas.model import (
    AccountState,
    Command,
    Event,
    OpenAccount,
    PostPending,
    StateRecord,
    Transfer,
    VoidPending,
)

T0_US = 1_700_000_000_000_000
SECOND_US = 1_000_000


def open_account(
    account_id: str, *, tenant: str = "acme", key: str | None = None, **fields: Any
) -> OpenAccount:
    values: dict[str, Any] = {"currency": "USD", "asset_scale": 2} | fields
    return OpenAccount(
        tenant_id=tenant,
        idempotency_key=key or f"open-{account_id}",
        submitted_at_us=T0_US,
        account_id=account_id,
        **values,
    )


def transfer(
    transfer_id: str,
    debit: str,
    credit: str,
    amount: int,
    *,
    tenant: str = "acme",
    key: str | None = None,
    **fields: Any,
) -> Transfer:
    values: dict[str, Any] = {"currency": "USD"} | fields
    return Transfer(
        tenant_id=tenant,
        idempotency_key=key or f"transfer-{transfer_id}",
        submitted_at_us=T0_US,
        transfer_id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        **values,
    )


def post_pending(
    transfer_id: str, amount: int | None = None, *, tenant: str = "acme", key: str | None = None
) -> PostPending:
    return PostPending(
        tenant_id=tenant,
        idempotency_key=key or f"post-{transfer_id}",
        submitted_at_us=T0_US,
        transfer_id=transfer_id,
        amount=amount,
    )


def void_pending(transfer_id: str, *, tenant: str = "acme", key: str | None = None) -> VoidPending:
    return VoidPending(
        tenant_id=tenant,
        idempotency_key=key or f"void-{transfer_id}",
        submitted_at_us=T0_US,
        transfer_id=transfer_id,
    )


@dataclass
class Ledger:
    """A ledger state with a clock that ticks 1 µs per command unless told the time."""

    retention_s: int = ledger.DEFAULT_IDEMPOTENCY_RETENTION_S
    now_us: int = T0_US
    state: ledger.LedgerState = field(init=False)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = ledger.LedgerState(
            wire_format=WIRE_FORMAT, idempotency_retention_s=self.retention_s
        )

    def run(self, command: Command, *, at_us: int | None = None) -> ledger.Decision:
        self.now_us = self.now_us + 1 if at_us is None else at_us
        decision = ledger.step(self.state, command, self.now_us)
        self.events.extend(decision.events)
        return decision

    def accept(self, command: Command, *, at_us: int | None = None) -> ledger.Accepted:
        decision = self.run(command, at_us=at_us)
        assert isinstance(decision, ledger.Accepted), decision.outcome
        return decision

    def account(self, account_id: str, tenant: str = "acme") -> AccountState:
        found = self.state.account(tenant, account_id)
        assert found is not None
        return found


def snapshot(state: ledger.LedgerState) -> list[StateRecord]:
    """The state's records in a canonical order, for equality."""
    return sorted(ledger.export_records(state), key=repr)


def with_accounts(*account_ids: str, tenant: str = "acme", **fields: Any) -> Ledger:
    book = Ledger()
    for account_id in account_ids:
        book.accept(open_account(account_id, tenant=tenant, **fields))
    return book
