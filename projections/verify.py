"""``streamledger verify``: reconcile the log with itself and with PostgreSQL, per tenant.

This is deliberately the ledger's **second, independent implementation** of the chain rules
(STYLE.md rule 13): it shares no checking code with the projection (``projections.batch``) or
the processor, decodes with the codec's model (not the projection's record decoder) and folds
the balances itself. Keep it that way: a rule changed in one place must be changed here by hand,
so a bug in one is caught by the other.

Reads ``ledger.events`` (read_committed) from the beginning to the end offsets taken at start and
checks, per tenant:

- the partition: a tenant's events belong on ``murmur2(tenant) % partitions``, the partition of
  its commands. An event anywhere else is a **fork** (e.g. a command produced to the wrong
  partition and decided there as the start of a second chain); it is named with its partition,
  offset and sequence, the event of the real chain it repeats, and whether it breaks the chain,
  and is not folded. An operator's release (``tenant_releases``, ``project --rebuild
  --release-tenant``) turns the forks it covers into notes;
- gapless sequences: 1, 2, 3, … in log order, no gap, no repeat (a repeat names both places);
- the hash chain: each ``prev_hash`` is the previous event's ``hash`` (``GENESIS_HASH`` first)
  and each ``hash`` is ``SHA-256(prev_hash + canonical bytes)``, the canonical bytes taken from
  the record **as written** (``record_canonical_bytes``), never re-encoded: an event written
  before schemas v1.4 has no ``metadata`` in its bytes (decision 0055);
- time: no event is effective before its predecessor (released ones are notes);
- the balances each event carries equal a fold of the events' amounts (so a re-hashed event with
  a changed amount is caught even at the end of the chain);
- per currency, the sum of all account balances (posted and pending) is zero;
- PostgreSQL's ``ledger.balances`` equal the fold (missing, extra or different rows), and the
  projection has quarantined no tenant (``ledger.quarantined_tenants``);
- PostgreSQL's ``ledger.transactions`` (migration 0008) hold one row per multi-leg transaction
  of the log with its posting count, pending flag, reversed transaction, status and the
  sequences that created and last changed it, folded here from the transaction events;
- PostgreSQL's ``ledger.event_chain`` (migration 0006: what every report names as its last
  event) holds exactly the log's chain: one row per sequence 1..last with the log's hash,
  effective time and (migration 0014, contract v1.7) actor, none missing, none extra, and every
  journal row of ``ledger.entries`` names its event's actor (decisions 0057, 0093);
- PostgreSQL's metadata search indexes ``account_metadata``, ``transfer_metadata`` (migration
  0009) and ``transaction_metadata`` (0013) hold exactly one row per metadata entry of what the
  log creates — an account, a transfer, a transaction and each of its postings
  ``{transaction_id}/{i}`` — with the creating event's sequence, none missing, none extra
  (decision 0078): a search answers from these rows alone;
- ``ledger.notifications`` holds exactly the balance-monitor notifications the log causes
  (``projections.verify_notifications``: each recomputed from the events, none missing, none
  extra, every field equal).

The audit itself is pure (``TenantAudit.observe``); only ``read_log`` and ``read_database`` do I/O.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from psycopg import sql

from projections.sink import consumer_config
from projections.store import ProjectionDatabaseError
from projections.verify_notifications import NotificationAudit
from schemas.codec import DecodeError, decode_event, decode_notification, record_canonical_bytes
from schemas.event_time import to_microseconds
from schemas.keys import command_key, partition_for
from schemas.model import (
    GENESIS_HASH,
    HASH_BYTES,
    AccountOpened,
    Event,
    MonitorCreated,
    MonitorDeleted,
    Notification,
    PendingPosted,
    TransactionPending,
    TransactionPendingExpired,
    TransactionPendingPosted,
    TransactionPendingVoided,
    TransactionPosted,
    TransferPending,
    TransferPosted,
)
from schemas.topics import EVENTS_TOPIC, NOTIFICATIONS_TOPIC
from streamledger.errors import InfraError
from streamledger.settings import Settings

READ_TIMEOUT_S = 1.0
READ_IDLE_S_MAX = 30.0
READ_BATCH = 10_000
WATERMARK_TIMEOUT_S = 30

SELECT_BALANCES = (
    "SELECT tenant_id, account_id, debits_posted, credits_posted, debits_pending,"
    " credits_pending FROM ledger.balances"
)
QUARANTINE_TABLES_EXIST = (
    "SELECT to_regclass('ledger.quarantined_tenants') IS NOT NULL"
    " AND to_regclass('ledger.tenant_releases') IS NOT NULL"
)
SELECT_QUARANTINES = (
    "SELECT tenant_id, reason, detail, partition, record_offset, sequence"
    " FROM ledger.quarantined_tenants"
)
SELECT_RELEASES = "SELECT tenant_id, partition, before_offset FROM ledger.tenant_releases"
TRANSACTIONS_TABLE_EXISTS = "SELECT to_regclass('ledger.transactions') IS NOT NULL"
EVENT_CHAIN_TABLE_EXISTS = "SELECT to_regclass('ledger.event_chain') IS NOT NULL"
SELECT_EVENT_CHAIN = (
    "SELECT tenant_id, sequence, hash, effective_at, actor FROM ledger.event_chain"
    " ORDER BY tenant_id, sequence"
)
# Journal rows whose actor is not their event's (migration 0014): event_chain.actor is checked
# against the log, so this ties every entries.actor to the log too.
SELECT_ENTRY_ACTOR_DIFFERENCES = (
    "SELECT e.tenant_id, count(*), min(e.sequence) FROM ledger.entries AS e"
    " JOIN ledger.event_chain AS c USING (tenant_id, sequence)"
    " WHERE e.actor <> c.actor GROUP BY e.tenant_id ORDER BY e.tenant_id"
)
EVENT_CHAIN_FETCH_ROWS = 10_000  # rows per round trip of the streamed read
CHAIN_DIFFERENCES_NAMED_MAX = 5  # per tenant; the rest are counted
# The metadata search indexes (decisions 0056, 0077): (table, owner id column, creating sequence
# column). Each is read ordered by tenant and owner through a server-side cursor.
METADATA_INDEXES = (
    ("account_metadata", "account_id", "opened_sequence"),
    ("transfer_metadata", "transfer_id", "created_sequence"),
    ("transaction_metadata", "transaction_id", "created_sequence"),
)
METADATA_TABLE_EXISTS = "SELECT to_regclass({table}) IS NOT NULL"
SELECT_METADATA = (
    "SELECT tenant_id, {owner}, {sequence}, key, value FROM ledger.{table}"
    " ORDER BY tenant_id, {owner}"
)
METADATA_DIFFERENCES_NAMED_MAX = 5  # per tenant and table; the rest are counted
METADATA_SHOWN_MAX = 120  # characters of a metadata map quoted in a difference
# A transaction's posting i is the transfer "{transaction_id}/{i}" (decision 0042), written here
# again, not taken from projections.batch.
POSTING_ID_SEPARATOR = "/"
SELECT_TRANSACTIONS = (
    "SELECT tenant_id, transaction_id, posting_count, pending, reverses, status,"
    " created_sequence, last_sequence FROM ledger.transactions"
)

Counters = tuple[int, int, int, int]  # debits_posted, credits_posted, debits_pending, ...
# a transaction as the log leaves it: (posting_count, pending, reverses, status,
# created_sequence, last_sequence), the columns of ``SELECT_TRANSACTIONS`` after the ids
TransactionFacts = tuple[int, bool, str | None, str, int, int]
Entries = tuple[tuple[str, str], ...]  # metadata (key, value) pairs, sorted by key
# what an index holds for one owner: (the creating sequences its rows name, its entries)
IndexedMetadata = tuple[tuple[int, ...], Entries]
# the status each transaction event leaves (written here again, not taken from ledger.effects)
TRANSACTION_STATUS_AFTER = {
    "TransactionPosted": "posted",
    "TransactionPending": "pending",
    "TransactionPendingPosted": "posted",
    "TransactionPendingVoided": "voided",
    "TransactionPendingExpired": "expired",
}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a record is in ``ledger.events``."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"partition {self.partition} offset {self.offset}"


@dataclass(slots=True)
class TenantAudit:
    """Everything verify learns about one tenant from the log.

    ``home``: the tenant's partition (``None``: not known, every event is taken as on it).
    ``places``: the offset on ``home`` of each sequence of the chain (index = sequence - 1), to
    name the original of a repeat. ``released``: per partition, the offset before which an
    operator released the tenant's records."""

    tenant_id: str
    home: int | None = None
    released: dict[int, int] = field(default_factory=dict)
    events: int = 0
    last_sequence: int = 0
    last_hash: bytes = GENESIS_HASH
    last_effective_at_us: int | None = None
    places: array[int] = field(default_factory=lambda: array("q"))
    # the chain's hash (32 bytes each) and effective time per sequence, for event_chain
    chain_hashes: bytearray = field(default_factory=bytearray)
    chain_times: array[int] = field(default_factory=lambda: array("q"))
    # and its actor (contract v1.7), as an index into actor_names: a few distinct keys per tenant
    chain_actors: array[int] = field(default_factory=lambda: array("l"))
    actor_indexes: dict[str, int] = field(default_factory=dict)
    actor_names: list[str] = field(default_factory=list)
    forks: list[tuple[Event, Place, bytes]] = field(default_factory=list)  # + canonical bytes
    currencies: dict[str, str] = field(default_factory=dict)  # account -> currency
    balances: dict[str, Counters] = field(default_factory=dict)
    transactions: dict[str, TransactionFacts] = field(default_factory=dict)
    # per metadata index table: owner id -> (creating sequence, metadata entries) of what the log
    # creates with metadata (one entries tuple per event, shared by a transaction's postings)
    metadata: dict[str, dict[str, tuple[int, Entries]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notifications: NotificationAudit | None = None  # made with the first event of the chain

    def observe(self, event: Event, place: Place, canonical: bytes) -> None:
        """One event of the log, with the canonical bytes of its record as written."""
        self.events += 1
        if self.home is not None and place.partition != self.home:
            self.forks.append((event, place, canonical))  # judged once the whole chain is read
            return
        where = f"on {place}"
        if event.sequence != self.last_sequence + 1:
            kind = "repeat" if event.sequence <= self.last_sequence else "gap"
            original = self.place_of(event.sequence) if kind == "repeat" else None
            self.problems.append(
                f"sequence {kind}: {event.sequence} after {self.last_sequence} {where}"
                + ("" if original is None else f"; repeats sequence {event.sequence} ({original})")
            )
        if event.prev_hash != self.last_hash:
            self.problems.append(
                f"hash chain broken: sequence {event.sequence} {where}: prev_hash is not the "
                f"hash of sequence {self.last_sequence}"
            )
        self.check_hash(event, canonical, where)
        self.check_time(event, place)
        if event.sequence == len(self.places) + 1:
            self.places.append(place.offset)
            self.chain_hashes += event.hash
            self.chain_times.append(event.effective_at_us)
            self.chain_actors.append(self.actor_index(event.actor))
        self.last_sequence = max(self.last_sequence, event.sequence)
        self.last_hash = event.hash
        self.fold(event, where)
        self.fold_transaction(event, where)
        self.index_metadata(event)
        if self.notifications is None:
            self.notifications = NotificationAudit(self.tenant_id)
        self.notifications.observe(event)

    def actor_index(self, actor: str) -> int:
        index = self.actor_indexes.get(actor)
        if index is None:
            index = self.actor_indexes[actor] = len(self.actor_names)
            self.actor_names.append(actor)
        return index

    def check_hash(self, event: Event, canonical: bytes, where: str) -> bool:
        digest = hashlib.sha256(event.prev_hash + canonical).digest()
        if digest != event.hash:
            self.problems.append(f"hash mismatch: sequence {event.sequence} {where}")
        return digest == event.hash

    def check_time(self, event: Event, place: Place) -> None:
        last = self.last_effective_at_us
        if last is not None and event.effective_at_us < last:
            message = (
                f"time went back: sequence {event.sequence} on {place} is effective before "
                f"sequence {self.last_sequence} ({event.effective_at_us} < {last} us)"
            )
            if self.is_released(place):
                self.notes.append(f"{message}; released by an operator")
            else:
                self.problems.append(message)
        self.last_effective_at_us = event.effective_at_us

    def place_of(self, sequence: int) -> Place | None:
        if self.home is None or not 0 < sequence <= len(self.places):
            return None
        return Place(self.home, self.places[sequence - 1])

    def is_released(self, place: Place) -> bool:
        before = self.released.get(place.partition)
        return before is not None and place.offset < before

    def judge_forks(self) -> None:
        """Name each event found on another partition than the tenant's: the event of the real
        chain it repeats, and that it breaks the chain (it is never folded)."""
        for event, place, canonical in self.forks:
            original = self.place_of(event.sequence)
            repeats = (
                f"repeats sequence {event.sequence} ({original})"
                if original is not None
                else f"follows no event of the chain (its last sequence is {self.last_sequence})"
            )
            start = " (a second chain from genesis)" if event.prev_hash == GENESIS_HASH else ""
            message = (
                f"fork: sequence {event.sequence} on {place} (the tenant's partition is "
                f"{self.home}) {repeats}; chain broken{start}"
            )
            self.check_hash(event, canonical, f"on {place}")
            if self.is_released(place):
                self.notes.append(f"{message}; released by an operator, not folded")
            else:
                self.problems.append(message)

    def fold(self, event: Event, where: str) -> None:
        if isinstance(event, AccountOpened):
            self.currencies[event.account_id] = event.currency
            self.balances[event.account_id] = (0, 0, 0, 0)
            expected = {event.account_id: (0, 0, 0, 0)}
        else:
            expected = {}
            for debit_id, credit_id, posted, pending in movements(event):
                debit = expected.get(debit_id) or self.balances.get(debit_id, (0, 0, 0, 0))
                expected[debit_id] = (debit[0] + posted, debit[1], debit[2] + pending, debit[3])
                credit = expected.get(credit_id) or self.balances.get(credit_id, (0, 0, 0, 0))
                expected[credit_id] = (
                    credit[0],
                    credit[1] + posted,
                    credit[2],
                    credit[3] + pending,
                )
        carried = {
            b.account_id: (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
            for b in event.balances
        }
        for account_id, counters in expected.items():
            if carried.get(account_id) != counters:
                self.problems.append(
                    f"balances after sequence {event.sequence} at {where}: account "
                    f"{account_id!r} carries {carried.get(account_id)}, the fold gives {counters}"
                )
            self.balances[account_id] = counters

    def fold_transaction(self, event: Event, where: str) -> None:
        """The transaction row a transaction event creates or ends."""
        status = TRANSACTION_STATUS_AFTER.get(type(event).__name__)
        if status is None:
            return
        transaction_id: str = getattr(event, "transaction_id")  # noqa: B009 - any of five types
        known = self.transactions.get(transaction_id)
        if isinstance(event, TransactionPosted | TransactionPending):
            if known is not None:
                self.problems.append(
                    f"transaction {transaction_id!r} created again at sequence {event.sequence}"
                    f" {where}"
                )
            reverses = event.reverses if isinstance(event, TransactionPosted) else None
            pending = isinstance(event, TransactionPending)
            self.transactions[transaction_id] = (
                len(event.postings),
                pending,
                reverses,
                status,
                event.sequence,
                event.sequence,
            )
        elif known is None or known[3] != "pending":
            self.problems.append(
                f"sequence {event.sequence} {where} ends transaction {transaction_id!r}, which is"
                f" {'missing' if known is None else known[3]}"
            )
        else:
            self.transactions[transaction_id] = (*known[:3], status, known[4], event.sequence)

    def index_metadata(self, event: Event) -> None:
        """The metadata index rows the event's creations must have (none for an event that ends
        or expires something: its own metadata stays in the log)."""
        entries: Entries = tuple(sorted(event.metadata))
        if not entries:
            return
        created: list[tuple[str, str]] = []
        if isinstance(event, AccountOpened):
            created.append(("account_metadata", event.account_id))
        elif isinstance(event, TransferPosted | TransferPending):
            created.append(("transfer_metadata", event.transfer_id))
        elif isinstance(event, TransactionPosted | TransactionPending):
            created.append(("transaction_metadata", event.transaction_id))
            created += [
                ("transfer_metadata", f"{event.transaction_id}{POSTING_ID_SEPARATOR}{index}")
                for index in range(len(event.postings))
            ]
        for table, owner_id in created:
            self.metadata.setdefault(table, {})[owner_id] = (event.sequence, entries)

    def check_metadata(self, table: str, stored: Iterable[tuple[str, IndexedMetadata]]) -> None:
        """PostgreSQL's index rows of this tenant in ``table``, per owner, against the log."""
        expected = self.metadata.get(table, {})
        differences: list[str] = []
        seen: set[str] = set()
        for owner_id, (sequences, entries) in stored:
            seen.add(owner_id)
            want = expected.get(owner_id)
            at = ", ".join(map(str, sequences))
            if want is None:
                differences.append(
                    f"holds {shown(entries)} of {owner_id!r} at sequence {at},"
                    " the log creates it with no metadata or not at all"
                )
            elif (sequences, entries) != ((want[0],), want[1]):
                differences.append(
                    f"holds {shown(entries)} of {owner_id!r} at sequence {at},"
                    f" the log {shown(want[1])} at {want[0]}"
                )
        missing = sorted(set(expected) - seen)
        if missing:
            names = ", ".join(map(repr, missing[:METADATA_DIFFERENCES_NAMED_MAX]))
            differences.append(f"lacks the rows of {len(missing)} the log gives metadata: {names}")
        for difference in differences[:METADATA_DIFFERENCES_NAMED_MAX]:
            self.problems.append(f"PostgreSQL {table} {difference}")
        if len(differences) > METADATA_DIFFERENCES_NAMED_MAX:
            more = len(differences) - METADATA_DIFFERENCES_NAMED_MAX
            self.problems.append(f"PostgreSQL {table}: {more} more differences")

    def check_transactions(self, stored: dict[str, TransactionFacts]) -> None:
        for transaction_id in sorted(set(stored) | set(self.transactions)):
            want, got = self.transactions.get(transaction_id), stored.get(transaction_id)
            if want != got:
                self.problems.append(
                    f"PostgreSQL transaction {transaction_id!r} is {got} (posting_count, pending,"
                    f" reverses, status, created_sequence, last_sequence), the log's fold gives"
                    f" {want}"
                )

    def check_sums(self) -> None:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for account_id, (dp, cp, dq, cq) in self.balances.items():
            currency = self.currencies.get(account_id, "?")
            sums[currency][0] += cp - dp
            sums[currency][1] += cq - dq
        for currency, (posted, pending) in sorted(sums.items()):
            if posted or pending:
                self.problems.append(
                    f"{currency}: balances sum to {posted} posted, {pending} pending (not zero)"
                )

    def check_event_chain(self, stored: Iterable[tuple[int, bytes, datetime, str]]) -> None:
        """PostgreSQL's links of this tenant (in sequence order) against the log's chain."""
        differences: list[str] = []
        found = 0
        for sequence, digest, effective_at, actor in stored:
            index = sequence - 1
            if not 0 <= index < len(self.chain_times):
                differences.append(f"holds sequence {sequence}, the log's chain has no such event")
                continue
            found += 1
            at_us = to_microseconds(effective_at)
            logged = bytes(self.chain_hashes[index * HASH_BYTES : (index + 1) * HASH_BYTES])
            if bytes(digest) != logged or at_us != self.chain_times[index]:
                differences.append(
                    f"sequence {sequence} holds hash {bytes(digest).hex()[:16]}… at {at_us} us,"
                    f" the log {logged.hex()[:16]}… at {self.chain_times[index]} us"
                )
            elif actor != self.actor_names[self.chain_actors[index]]:
                differences.append(
                    f"sequence {sequence} holds actor {actor!r},"
                    f" the log {self.actor_names[self.chain_actors[index]]!r}"
                )
        if found < len(self.chain_times):
            differences.append(f"lacks {len(self.chain_times) - found} of the log's links")
        for difference in differences[:CHAIN_DIFFERENCES_NAMED_MAX]:
            self.problems.append(f"PostgreSQL event_chain {difference}")
        if len(differences) > CHAIN_DIFFERENCES_NAMED_MAX:
            more = len(differences) - CHAIN_DIFFERENCES_NAMED_MAX
            self.problems.append(f"PostgreSQL event_chain: {more} more differences")

    def check_database(self, stored: dict[str, Counters]) -> None:
        for account_id in sorted(set(stored) | set(self.balances)):
            want, got = self.balances.get(account_id), stored.get(account_id)
            if want != got:
                self.problems.append(
                    f"PostgreSQL balance of {account_id!r} is {got}, the log's fold gives {want}"
                )


def shown(entries: Entries) -> str:
    text = repr(dict(entries))
    return text if len(text) <= METADATA_SHOWN_MAX else text[: METADATA_SHOWN_MAX - 1] + "…"


def movements(event: Event) -> list[tuple[str, str, int, int]]:
    """(debit account, credit account, posted change, pending change) of each posting of a money
    event, in order: a transfer event has one, a transaction event one per posting; a monitor
    event (v1.5) none: it moves no money."""
    if isinstance(event, MonitorCreated | MonitorDeleted):
        return []
    if isinstance(event, TransferPosted):
        return [(event.debit_account_id, event.credit_account_id, event.amount, 0)]
    if isinstance(event, TransferPending):
        return [(event.debit_account_id, event.credit_account_id, 0, event.amount)]
    if isinstance(event, PendingPosted):
        change = (event.amount, -event.pending_amount)
        return [(event.debit_account_id, event.credit_account_id, *change)]
    if isinstance(event, TransactionPosted):
        return [(p.debit_account_id, p.credit_account_id, p.amount, 0) for p in event.postings]
    if isinstance(event, TransactionPending):
        return [(p.debit_account_id, p.credit_account_id, 0, p.amount) for p in event.postings]
    if isinstance(event, TransactionPendingPosted):
        return [
            (p.debit_account_id, p.credit_account_id, p.amount, -reserved)
            for p, reserved in zip(event.postings, event.pending_amounts, strict=True)
        ]
    assert not isinstance(event, AccountOpened)
    if isinstance(event, TransactionPendingVoided | TransactionPendingExpired):
        return [(p.debit_account_id, p.credit_account_id, 0, -p.amount) for p in event.postings]
    return [(event.debit_account_id, event.credit_account_id, 0, -event.amount)]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    audits: dict[str, TenantAudit]
    log_problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.log_problems and all(not a.problems for a in self.audits.values())

    def lines(self) -> Iterator[str]:
        for problem in self.log_problems:
            yield f"log: {problem}"
        for tenant_id in sorted(self.audits):
            audit = self.audits[tenant_id]
            state = "ok" if not audit.problems else f"{len(audit.problems)} difference(s)"
            yield (
                f"tenant {tenant_id}: {audit.events} events, "
                f"last sequence {audit.last_sequence}: {state}"
            )
            for problem in audit.problems:
                yield f"  - {tenant_id}: {problem}"
            for note in audit.notes:
                yield f"  . {tenant_id}: {note}"


def verify(settings: Settings, *, group: str) -> VerifyReport:
    audits: dict[str, TenantAudit] = {}
    log_problems: list[str] = []
    quarantines, releases = read_operations(settings)
    for record in read_log(settings, group=group):
        place = Place(record.partition, record.offset)
        try:
            event = decode_event(record.value)
        except DecodeError as exc:
            log_problems.append(
                f"{record.topic}[{place.partition}]@{place.offset} is not a ledger event: {exc}"
            )
            continue
        audit = audits.get(event.tenant_id)
        if audit is None:
            home = partition_for(command_key(event.tenant_id), record.partitions)
            released = releases.get(event.tenant_id, {})
            audit = audits[event.tenant_id] = TenantAudit(event.tenant_id, home, released)
        audit.observe(event, place, record_canonical_bytes(record.value))
    stored = read_database(settings)
    transactions = read_transactions(settings)
    check_event_chains(settings, audits)
    check_entry_actors(settings, audits)
    check_metadata_indexes(settings, audits)
    for tenant_id in sorted(
        (set(stored) | set(quarantines) | set(transactions or {})) - set(audits)
    ):
        audits[tenant_id] = TenantAudit(tenant_id)
    written = read_notifications(settings, group=group, problems=log_problems)
    for tenant_id in sorted(set(written) - set(audits)):
        audits[tenant_id] = TenantAudit(tenant_id)
    for tenant_id, audit in audits.items():
        notifications = audit.notifications or NotificationAudit(tenant_id)
        notifications.compare(written.get(tenant_id, ()))
        audit.problems.extend(notifications.problems)
        audit.judge_forks()
        audit.check_sums()
        audit.check_database(stored.get(tenant_id, {}))
        if transactions is not None:
            audit.check_transactions(transactions.get(tenant_id, {}))
        if tenant_id in quarantines:
            audit.problems.append(f"the projection quarantined it: {quarantines[tenant_id]}")
    return VerifyReport(audits, tuple(log_problems))


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str
    partitions: int  # of the topic
    partition: int
    offset: int
    value: bytes


def read_notifications(
    settings: Settings, *, group: str, problems: list[str]
) -> dict[str, list[Notification]]:
    """``ledger.notifications`` per tenant (none on a stack from before schemas v1.5); a record
    that is not a notification is a problem of the log."""
    written: dict[str, list[Notification]] = defaultdict(list)
    records = read_log(settings, group=group, topic_name=NOTIFICATIONS_TOPIC, required=False)
    for record in records:
        try:
            notification = decode_notification(record.value)
        except DecodeError as exc:
            problems.append(
                f"{record.topic}[{record.partition}]@{record.offset} is not a notification: {exc}"
            )
            continue
        written[notification.tenant_id].append(notification)
    return written


def read_log(
    settings: Settings, *, group: str, topic_name: str = EVENTS_TOPIC, required: bool = True
) -> Iterator[LogRecord]:
    """Every committed record up to the end offsets taken at start (nothing from a topic that
    does not exist and is not ``required``)."""
    topic = settings.topic(topic_name)
    consumer = Consumer(consumer_config(settings, group, partition_eof=True))
    try:
        metadata = consumer.list_topics(topic, timeout=WATERMARK_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            error = None if metadata is None else metadata.error
            if error is not None and error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                # a refusal is not a missing topic (under scram: this principal may not read it)
                raise InfraError(f"topic {topic}: {error.str()}")
            if not required:
                return
            raise InfraError(f"topic {topic} not found")
        ends = {}
        for partition in sorted(metadata.partitions):
            tp = TopicPartition(topic, partition)
            ends[partition] = consumer.get_watermark_offsets(tp, timeout=WATERMARK_TIMEOUT_S)[1]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        for partition, offset, value in read_until(consumer, topic, ends):
            yield LogRecord(topic, len(ends), partition, offset, value)
    finally:
        consumer.close()


def read_until(
    consumer: Consumer, topic: str, ends: dict[int, int]
) -> Iterator[tuple[int, int, bytes]]:
    """(partition, offset, value) until every partition reported its end at or past the end
    offsets taken at start (read_committed: the position alone never passes a trailing
    transaction marker)."""
    pending = {partition for partition, end in ends.items() if end > 0}
    idle_since = time.monotonic()
    while pending:
        records = consumer.consume(num_messages=READ_BATCH, timeout=READ_TIMEOUT_S)
        if records:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > READ_IDLE_S_MAX:
            raise InfraError(f"verify: {topic} stopped before its end offsets {ends}")
        for record in records:
            partition, offset, error = record.partition(), record.offset(), record.error()
            if partition is None or offset is None:
                continue
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise InfraError(f"reading {topic}: {error}")
                if offset >= ends[partition]:
                    pending.discard(partition)
                continue
            value = record.value()
            if value is not None and offset < ends[partition]:
                yield partition, offset, value


def check_event_chains(settings: Settings, audits: dict[str, TenantAudit]) -> None:
    """Stream ``event_chain`` tenant by tenant into each audit (a tenant only PostgreSQL knows
    gets an audit of its own: its links are all extra); nothing before migration 0006."""
    if not query(settings, EVENT_CHAIN_TABLE_EXISTS)[0][0]:
        return
    checked: set[str] = set()
    for tenant_id, links in itertools.groupby(read_event_chain(settings), key=lambda row: row[0]):
        audit = audits.setdefault(tenant_id, TenantAudit(tenant_id))
        audit.check_event_chain((row[1], row[2], row[3], row[4]) for row in links)
        checked.add(tenant_id)
    for tenant_id in sorted(set(audits) - checked):
        audits[tenant_id].check_event_chain(())


def check_entry_actors(settings: Settings, audits: dict[str, TenantAudit]) -> None:
    """Each journal row names its event's actor (``event_chain``'s, itself checked against the
    log; contract v1.7, decision 0093); nothing before migration 0006."""
    if not query(settings, EVENT_CHAIN_TABLE_EXISTS)[0][0]:
        return
    for tenant_id, count, first in query(settings, SELECT_ENTRY_ACTOR_DIFFERENCES):
        audit = audits.setdefault(tenant_id, TenantAudit(tenant_id))
        audit.problems.append(
            f"PostgreSQL entries: {count} journal rows name another actor than their event"
            f" (the first at sequence {first})"
        )


def check_metadata_indexes(settings: Settings, audits: dict[str, TenantAudit]) -> None:
    """Stream each metadata index tenant by tenant into each audit (a tenant only PostgreSQL
    knows gets an audit of its own: its rows are all extra); a table its migration has not made
    yet is not checked."""
    for table, owner, sequence in METADATA_INDEXES:
        exists = sql.SQL(METADATA_TABLE_EXISTS).format(table=sql.Literal(f"ledger.{table}"))
        if not query(settings, exists)[0][0]:
            continue
        statement = sql.SQL(SELECT_METADATA).format(
            table=sql.Identifier(table),
            owner=sql.Identifier(owner),
            sequence=sql.Identifier(sequence),
        )
        checked: set[str] = set()
        rows = read_streamed(settings, statement, f"verify_{table}")
        for tenant_id, tenant_rows in itertools.groupby(rows, key=lambda row: row[0]):
            audit = audits.setdefault(tenant_id, TenantAudit(tenant_id))
            audit.check_metadata(table, indexed_by_owner(tenant_rows))
            checked.add(tenant_id)
        for tenant_id in sorted(set(audits) - checked):
            audits[tenant_id].check_metadata(table, ())


def indexed_by_owner(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[str, IndexedMetadata]]:
    """(owner id, (its rows' distinct sequences, its entries sorted by key)) of rows ordered by
    owner."""
    for owner_id, owner_rows in itertools.groupby(rows, key=lambda row: row[1]):
        found = list(owner_rows)
        sequences = tuple(sorted({int(row[2]) for row in found}))
        yield str(owner_id), (sequences, tuple(sorted((row[3], row[4]) for row in found)))


def read_streamed(
    settings: Settings, statement: sql.Composed, cursor_name: str
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``statement`` through a server-side cursor."""
    try:
        with (
            psycopg.connect(settings.database_dsn) as conn,
            conn.cursor(name=cursor_name) as cursor,
        ):
            cursor.itersize = EVENT_CHAIN_FETCH_ROWS
            cursor.execute(statement)
            yield from cursor
    except psycopg.OperationalError as exc:
        raise ProjectionDatabaseError(f"verify cannot read PostgreSQL: {exc}") from exc


def read_event_chain(settings: Settings) -> Iterator[tuple[str, int, bytes, datetime, str]]:
    """Every link, ordered by tenant and sequence, through a server-side cursor."""
    try:
        with (
            psycopg.connect(settings.database_dsn) as conn,
            conn.cursor(name="verify_event_chain") as cursor,
        ):
            cursor.itersize = EVENT_CHAIN_FETCH_ROWS
            cursor.execute(SELECT_EVENT_CHAIN)
            yield from cursor
    except psycopg.OperationalError as exc:
        raise ProjectionDatabaseError(f"verify cannot read PostgreSQL: {exc}") from exc


def read_database(settings: Settings) -> dict[str, dict[str, Counters]]:
    stored: dict[str, dict[str, Counters]] = defaultdict(dict)
    for tenant_id, account_id, dp, cp, dq, cq in query(settings, SELECT_BALANCES):
        stored[tenant_id][account_id] = (dp, cp, dq, cq)
    return stored


def read_transactions(settings: Settings) -> dict[str, dict[str, TransactionFacts]] | None:
    """Per tenant, the ``transactions`` rows (None before migration 0008: nothing to check)."""
    if not query(settings, TRANSACTIONS_TABLE_EXISTS)[0][0]:
        return None
    stored: dict[str, dict[str, TransactionFacts]] = defaultdict(dict)
    for tenant_id, transaction_id, *facts in query(settings, SELECT_TRANSACTIONS):
        count, pending, reverses, status, created, last = facts
        stored[tenant_id][transaction_id] = (count, pending, reverses, status, created, last)
    return stored


def read_operations(settings: Settings) -> tuple[dict[str, str], dict[str, dict[int, int]]]:
    """The projection's quarantined tenants (tenant -> what and where) and the operators'
    releases (tenant -> partition -> before offset); empty before migration 0004."""
    if not query(settings, QUARANTINE_TABLES_EXIST)[0][0]:
        return {}, {}
    quarantines = {
        str(tenant): f"{reason} at partition {partition} offset {offset} (sequence {sequence}):"
        f" {detail}"
        for tenant, reason, detail, partition, offset, sequence in query(
            settings, SELECT_QUARANTINES
        )
    }
    releases: dict[str, dict[int, int]] = defaultdict(dict)
    for tenant, partition, before_offset in query(settings, SELECT_RELEASES):
        releases[str(tenant)][int(partition)] = int(before_offset)
    return quarantines, dict(releases)


def query(settings: Settings, statement: str | sql.Composed) -> list[Any]:
    try:
        with (
            psycopg.connect(settings.database_dsn, autocommit=True) as conn,
            conn.transaction(),
        ):
            return conn.execute(statement).fetchall()
    except psycopg.OperationalError as exc:
        raise ProjectionDatabaseError(f"verify cannot read PostgreSQL: {exc}") from exc
