"""A seeded command workload for the processor tests: the rules' main paths, duplicates, key reuse.

Per tenant: five accounts (two of them may not be overdrawn, one in another currency), then a
random mix of funding and spending transfers, pending transfers that are later posted (in full
or in part) or voided, and commands that must be rejected (unknown account, currency mismatch,
same account, insufficient funds, amount 0, pending not found / already final, account exists).
About 10 % of commands are exact duplicates of an earlier one and 3 % reuse an earlier key with
another amount. The same seed gives the same commands.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from schemas.model import Command, OpenAccount, PostPending, Transfer, VoidPending

CURRENCY = "EUR"
OTHER_CURRENCY = "USD"
SUBMITTED_AT_US = 1_700_000_000_000_000
ACCOUNTS: tuple[tuple[str, str, bool], ...] = (
    ("cash", CURRENCY, False),
    ("alice", CURRENCY, True),  # debits must not exceed credits
    ("bob", CURRENCY, True),
    ("shop", CURRENCY, False),
    ("dollars", OTHER_CURRENCY, False),
)
SPENDERS = ("alice", "bob")


@dataclass
class TenantScript:
    tenant_id: str
    random: random.Random
    commands: list[Command] = dataclasses.field(default_factory=list)
    pending_ids: list[str] = dataclasses.field(default_factory=list)
    counter: int = 0

    def next_key(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}-{self.counter}"

    def header(self, kind: str) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "idempotency_key": self.next_key(kind),
            "submitted_at_us": SUBMITTED_AT_US + self.counter,
        }


def workload(seed: int, tenants: int, commands_per_tenant: int) -> list[Command]:
    """The commands of all tenants, interleaved round-robin (each tenant's order is kept)."""
    scripts = [
        TenantScript(f"tenant-{index}", random.Random(f"{seed}/{index}"))
        for index in range(tenants)
    ]
    for script in scripts:
        _open_accounts(script)
        while len(script.commands) < commands_per_tenant:
            script.commands.append(_one_command(script))
    interleaved: list[Command] = []
    for position in range(max(len(script.commands) for script in scripts)):
        interleaved += [s.commands[position] for s in scripts if position < len(s.commands)]
    return interleaved


def _open_accounts(script: TenantScript) -> None:
    for account_id, currency, guarded in ACCOUNTS:
        script.commands.append(
            OpenAccount(
                **script.header("open"),  # type: ignore[arg-type]
                account_id=account_id,
                currency=currency,
                asset_scale=2,
                debits_must_not_exceed_credits=guarded,
            )
        )


def _one_command(script: TenantScript) -> Command:
    roll = script.random.random()
    earlier = [c for c in script.commands if not isinstance(c, OpenAccount)]
    if roll < 0.10 and earlier:
        return script.random.choice(earlier)  # exact duplicate: same key, same payload
    if roll < 0.13 and earlier:
        original = script.random.choice(earlier)
        if isinstance(original, Transfer):
            return dataclasses.replace(original, amount=original.amount + 1)  # key reused
    if roll < 0.45:
        return _transfer(script, "cash", script.random.choice(SPENDERS), 50, 500)
    if roll < 0.70:
        return _transfer(script, script.random.choice(SPENDERS), "shop", 10, 400)
    if roll < 0.80:
        return _pending(script)
    if roll < 0.90:
        return _finish_pending(script)
    return _bad_command(script)


def _transfer(script: TenantScript, debit: str, credit: str, low: int, high: int) -> Transfer:
    header = script.header("transfer")
    return Transfer(
        **header,  # type: ignore[arg-type]
        transfer_id=str(header["idempotency_key"]),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=script.random.randint(low, high),
        currency=CURRENCY,
    )


def _pending(script: TenantScript) -> Transfer:
    transfer = dataclasses.replace(
        _transfer(script, script.random.choice(SPENDERS), "shop", 10, 300), pending=True
    )
    script.pending_ids.append(transfer.transfer_id)
    return transfer


def _finish_pending(script: TenantScript) -> Command:
    target = script.random.choice(script.pending_ids) if script.pending_ids else "no-such"
    roll = script.random.random()
    if roll < 0.4:
        return PostPending(**script.header("post"), transfer_id=target)  # type: ignore[arg-type]
    if roll < 0.7:
        amount = script.random.randint(1, 200)  # may exceed the pending amount
        return PostPending(**script.header("post"), transfer_id=target, amount=amount)  # type: ignore[arg-type]
    return VoidPending(**script.header("void"), transfer_id=target)  # type: ignore[arg-type]


def _bad_command(script: TenantScript) -> Command:
    roll = script.random.random()
    if roll < 0.25:
        return _transfer(script, "cash", "dollars", 1, 9)  # currency mismatch
    if roll < 0.45:
        return _transfer(script, "cash", "nobody", 1, 9)  # unknown account
    if roll < 0.60:
        return _transfer(script, "shop", "shop", 1, 9)  # same account
    if roll < 0.75:
        return dataclasses.replace(_transfer(script, "cash", "shop", 1, 9), amount=0)  # invalid
    if roll < 0.85:
        return PostPending(**script.header("post"), transfer_id="no-such")  # type: ignore[arg-type]
    return OpenAccount(
        **script.header("open"),  # type: ignore[arg-type]
        account_id="cash",
        currency=CURRENCY,
        asset_scale=2,
    )
