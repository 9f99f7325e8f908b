"""The independent reference fold (``tests/system/ledger_reference.py``) agrees with the core.

The system and chaos tests judge the real pipeline against that fold, so the fold must decide
exactly like the core: here both decide the same seeded random mixes of transfers, pending
transfers, multi-leg transactions (fee splits, payouts, FX, pending ones, reversals, failing
postings, overflow), ``PostPending``/``VoidPending`` of both, expiries and duplicate retries, and
every outcome (status, reason, the field a transaction rejection names), every event (kind,
sequence, balances after it) and every final balance must be equal. A seed reproduces a run.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Final

import pytest

import ledger
from schemas.model import (
    Command,
    Event,
    PendingExpired,
    Posting,
    PostPending,
    PostTransaction,
    TransactionPendingExpired,
    Transfer,
    VoidPending,
)
from tests.system.ledger_reference import ReferenceLedger, expire_pending
from tests.unit.ledger_builders import SECOND_US, T0_US, Ledger, open_account

SEEDS: Final = range(40)
COMMANDS_PER_SEED: Final = 400
HUGE: Final = 2**62  # two of these overflow a counter
TENANT: Final = "acme"
# name -> (currency, debits guarded, credits guarded, overdraft limit)
ACCOUNTS: Final = {
    "world": ("USD", False, False, 0),
    "world-eur": ("EUR", False, False, 0),
    "a": ("USD", True, False, 0),
    "b": ("USD", True, False, 500),
    "c": ("USD", True, False, 0),
    "merchant": ("USD", False, False, 0),
    "capped": ("USD", False, True, 2_000),
    "liquidity-usd": ("USD", False, False, 0),
    "liquidity-eur": ("EUR", False, False, 0),
    "wallet-eur": ("EUR", True, False, 0),
}
EXPIRED_EVENTS: Final = (PendingExpired, TransactionPendingExpired)


@dataclasses.dataclass
class Mix:
    """What the random mix remembers: ids it may finish, reverse or send again."""

    chance: random.Random
    count: int = 0
    pending: list[str] = dataclasses.field(default_factory=list)
    expiring: list[str] = dataclasses.field(default_factory=list)
    transactions: dict[str, tuple[Posting, ...]] = dataclasses.field(default_factory=dict)
    sent: list[Command] = dataclasses.field(default_factory=list)

    def key(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count:05d}"


def opening() -> list[Command]:
    commands: list[Command] = []
    for name, (currency, debits, credits, overdraft) in ACCOUNTS.items():
        commands.append(
            open_account(
                name,
                currency=currency,
                debits_must_not_exceed_credits=debits,
                credits_must_not_exceed_debits=credits,
                overdraft_limit=overdraft if debits or credits else None,
            )
        )
    return commands


def some_account(mix: Mix) -> str:
    if mix.chance.random() < 0.02:
        return "ghost"  # unknown_account
    return mix.chance.choice(sorted(ACCOUNTS))


def some_amount(mix: Mix) -> int:
    if mix.chance.random() < 0.02:
        return HUGE
    return mix.chance.randint(1, 3_000)


def random_posting(mix: Mix) -> Posting:
    debit, credit = some_account(mix), some_account(mix)
    currency = ACCOUNTS.get(debit, ("USD",))[0]
    if mix.chance.random() < 0.03:
        currency = "EUR" if currency == "USD" else "USD"  # currency_mismatch
    return Posting(
        debit_account_id=debit,
        credit_account_id=credit,
        amount=some_amount(mix),
        currency=currency,
    )


def fx_postings(mix: Mix) -> tuple[Posting, ...]:
    amount = mix.chance.randint(1, 2_000)
    return (
        Posting(
            debit_account_id=mix.chance.choice(("a", "b", "c")),
            credit_account_id="liquidity-usd",
            amount=amount,
            currency="USD",
        ),
        Posting(
            debit_account_id="liquidity-eur",
            credit_account_id="wallet-eur",
            amount=amount * 92 // 100 + 1,
            currency="EUR",
        ),
    )


def fee_split(mix: Mix) -> tuple[Posting, ...]:
    payer = mix.chance.choice(("a", "b", "c", "wallet-eur"))
    currency = ACCOUNTS[payer][0]
    legs = (("merchant", 970), ("capped", 26), ("world", 3))
    return tuple(
        Posting(debit_account_id=payer, credit_account_id=name, amount=part, currency=currency)
        for name, part in legs
    )


def payout(mix: Mix) -> tuple[Posting, ...]:
    sellers = mix.chance.sample(("a", "b", "c", "merchant", "capped"), mix.chance.randint(2, 5))
    return tuple(
        Posting(
            debit_account_id="world",
            credit_account_id=seller,
            amount=mix.chance.randint(1, 900),
            currency="USD",
        )
        for seller in sellers
    )


def near_overflow(mix: Mix) -> tuple[Posting, ...]:
    """One or two postings of 2**62 into ``merchant``: the second (now or later) overflows."""
    sources = mix.chance.sample(("world", "liquidity-usd"), mix.chance.randint(1, 2))
    return tuple(
        Posting(debit_account_id=source, credit_account_id="merchant", amount=HUGE, currency="USD")
        for source in sources
    )


def reversal_postings(mix: Mix, original: tuple[Posting, ...]) -> tuple[Posting, ...]:
    swapped = [
        dataclasses.replace(
            posting,
            debit_account_id=posting.credit_account_id,
            credit_account_id=posting.debit_account_id,
            amount=mix.chance.choice((posting.amount, mix.chance.randint(1, posting.amount))),
        )
        for posting in original
    ]
    if mix.chance.random() < 0.1:
        swapped.reverse()  # reversal_mismatch unless symmetric
    if mix.chance.random() < 0.1:
        swapped[0] = dataclasses.replace(swapped[0], amount=swapped[0].amount + 1)
    return tuple(swapped)


def transaction(mix: Mix, postings: tuple[Posting, ...], **fields: object) -> PostTransaction:
    key = mix.key("tx")
    mix.transactions[key] = postings
    return PostTransaction(
        tenant_id=TENANT,
        idempotency_key=key,
        submitted_at_us=T0_US,
        transaction_id=key,
        postings=postings,
        **fields,  # type: ignore[arg-type]
    )


def pending_fields(mix: Mix, transfer_id: str) -> dict[str, object]:
    """Posted at once, or pending: forever, or expiring 1 s after it is decided."""
    draw = mix.chance.random()
    if draw < 0.6:
        return {}
    mix.pending.append(transfer_id)
    if draw < 0.8:
        return {"pending": True}
    mix.expiring.append(transfer_id)
    return {"pending": True, "pending_timeout_s": 1}


def new_transaction(mix: Mix) -> PostTransaction:
    draw = mix.chance.random()
    if draw < 0.25:
        postings = fee_split(mix)
    elif draw < 0.45:
        postings = fx_postings(mix)
    elif draw < 0.55:
        postings = payout(mix)
    elif draw < 0.60:
        postings = near_overflow(mix)
    else:
        postings = tuple(random_posting(mix) for _ in range(mix.chance.randint(1, 5)))
    key = f"tx-{mix.count + 1:05d}"
    return transaction(mix, postings, **pending_fields(mix, key))


def new_transfer(mix: Mix) -> Transfer:
    posting = random_posting(mix)
    key = mix.key("tr")
    return Transfer(
        tenant_id=TENANT,
        idempotency_key=key,
        submitted_at_us=T0_US,
        transfer_id=key,
        debit_account_id=posting.debit_account_id,
        credit_account_id=posting.credit_account_id,
        amount=min(posting.amount, 3_000),
        currency=posting.currency,
        **pending_fields(mix, key),  # type: ignore[arg-type]
    )


def finish(mix: Mix) -> Command | None:
    if not mix.pending:
        return None
    transfer_id = mix.chance.choice(mix.pending)
    key = mix.key("fin")
    if mix.chance.random() < 0.3:
        return VoidPending(
            tenant_id=TENANT, idempotency_key=key, submitted_at_us=T0_US, transfer_id=transfer_id
        )
    amount = None if mix.chance.random() < 0.7 else mix.chance.randint(1, 3_000)
    return PostPending(
        tenant_id=TENANT,
        idempotency_key=key,
        submitted_at_us=T0_US,
        transfer_id=transfer_id,
        amount=amount,
    )


def reverse(mix: Mix) -> Command | None:
    if not mix.transactions:
        return None
    target = mix.chance.choice(sorted(mix.transactions))
    postings = reversal_postings(mix, mix.transactions[target])
    return transaction(mix, postings, reverses=target)


def next_command(mix: Mix) -> Command | str | None:
    """One command of the mix, or ``"expire"`` (time jumps past every 1 s deadline)."""
    draw = mix.chance.random()
    if draw < 0.03:
        return "expire"
    if draw < 0.10 and mix.sent:
        return mix.chance.choice(mix.sent)  # a duplicate retry, same key, same payload
    if draw < 0.30:
        return new_transfer(mix)
    if draw < 0.70:
        return new_transaction(mix)
    if draw < 0.88:
        return finish(mix)
    return reverse(mix)


def funding() -> list[Command]:
    return [
        Transfer(
            tenant_id=TENANT,
            idempotency_key=f"fund-{name}",
            submitted_at_us=T0_US,
            transfer_id=f"fund-{name}",
            debit_account_id="world-eur" if currency == "EUR" else "world",
            credit_account_id=name,
            amount=20_000,
            currency=currency,
        )
        for name, (currency, guarded, _, _) in ACCOUNTS.items()
        if guarded
    ]


def expire_due(reference: ReferenceLedger, due: list[str]) -> None:
    """What the core does once stream time passes the deadlines: release what is still
    pending (the ids whose command was rejected were never pending)."""
    tenant = reference.tenants[TENANT]
    for transfer_id in due:
        transfer = tenant.pending.get(transfer_id)
        transaction = tenant.transactions.get(transfer_id)
        found = transfer if transfer is not None else transaction
        status = None if found is None else found.status
        if status == "pending":
            expire_pending(reference, TENANT, transfer_id)


def balances_of(event: Event) -> dict[str, tuple[int, int, int, int]]:
    return {
        balance.account_id: (
            balance.debits_posted,
            balance.credits_posted,
            balance.debits_pending,
            balance.credits_pending,
        )
        for balance in event.balances
    }


def check_outcome(reference: ReferenceLedger, command: Command, decision: ledger.Decision) -> None:
    expected = reference.outcomes[(command.tenant_id, command.idempotency_key)]
    outcome = decision.outcome
    reason = None if outcome.reason is None else outcome.reason.value
    where = f"{type(command).__name__} {command.idempotency_key}: {outcome.detail}"
    assert (outcome.status.value, reason) == (expected.status, expected.reason), where
    assert tuple(outcome.event_sequences) == expected.sequences, where
    if expected.named is None:
        return
    named = outcome.detail.split(":", 1)[0]
    assert named == expected.named, where


def check_events(reference: ReferenceLedger, events: list[Event]) -> None:
    decided = [event for event in events if not isinstance(event, EXPIRED_EVENTS)]
    assert len(decided) == len(reference.events)
    for event, expected in zip(decided, reference.events, strict=True):
        seen = (type(event).__name__, event.sequence, event.idempotency_key, balances_of(event))
        wanted = (expected.kind, expected.sequence, expected.idempotency_key, expected.balances)
        assert seen == wanted
        assert list(balances_of(event)) == list(expected.balances)  # first-touched order


def run_mix(seed: int) -> tuple[Ledger, ReferenceLedger, list[Event]]:
    mix = Mix(random.Random(seed))
    core = Ledger()
    reference = ReferenceLedger()
    events: list[Event] = []
    due: list[str] | None = None  # after an "expire": the ids sent before it
    for command in [*opening(), *funding()]:
        events.extend(core.run(command).events)
        reference.one(command)
    for _ in range(COMMANDS_PER_SEED):
        made = next_command(mix)
        if made is None:
            continue
        if made == "expire":
            due, mix.expiring = [*(due or []), *mix.expiring], []
            continue
        assert not isinstance(made, str)
        at_us = None if due is None else core.now_us + 2 * SECOND_US
        duplicate = made in mix.sent
        if due is not None and not duplicate:  # a duplicate is answered before time moves
            expire_due(reference, due)
            due = None
        decision = core.run(made, at_us=at_us)
        events.extend(decision.events)
        if not duplicate:
            reference.one(made)
            mix.sent.append(made)
            check_outcome(reference, made, decision)
        else:
            assert isinstance(decision, ledger.Duplicate), decision.outcome
    return core, reference, events


@pytest.mark.parametrize("seed", SEEDS)
def test_the_reference_fold_decides_like_the_core(seed: int) -> None:
    core, reference, events = run_mix(seed)
    check_events(reference, events)
    tenant = reference.tenants[TENANT]
    for name, account in tenant.accounts.items():
        state = core.account(name)
        core_counters = (
            state.debits_posted,
            state.credits_posted,
            state.debits_pending,
            state.credits_pending,
        )
        assert core_counters == account.counters(), name
    head = core.state.head(TENANT)
    assert head is not None and head.last_sequence == tenant.sequence


def test_the_mix_reaches_every_transaction_rule() -> None:
    """The seeds above are worth something only if they reach the rules: every reason a
    transaction can get, and every transaction event kind, shows up across them."""
    reasons: set[str] = set()
    kinds: set[str] = set()
    for seed in SEEDS:
        _, reference, events = run_mix(seed)
        reasons |= {
            outcome.reason
            for outcome in reference.outcomes.values()
            if outcome.reason is not None and outcome.named is not None
        }
        kinds |= {type(event).__name__ for event in events}
    assert {
        "invalid_command",
        "unknown_account",
        "currency_mismatch",
        "same_account",
        "reversal_mismatch",
        "reversal_exceeds_original",
        "insufficient_funds",
        "limit_exceeded",
        "overflow",
        "pending_already_final",
    } <= reasons
    assert {
        "TransactionPosted",
        "TransactionPending",
        "TransactionPendingPosted",
        "TransactionPendingVoided",
        "TransactionPendingExpired",
    } <= kinds


def test_an_overflow_on_both_sides_of_one_posting_names_the_debit_side() -> None:
    core, reference = Ledger(), ReferenceLedger()
    huge = Posting(
        debit_account_id="world", credit_account_id="merchant", amount=HUGE, currency="USD"
    )
    mix = Mix(random.Random(0))
    for command in [*opening(), transaction(mix, (huge,)), transaction(mix, (huge,))]:
        decision = core.run(command)
        reference.one(command)
    assert reference.outcomes[(TENANT, "tx-00002")].named == "postings[0].debit_account_id"
    assert decision.outcome.detail.startswith("postings[0].debit_account_id:")
