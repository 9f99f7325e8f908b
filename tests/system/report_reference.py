"""An independent fold of ledger events into what a statement and a trial balance must say.

It reads only the events (their amounts, times and hashes) and folds the four counters itself;
it never looks at the balances-after the events carry, nor at PostgreSQL, nor at the projection's
code. Reports read from the projection must equal it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.model import (
    GENESIS_HASH,
    AccountOpened,
    Event,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    TransferPending,
    TransferPosted,
)

Counters4 = tuple[
    int, int, int, int
]  # debits_posted, credits_posted, debits_pending, credits_pending


@dataclass(frozen=True)
class Posting:
    sequence: int
    at_us: int
    kind: str
    side: str
    transfer_id: str
    amount: int
    after: Counters4  # the account's counters after the whole event


@dataclass
class ReferenceAccount:
    currency: str
    asset_scale: int
    normal_side: str
    opened_at_us: int
    opened_sequence: int
    postings: list[Posting] = field(default_factory=list)
    counters: Counters4 = (0, 0, 0, 0)


def moved(counters: Counters4, side: str, kind: str, amount: int) -> Counters4:
    debits_posted, credits_posted, debits_pending, credits_pending = counters
    posted = amount if kind == "posted" else 0
    pending = {"pending": amount, "released": -amount}.get(kind, 0)
    if side == "debit":
        return (debits_posted + posted, credits_posted, debits_pending + pending, credits_pending)
    return (debits_posted, credits_posted + posted, debits_pending, credits_pending + pending)


def kinds_of(event: Event) -> list[tuple[str, int]]:
    if isinstance(event, TransferPosted):
        return [("posted", event.amount)]
    if isinstance(event, TransferPending):
        return [("pending", event.amount)]
    if isinstance(event, PendingPosted):
        return [("posted", event.amount), ("released", event.pending_amount)]
    assert isinstance(event, PendingVoided | PendingExpired)
    return [("released", event.amount)]


@dataclass
class ReferenceLedger:
    accounts: dict[tuple[str, str], ReferenceAccount] = field(default_factory=dict)
    # per tenant, (sequence, effective_at_us, hash) in sequence order
    chains: dict[str, list[tuple[int, int, bytes]]] = field(default_factory=dict)

    @classmethod
    def fold(cls, events: Sequence[Event]) -> ReferenceLedger:
        ledger = cls()
        for event in sorted(events, key=lambda e: (e.tenant_id, e.sequence)):
            ledger.apply(event)
        return ledger

    def apply(self, event: Event) -> None:
        tenant = event.tenant_id
        chain = self.chains.setdefault(tenant, [])
        assert len(chain) + 1 == event.sequence
        chain.append((event.sequence, event.effective_at_us, event.hash))
        if isinstance(event, AccountOpened):
            credit_normal = not (
                event.credits_must_not_exceed_debits and not event.debits_must_not_exceed_credits
            )
            self.accounts[(tenant, event.account_id)] = ReferenceAccount(
                event.currency,
                event.asset_scale,
                "credit" if credit_normal else "debit",
                event.effective_at_us,
                event.sequence,
            )
            return
        assert isinstance(
            event, TransferPosted | TransferPending | PendingPosted | PendingVoided | PendingExpired
        )
        for side, account_id in (
            ("debit", event.debit_account_id),
            ("credit", event.credit_account_id),
        ):
            account = self.accounts[(tenant, account_id)]
            rows = kinds_of(event)
            for kind, amount in rows:
                account.counters = moved(account.counters, side, kind, amount)
            for kind, amount in rows:
                account.postings.append(
                    Posting(event.sequence, event.effective_at_us, kind, side,
                            event.transfer_id, amount, account.counters)
                )  # fmt: skip

    def last_event(self, tenant: str, *, before_us: int, inclusive: bool) -> tuple[int, bytes]:
        found = (0, GENESIS_HASH)
        for sequence, at_us, link in self.chains.get(tenant, []):
            if at_us < before_us or (inclusive and at_us == before_us):
                found = (sequence, link)
        return found

    def counters_before(
        self, tenant: str, account_id: str, before_us: int, *, inclusive: bool = False
    ) -> Counters4:
        counters: Counters4 = (0, 0, 0, 0)
        for posting in self.accounts[(tenant, account_id)].postings:
            if posting.at_us < before_us or (inclusive and posting.at_us == before_us):
                counters = posting.after
        return counters

    def period_postings(
        self, tenant: str, account_id: str, from_us: int, to_us: int
    ) -> list[Posting]:
        postings = self.accounts[(tenant, account_id)].postings
        chosen = [p for p in postings if from_us <= p.at_us < to_us]
        return sorted(chosen, key=lambda p: (p.at_us, p.sequence, p.kind))

    def trial_balance(self, tenant: str, at_us: int) -> dict[str, tuple[str, Counters4]]:
        """account id -> (currency, counters) of every account opened at or before ``at_us``."""
        found: dict[str, tuple[str, Counters4]] = {}
        for (owner, account_id), account in self.accounts.items():
            if owner == tenant and account.opened_at_us <= at_us:
                counters = self.counters_before(tenant, account_id, at_us, inclusive=True)
                found[account_id] = (account.currency, counters)
        return found
