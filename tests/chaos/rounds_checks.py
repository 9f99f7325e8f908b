"""What one ``make chaos`` round must have left behind, counted rather than asserted.

Each check adds to ``Findings`` (``lost``, ``duplicated``, or a named invariant violation) so a
round reports every kind of damage at once and the run goes on to the next round:

- exactly-once outcomes: every command of the fold has one outcome in ``ledger.outcomes``
  (``lost`` if none, ``duplicated`` if more), with the fold's status, reason and event count;
- ``ledger.events``: per tenant gapless from 1, hash chain intact, ``effective_at_us`` never
  decreasing (the back-dated contract), the command events equal to the fold's in order, and
  one ``PendingExpired`` per expiring transfer (``expiry``);
- ``ledger.balances`` and PostgreSQL hold the fold's balances; every (tenant, currency) sums to
  zero in PostgreSQL; ``verify`` is clean;
- the DLQ holds the poison records and each misrouted record with its ``dlq.error.kind``; a
  misrouted command has no outcome and no event.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from infra.topics import ledger_topic_names
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.dead_letters import HEADER_ERROR_KIND
from projections.verify import verify
from schemas.codec import decode_event, decode_outcome, decode_state
from schemas.model import (
    GENESIS_HASH,
    AccountState,
    Event,
    Outcome,
    PendingExpired,
    TenantHead,
)
from streamledger.settings import Settings
from tests.chaos.rounds_workload import RoundWorkload
from tests.system.ledger_reference import ReferenceLedger

READ_TIMEOUT_S: Final = 600.0  # one topic of a round (~110k records) on a busy machine
CONSUME_BATCH_MAX: Final = 5_000
POLL_S: Final = 0.5
EXAMPLES_MAX: Final = 3  # examples kept per violation kind
SELECT_BALANCES: Final = (
    "SELECT tenant_id, account_id, debits_posted, credits_posted, debits_pending,"
    " credits_pending FROM ledger.balances"
)
Counters = tuple[int, int, int, int]


@dataclass(slots=True)
class Findings:
    lost: int = 0
    duplicated: int = 0
    violations: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    expired: int = 0  # PendingExpired events seen
    checked: Counter[str] = field(default_factory=Counter)  # records read, per topic

    details: Counter[str] = field(default_factory=Counter)  # every finding by kind, to print

    def violation(self, kind: str, example: str, count: int = 1) -> None:
        """An invariant that does not hold (other than a lost or duplicated record)."""
        if count > 0:
            self.violations[kind] += count
            self._note(kind, example, count)

    def lose(self, kind: str, example: str, count: int = 1) -> None:
        """Something the fold has that the topics do not: an outcome or an event."""
        if count > 0:
            self.lost += count
            self._note(f"lost: {kind}", example, count)

    def duplicate(self, kind: str, example: str, count: int = 1) -> None:
        """Something the topics hold more than once."""
        if count > 0:
            self.duplicated += count
            self._note(f"duplicated: {kind}", example, count)

    def _note(self, kind: str, example: str, count: int) -> None:
        self.details[kind] += count
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_MAX:
            kept.append(example)

    def total(self) -> int:
        return sum(self.violations.values())


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    key: bytes
    value: bytes | None
    headers: dict[str, bytes]


def check_round(
    settings: Settings, workload: RoundWorkload, reference: ReferenceLedger
) -> Findings:
    findings = Findings()
    names = ledger_topic_names(settings)
    misrouted = {(m.tenant_id, m.idempotency_key) for m in workload.misrouted}
    outcomes, events = read_topic(settings, names.outcomes), read_topic(settings, names.events)
    balances, dead = read_topic(settings, names.balances), read_topic(settings, names.commands_dlq)
    findings.checked.update(
        {"outcomes": len(outcomes), "events": len(events), "balances": len(balances),
         "dead letters": len(dead)}
    )  # fmt: skip
    check_outcomes(findings, outcomes, reference, misrouted)
    check_events(findings, events, workload, reference, misrouted)
    check_balances_topic(findings, balances, reference)
    check_database(findings, settings, reference)
    report = verify(settings, group=f"{settings.topic_prefix}verify")
    if not report.ok:
        problems = [line for line in report.lines() if "ok" not in line.split(":")[-1]]
        findings.violation("verify", "; ".join(problems[:EXAMPLES_MAX]))
    check_dead_letters(findings, dead, workload)
    return findings


def read_topic(settings: Settings, topic: str) -> list[Record]:
    """Every committed record of every partition of ``topic``, in offset order per partition."""
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"chaos-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
    )
    pending = set(range(settings.partitions))
    records: list[Record] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {pending} not read in {READ_TIMEOUT_S} s")
            for message in consumer.consume(CONSUME_BATCH_MAX, POLL_S):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"{topic}: {error.str()}")
                    pending.discard(message.partition() or 0)
                    continue
                headers: dict[str, bytes] = {}
                for name, value in list(message.headers() or []):
                    headers[str(name)] = value if isinstance(value, bytes) else b""
                records.append(
                    Record(message.partition() or 0, message.key() or b"", message.value(), headers)
                )
    finally:
        consumer.close()
    return records


def check_outcomes(
    findings: Findings,
    records: list[Record],
    reference: ReferenceLedger,
    misrouted: set[tuple[str, str]],
) -> None:
    for key, count in Counter(record.key for record in records).items():
        findings.duplicate("outcome", key.decode(errors="replace"), count - 1)
    found: dict[tuple[str, str], Outcome] = {}
    for record in records:
        if record.value is None:
            findings.violation("outcome tombstone", record.key.decode(errors="replace"))
            continue
        outcome = decode_outcome(record.value)
        found[(outcome.tenant_id, outcome.idempotency_key)] = outcome
    for key, expected in reference.outcomes.items():
        stored = found.get(key)
        if stored is None:
            findings.lose("outcome", f"{key}")
            continue
        reason = None if stored.reason is None else stored.reason.value
        seen = (stored.status.value, reason, len(stored.event_sequences))
        wanted = (expected.status, expected.reason, len(expected.sequences))
        if seen != wanted:
            findings.violation("outcome differs", f"{key}: {seen}, fold {wanted}")
    for key in sorted(set(found) - set(reference.outcomes)):
        kind = "misrouted decided" if key in misrouted else "unexpected outcome"
        findings.violation(kind, f"{key}")


def check_events(
    findings: Findings,
    records: list[Record],
    workload: RoundWorkload,
    reference: ReferenceLedger,
    misrouted: set[tuple[str, str]],
) -> None:
    by_tenant: dict[str, list[Event]] = {}
    for record in records:
        if record.value is None:
            findings.violation("event tombstone", record.key.decode(errors="replace"))
            continue
        event = decode_event(record.value)
        by_tenant.setdefault(event.tenant_id, []).append(event)
    wanted: dict[str, list[tuple[str, str | None, int | None]]] = {}
    for expected in reference.events:
        wanted.setdefault(expected.tenant_id, []).append(
            (expected.kind, expected.idempotency_key, expected.amount)
        )
    for tenant_id in sorted(set(by_tenant) | set(reference.tenants)):
        events = by_tenant.get(tenant_id, [])
        check_chain(findings, tenant_id, events)
        expired = {e.transfer_id for e in events if isinstance(e, PendingExpired)}
        findings.expired += len(expired)
        expected_expired = set(workload.expiring.get(tenant_id, []))
        findings.violation(
            "expiry",
            f"{tenant_id}: {len(expired)} expired, {len(expected_expired)} expected",
            len(expired ^ expected_expired),
        )
        seen = [
            (type(e).__name__, e.idempotency_key, getattr(e, "amount", None))
            for e in events
            if not isinstance(e, PendingExpired)
        ]
        compare_command_events(findings, tenant_id, seen, wanted.get(tenant_id, []), misrouted)


def check_chain(findings: Findings, tenant_id: str, events: list[Event]) -> None:
    for sequence, count in Counter(event.sequence for event in events).items():
        findings.duplicate("event sequence", f"{tenant_id}#{sequence}", count - 1)
    if [e.sequence for e in events] != list(range(1, len(events) + 1)):
        findings.violation("sequence gap", f"{tenant_id}: {len(events)} events, not 1..n")
    previous_hash, previous_at_us = GENESIS_HASH, 0
    for event in events:
        if event.prev_hash != previous_hash:
            findings.violation("hash chain", f"{tenant_id}#{event.sequence}")
        if event.effective_at_us < previous_at_us:
            findings.violation(
                "effective time went back",
                f"{tenant_id}#{event.sequence}: {previous_at_us - event.effective_at_us} us back",
            )
        previous_hash, previous_at_us = event.hash, max(previous_at_us, event.effective_at_us)


def compare_command_events(
    findings: Findings,
    tenant_id: str,
    seen: list[tuple[str, str | None, int | None]],
    wanted: list[tuple[str, str | None, int | None]],
    misrouted: set[tuple[str, str]],
) -> None:
    if seen == wanted:
        return
    extra = Counter(seen) - Counter(wanted)
    missing = Counter(wanted) - Counter(seen)
    keys_wanted = {key for _, key, _ in wanted}
    for (kind, key, amount), count in extra.items():
        if (tenant_id, key) in misrouted:
            findings.violation("misrouted decided", f"{tenant_id}: {kind} {key}", count)
        elif key in keys_wanted:
            findings.duplicate("event", f"{tenant_id}: {kind} {key} {amount}", count)
        else:
            findings.violation("unexpected event", f"{tenant_id}: {kind} {key} {amount}", count)
    for (kind, key, amount), count in missing.items():
        findings.lose("event", f"{tenant_id}: {kind} {key} {amount}", count)
    if not extra and not missing:
        findings.violation("event order", f"{tenant_id}: the fold's events in another order")


def check_balances_topic(
    findings: Findings, records: list[Record], reference: ReferenceLedger
) -> None:
    latest = {record.key: record.value for record in records if record.value is not None}
    accounts: dict[tuple[str, str], Counters] = {}
    heads: dict[str, int] = {}
    for value in latest.values():
        state = decode_state(value)
        if isinstance(state, AccountState):
            accounts[(state.tenant_id, state.account_id)] = (
                state.debits_posted, state.credits_posted,
                state.debits_pending, state.credits_pending,
            )  # fmt: skip
        elif isinstance(state, TenantHead):
            heads[state.tenant_id] = state.last_sequence
    compare_balances(findings, "balances topic", accounts, reference)
    for tenant_id, tenant in reference.tenants.items():
        if heads.get(tenant_id) != tenant.sequence:
            findings.violation(
                "tenant head", f"{tenant_id}: {heads.get(tenant_id)}, fold {tenant.sequence}"
            )


def compare_balances(
    findings: Findings,
    where: str,
    accounts: dict[tuple[str, str], Counters],
    reference: ReferenceLedger,
) -> None:
    expected = fold_balances(reference)
    for key in sorted(set(accounts) | set(expected)):
        if accounts.get(key) != expected.get(key):
            findings.violation(where, f"{key}: {accounts.get(key)}, fold {expected.get(key)}")


def fold_balances(reference: ReferenceLedger) -> dict[tuple[str, str], Counters]:
    return {
        (tenant_id, name): account.counters()
        for tenant_id, tenant in reference.tenants.items()
        for name, account in tenant.accounts.items()
    }


def check_database(findings: Findings, settings: Settings, reference: ReferenceLedger) -> None:
    with psycopg.connect(settings.database_dsn) as connection:
        rows = connection.execute(SELECT_BALANCES).fetchall()
    stored = {(row[0], row[1]): (row[2], row[3], row[4], row[5]) for row in rows}
    compare_balances(findings, "balances postgres", stored, reference)
    totals: Counter[tuple[str, str, str]] = Counter()
    for (tenant_id, account_id), (
        debits,
        credits,
        debits_pending,
        credits_pending,
    ) in stored.items():
        tenant = reference.tenants.get(tenant_id)
        account = None if tenant is None else tenant.accounts.get(account_id)
        currency = "?" if account is None else account.currency
        totals[(tenant_id, currency, "posted")] += credits - debits
        totals[(tenant_id, currency, "pending")] += credits_pending - debits_pending
    for key, total in sorted(totals.items()):
        if total != 0:
            findings.violation("zero sum", f"{key}: {total}")


def check_dead_letters(findings: Findings, records: list[Record], workload: RoundWorkload) -> None:
    kinds_by_value: dict[bytes, list[str]] = {}
    for record in records:
        kind = record.headers.get(HEADER_ERROR_KIND, b"").decode(errors="replace")
        kinds_by_value.setdefault(record.value or b"", []).append(kind)
    for misrouted in workload.misrouted:
        kinds = kinds_by_value.pop(misrouted.value, [])
        if kinds != [misrouted.kind]:
            findings.violation(
                "misrouted not dead-lettered",
                f"{misrouted.tenant_id}/{misrouted.idempotency_key}: dlq kinds {kinds},"
                f" want [{misrouted.kind!r}]",
            )
    poison = Counter(value for _, value, _ in workload.poison)
    left = Counter({value: len(kinds) for value, kinds in kinds_by_value.items()})
    differing = sum(((poison - left) + (left - poison)).values())
    findings.violation(
        "dlq differs",
        f"{sum(poison.values())} poison sent, {sum(left.values())} other dead letters",
        differing,
    )
