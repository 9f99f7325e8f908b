"""A seeded ledger workload for the projection tests and benchmark, with an independent model.

``generate(seed, ...)`` builds valid commands for several tenants (accounts without limits, so
nothing is rejected for funds; posted, pending, partial and full posts, voids, expiries and
reversals), runs them through the pure core (``ledger.step``) to get the real events,
and folds the *commands* in a deliberately simple model of its own (``ExpectedLedger``): the
expected balances, transfer states and per-account balance timeline. The projection must agree
with the model; the core is only used to produce the events.

``produce_events`` writes the events transactionally to ``ledger.events`` the way the processor
does: key ``{tenant}/{sequence}``, partition of the tenant's command key.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Producer

from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from ledger import Accepted, LedgerState, step
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import encode_event
from schemas.keys import command_key, event_key, partition_for
from schemas.model import Command, Event, OpenAccount, PostPending, Transfer, VoidPending
from streamledger.settings import Settings

BASE_TIME_US = 1_700_000_000_000_000
CURRENCIES = ("USD", "EUR")
PRODUCE_CHUNK = 5_000


@dataclass
class ExpectedAccount:
    currency: str
    opened_at_us: int
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    # (effective_at_us, counters after) per balance change, in order
    timeline: list[tuple[int, tuple[int, int, int, int]]] = field(default_factory=list)

    def counters(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)


@dataclass
class ExpectedTransfer:
    debit: str
    credit: str
    currency: str
    amount: int
    pending: bool
    status: str
    amount_posted: int = 0
    amount_reversed: int = 0
    reverses: str | None = None
    expires_at_us: int | None = None


@dataclass
class ExpectedLedger:
    """The model: what PostgreSQL must hold after projecting the workload."""

    accounts: dict[tuple[str, str], ExpectedAccount] = field(default_factory=dict)
    transfers: dict[tuple[str, str], ExpectedTransfer] = field(default_factory=dict)
    postings: int = 0  # expected journal rows

    def move(self, tenant: str, debit: str, credit: str, at_us: int, deltas: Sequence[int]) -> None:
        """deltas: (posted, pending) change applied to both sides."""
        posted, pending = deltas
        for account_id, is_debit in ((debit, True), (credit, False)):
            account = self.accounts[(tenant, account_id)]
            if is_debit:
                account.debits_posted += posted
                account.debits_pending += pending
            else:
                account.credits_posted += posted
                account.credits_pending += pending
            account.timeline.append((at_us, account.counters()))

    def balance_at(
        self, tenant: str, account_id: str, at_us: int
    ) -> tuple[int, int, int, int] | None:
        account = self.accounts[(tenant, account_id)]
        if account.opened_at_us > at_us:
            return None
        result = (0, 0, 0, 0)
        for moment, counters in account.timeline:
            if moment > at_us:
                break
            result = counters
        return result


@dataclass
class TenantScript:
    tenant: str
    accounts: list[tuple[str, str]] = field(default_factory=list)  # (id, currency)
    time_us: int = BASE_TIME_US
    counter: int = 0


@dataclass
class Workload:
    commands: list[tuple[Command, int]]
    events: list[Event]
    expected: ExpectedLedger
    tenants: list[str]
    first_time_us: int
    last_time_us: int


def generate(
    seed: int, *, tenants: int = 4, accounts_per_tenant: int = 6, commands: int = 2_000
) -> Workload:
    rng = random.Random(seed)
    scripts = [TenantScript(f"tenant-{seed}-{index}") for index in range(tenants)]
    expected = ExpectedLedger()
    state = LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
    plan: list[tuple[Command, int]] = []
    events: list[Event] = []

    clock = BASE_TIME_US  # one clock for all tenants: stream time is the partition's

    def tick(script: TenantScript, step_us_max: int) -> None:
        nonlocal clock
        clock += rng.randint(1, step_us_max)
        script.time_us = clock
        expire_due(expected, clock)

    def run(script: TenantScript, command: Command) -> None:
        decision = step(state, command, script.time_us)
        state.commit()
        if not isinstance(decision, Accepted):
            raise AssertionError(f"the workload made an invalid command: {decision.outcome}")
        plan.append((command, script.time_us))
        events.extend(decision.events)

    for script in scripts:
        for index in range(accounts_per_tenant):
            currency = CURRENCIES[index % len(CURRENCIES)]
            account_id = f"acct-{index}"
            script.accounts.append((account_id, currency))
            tick(script, 2_000)
            expected.accounts[(script.tenant, account_id)] = ExpectedAccount(
                currency, script.time_us
            )
            run(script, open_account(script, account_id, currency))
    for _ in range(commands):
        script = rng.choice(scripts)
        tick(script, 50_000)
        command = next_command(rng, script, expected)
        run(script, command)
    times = [at for _, at in plan]
    return Workload(plan, events, expected, [s.tenant for s in scripts], min(times), max(times))


def header(script: TenantScript) -> dict[str, object]:
    script.counter += 1
    return {
        "tenant_id": script.tenant,
        "idempotency_key": f"key-{script.counter}",
        "submitted_at_us": script.time_us,
    }


def open_account(script: TenantScript, account_id: str, currency: str) -> OpenAccount:
    return OpenAccount(
        **header(script),  # type: ignore[arg-type]
        account_id=account_id,
        currency=currency,
        asset_scale=2,
    )


def expire_due(expected: ExpectedLedger, now_us: int) -> None:
    """Pending transfers of every tenant expire at stream time (the next command's timestamp)."""
    for (tenant, _), transfer in expected.transfers.items():
        if transfer.status != "pending" or transfer.expires_at_us is None:
            continue
        if transfer.expires_at_us <= now_us:
            transfer.status = "expired"
            expected.move(tenant, transfer.debit, transfer.credit, now_us, (0, -transfer.amount))
            expected.postings += 2


def next_command(rng: random.Random, script: TenantScript, expected: ExpectedLedger) -> Command:
    tenant = script.tenant
    pendings = [
        key for key, t in expected.transfers.items() if key[0] == tenant and t.status == "pending"
    ]
    reversible = [
        key
        for key, t in expected.transfers.items()
        if key[0] == tenant and t.status == "posted" and t.amount_posted > t.amount_reversed
    ]
    roll = rng.random()
    if pendings and roll < 0.15:
        return finish_pending(rng, script, expected, rng.choice(pendings))
    if reversible and roll < 0.2:
        return reverse(rng, script, expected, rng.choice(reversible))
    return new_transfer(rng, script, expected, pending=roll > 0.75)


def new_transfer(
    rng: random.Random, script: TenantScript, expected: ExpectedLedger, *, pending: bool
) -> Transfer:
    currency = rng.choice(CURRENCIES)
    candidates = [account for account, cur in script.accounts if cur == currency]
    debit, credit = rng.sample(candidates, 2)
    amount = rng.randint(1, 100_000)
    transfer_id = f"tr-{script.counter + 1}"
    timeout_s = rng.choice([None, None, 1, 5]) if pending else None
    expires = None if timeout_s is None else script.time_us + timeout_s * 1_000_000
    expected.transfers[(script.tenant, transfer_id)] = ExpectedTransfer(
        debit,
        credit,
        currency,
        amount,
        pending,
        "pending" if pending else "posted",
        amount_posted=0 if pending else amount,
        expires_at_us=expires,
    )
    expected.move(
        script.tenant, debit, credit, script.time_us, (0, amount) if pending else (amount, 0)
    )
    expected.postings += 2
    return Transfer(
        **header(script),  # type: ignore[arg-type]
        transfer_id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=currency,
        pending=pending,
        pending_timeout_s=timeout_s,
    )


def finish_pending(
    rng: random.Random, script: TenantScript, expected: ExpectedLedger, key: tuple[str, str]
) -> Command:
    transfer = expected.transfers[key]
    tenant, transfer_id = key
    if rng.random() < 0.6:
        amount = transfer.amount if rng.random() < 0.5 else rng.randint(1, transfer.amount)
        transfer.status = "posted"
        transfer.amount_posted = amount
        expected.move(
            tenant, transfer.debit, transfer.credit, script.time_us, (amount, -transfer.amount)
        )
        expected.postings += 4
        return PostPending(
            **header(script),  # type: ignore[arg-type]
            transfer_id=transfer_id,
            amount=None if amount == transfer.amount else amount,
        )
    transfer.status = "voided"
    expected.move(tenant, transfer.debit, transfer.credit, script.time_us, (0, -transfer.amount))
    expected.postings += 2
    return VoidPending(**header(script), transfer_id=transfer_id)  # type: ignore[arg-type]


def reverse(
    rng: random.Random, script: TenantScript, expected: ExpectedLedger, key: tuple[str, str]
) -> Transfer:
    original = expected.transfers[key]
    left = original.amount_posted - original.amount_reversed
    amount = rng.randint(1, left)
    original.amount_reversed += amount
    transfer_id = f"tr-{script.counter + 1}"
    expected.transfers[(script.tenant, transfer_id)] = ExpectedTransfer(
        original.credit,
        original.debit,
        original.currency,
        amount,
        False,
        "posted",
        amount_posted=amount,
        reverses=key[1],
    )
    expected.move(script.tenant, original.credit, original.debit, script.time_us, (amount, 0))
    expected.postings += 2
    return Transfer(
        **header(script),  # type: ignore[arg-type]
        transfer_id=transfer_id,
        debit_account_id=original.credit,
        credit_account_id=original.debit,
        amount=amount,
        currency=original.currency,
        reverses=key[1],
    )


def produce_events(settings: Settings, events: Sequence[Event], *, transactional_id: str) -> None:
    """Produce events to ledger.events in Kafka transactions, like the processor does."""
    producer = Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "transactional.id": transactional_id,
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    producer.init_transactions(30)
    topic = settings.topic("ledger.events")
    for start in range(0, len(events), PRODUCE_CHUNK):
        producer.begin_transaction()
        for event in events[start : start + PRODUCE_CHUNK]:
            partition = partition_for(command_key(event.tenant_id), settings.partitions)
            producer.produce(
                topic,
                key=event_key(event.tenant_id, event.sequence),
                value=encode_event(event),
                partition=partition,
            )
            producer.poll(0)
        producer.commit_transaction(60)
    producer.flush(30)
