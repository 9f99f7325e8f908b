"""The records of one ``make chaos`` round, decided before anything runs (pure, seeded).

A round sends, in this order per tenant (one idempotent producer keeps it):

- ``producers.loadgen``'s workload with ``duplicate_share`` raised so at least
  ``DUPLICATE_SHARE_MIN`` of all commands are exact duplicate retries (same key, same bytes),
  and multi-leg transactions (issue 16, decision 0067): ``FEE_SPLIT_SHARE`` fee splits,
  ``PAYOUT_SHARE`` payouts to 10-50 sellers and ``FX_SHARE`` FX conversions through liquidity
  accounts, decided by the same fold and checked by the same invariants;
- expiring pending transfers (fault kind ``expiry``): ``funding`` -> a customer, with
  ``EXPIRING_TIMEOUT_S``, never posted or voided. ``funding`` is unguarded and a credit pending
  never limits a guarded account, so whether one has expired yet changes no other decision:
  the fold stays a function of the commands, and the expiries are counted apart;
- poison records (undecodable) among them;
- the ``misrouted`` fault kind: valid, never-sent-elsewhere commands produced on the wrong
  partition (``wrong_partition``) or under another tenant's record key on the body's own
  partition (``key_mismatch``). Contract: dead-lettered with that ``dlq.error.kind``, never
  decided;
- the ``backdated`` fault kind: ordinary workload commands whose record timestamp is set
  ``BACKDATE_MS`` in the past. Contract: decided like any other; a tenant's events keep
  non-decreasing ``effective_at_us``;
- after the feed, one ``sweep`` transfer per tenant, sent once every expiring transfer's
  deadline has passed, so stream time passes every deadline in every partition.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Final

from producers.loadgen import FUNDING_ACCOUNT, LoadPlan, generate, poison_records
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.model import Command, OpenAccount, PostTransaction, Transfer

FAULT_KINDS: Final = ("kill", "broker", "postgres", "api", "expiry", "misrouted", "backdated")
DUPLICATE_SHARE_MIN: Final = 0.10
DUPLICATE_SHARE: Final = 0.12  # of the mixed commands; the opening phase has none
FEE_SPLIT_SHARE: Final = 0.04  # multi-leg transactions, of the mixed commands (decision 0067)
PAYOUT_SHARE: Final = 0.01
FX_SHARE: Final = 0.04
EXPIRING_SHARE: Final = 0.01  # expiring pending transfers, of the commands
EXPIRING_TIMEOUT_S: Final = 2
EXPIRING_AMOUNT_MAX: Final = 1_000
BACKDATE_MS: Final = 3_600_000  # one hour
MISROUTED_PER_KIND: Final = 10
BACKDATED: Final = 50
POISON: Final = 6
KEY_SEARCH_MAX: Final = 10_000  # candidate keys tried for a key that lands on a given partition
START_US: Final = 1_700_000_000_000_000
MISROUTED_KINDS: Final = ("wrong_partition", "key_mismatch")
FIRST_CUSTOMER: Final = "acct-0001"  # loadgen's customers are acct-0001 ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundPlan:
    seed: int
    commands: int  # mixed commands after the opening phase
    tenants: int = 8
    accounts_per_tenant: int = 40
    partitions: int = 3
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    fee_split_share: float = FEE_SPLIT_SHARE
    payout_share: float = PAYOUT_SHARE
    fx_share: float = FX_SHARE

    def __post_init__(self) -> None:
        unknown = self.faults - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if self.tenants < 2 or self.partitions < 2:
            raise ValueError("misrouting needs at least 2 tenants and 2 partitions")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce: where, and whether its timestamp is back-dated."""

    key: bytes
    value: bytes
    partition: int
    backdated: bool = False


@dataclass(frozen=True, slots=True)
class Misrouted:
    tenant_id: str
    idempotency_key: str
    kind: str  # one of MISROUTED_KINDS: the dlq.error.kind the processor must give it
    value: bytes


@dataclass(slots=True)
class RoundWorkload:
    records: list[Outgoing] = field(default_factory=list)  # the feed, in order
    commands: list[Command] = field(default_factory=list)  # what the fold decides, in order
    sweep: list[Command] = field(default_factory=list)  # sent after every deadline passed
    expiring: dict[str, list[str]] = field(default_factory=dict)  # tenant -> transfer ids
    misrouted: list[Misrouted] = field(default_factory=list)
    poison: list[tuple[bytes, bytes, str]] = field(default_factory=list)
    duplicates: int = 0
    backdated: int = 0
    transactions: int = 0  # multi-leg PostTransaction commands (duplicates not counted)
    postings: int = 0  # their postings

    def sent_commands(self) -> int:
        return len(self.commands) + len(self.sweep) + len(self.misrouted)

    def sweep_records(self, partitions: int) -> list[Outgoing]:
        return [_raw(command_key(c.tenant_id), encode_command(c), partitions) for c in self.sweep]

    def duplicate_share(self) -> float:
        return self.duplicates / max(len(self.commands), 1)


def build(plan: RoundPlan) -> RoundWorkload:
    chance = random.Random(plan.seed)  # a reproducible workload, not secrets
    prefix = f"chaos{plan.seed}-"
    load = LoadPlan(
        seed=plan.seed,
        tenants=plan.tenants,
        accounts_per_tenant=plan.accounts_per_tenant,
        commands=plan.commands,
        start_us=START_US,
        expiring_share=0.0,  # the round's own expiring transfers are below
        duplicate_share=DUPLICATE_SHARE,
        fee_split_share=plan.fee_split_share,
        payout_share=plan.payout_share,
        fx_share=plan.fx_share,
    )
    workload = RoundWorkload()
    currencies: dict[str, str] = {}  # tenant -> its funding account's currency (loadgen: the
    # tenant's currency; FX wallets and liquidity accounts of another currency come later)
    opened: dict[str, set[str]] = {}  # tenant -> accounts opened so far
    for number, generated in enumerate(generate(load)):
        command = dataclasses.replace(
            generated.command, tenant_id=prefix + generated.command.tenant_id
        )
        if isinstance(command, OpenAccount):
            if command.account_id == FUNDING_ACCOUNT:
                currencies[command.tenant_id] = command.currency
            opened.setdefault(command.tenant_id, set()).add(command.account_id)
        workload.duplicates += generated.intent == "duplicate"
        if isinstance(command, PostTransaction) and generated.intent != "duplicate":
            workload.transactions += 1
            workload.postings += len(command.postings)
        _append(workload, command, plan.partitions)
        # an expiring transfer only once both its accounts are open: before that it would be
        # rejected (unknown_account) and never pending, in the ledger and in the fold alike
        funded = {FUNDING_ACCOUNT, FIRST_CUSTOMER} <= opened.get(command.tenant_id, set())
        if "expiry" in plan.faults and funded and chance.random() < EXPIRING_SHARE:
            expiring = _expiring(chance, command, currencies[command.tenant_id], number)
            workload.expiring.setdefault(command.tenant_id, []).append(expiring.transfer_id)
            _append(workload, expiring, plan.partitions)
    if "backdated" in plan.faults:
        _backdate(chance, workload, BACKDATED)
    if "misrouted" in plan.faults:
        _misroute(chance, workload, currencies, plan.partitions)
    tenant_ids = tuple(sorted(currencies))
    poison = poison_records(plan.seed, POISON, tenant_ids, workload.records[0].value)
    _insert_spread(
        chance, workload, [_raw(key, value, plan.partitions) for key, value, _ in poison]
    )
    workload.poison = poison
    workload.sweep = [_funding_transfer(t, currencies[t], "sweep") for t in tenant_ids]
    return workload


def _append(workload: RoundWorkload, command: Command, partitions: int) -> None:
    key = command_key(command.tenant_id)
    workload.records.append(Outgoing(key, encode_command(command), partition_for(key, partitions)))
    workload.commands.append(command)


def _raw(key: bytes, value: bytes, partitions: int) -> Outgoing:
    return Outgoing(key, value, partition_for(key, partitions))


def _expiring(chance: random.Random, after: Command, currency: str, number: int) -> Transfer:
    return dataclasses.replace(
        _funding_transfer(after.tenant_id, currency, f"exp-{number:08d}"),
        submitted_at_us=after.submitted_at_us,
        amount=chance.randint(1, EXPIRING_AMOUNT_MAX),
        pending=True,
        pending_timeout_s=EXPIRING_TIMEOUT_S,
    )


def _funding_transfer(tenant_id: str, currency: str, key: str) -> Transfer:
    """``funding`` -> the first customer: ``funding`` may always give, nothing else moves."""
    return Transfer(
        tenant_id=tenant_id,
        idempotency_key=key,
        submitted_at_us=START_US,
        transfer_id=key,
        debit_account_id=FUNDING_ACCOUNT,
        credit_account_id=FIRST_CUSTOMER,
        amount=1,
        currency=currency,
    )


def _backdate(chance: random.Random, workload: RoundWorkload, count: int) -> None:
    """Mark ``count`` records of the second half of the feed (accounts exist by then)."""
    half = len(workload.records) // 2
    for index in chance.sample(range(half, len(workload.records)), min(count, half)):
        workload.records[index] = dataclasses.replace(workload.records[index], backdated=True)
    workload.backdated = min(count, half)


def _misroute(
    chance: random.Random, workload: RoundWorkload, currencies: dict[str, str], partitions: int
) -> None:
    outgoing = []
    for number in range(MISROUTED_PER_KIND * len(MISROUTED_KINDS)):
        kind = MISROUTED_KINDS[number % len(MISROUTED_KINDS)]
        tenant_id = chance.choice(sorted(currencies))
        command = _funding_transfer(tenant_id, currencies[tenant_id], f"misrouted-{number:04d}")
        value = encode_command(command)
        right = partition_for(command_key(tenant_id), partitions)
        if kind == "wrong_partition":
            record = Outgoing(command_key(tenant_id), value, (right + 1) % partitions)
        else:
            record = Outgoing(_other_key_on(tenant_id, right, partitions), value, right)
        workload.misrouted.append(Misrouted(tenant_id, command.idempotency_key, kind, value))
        outgoing.append(record)
    _insert_spread(chance, workload, outgoing)


def _other_key_on(tenant_id: str, partition: int, partitions: int) -> bytes:
    """A record key that is not ``tenant_id`` but lands on the same partition (key_mismatch)."""
    for number in range(KEY_SEARCH_MAX):
        key = command_key(f"{tenant_id}-not-{number}")
        if partition_for(key, partitions) == partition:
            return key
    raise AssertionError(f"no key on partition {partition} in {KEY_SEARCH_MAX} tries")


def _insert_spread(chance: random.Random, workload: RoundWorkload, extra: list[Outgoing]) -> None:
    """Put ``extra`` records at random places of the second half of the feed."""
    half = len(workload.records) // 2
    places = sorted((chance.randint(half, len(workload.records)) for _ in extra), reverse=True)
    for place, record in zip(places, extra, strict=True):
        workload.records.insert(place, record)
