"""Time in the ledger core (issue 13, parts 2 and 3; decision 0026), as Hypothesis properties
over the random histories of ``test_ledger_properties``:

- a tenant's effective times never decrease, whatever the record timestamps do (skewed clocks);
- with broker-stamped (non-decreasing) record timestamps, a tenant's events are a function of
  its own commands alone: the same bytes with or without another tenant's traffic on the same
  partition and with or without tick records;
- an expiry is effective at its deadline, and ticks, replays and restores give the same bytes.
"""

from __future__ import annotations

import random

from hypothesis import given

import ledger
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import encode_event
from schemas.model import Command, Event, PendingExpired, TransferPending
from tests.unit.ledger_builders import SECOND_US, T0_US, Ledger, open_account, transfer
from tests.unit.test_ledger_properties import PROPERTY_SETTINGS, History, build, histories

Record = tuple[Command | None, int]  # None = a tick record
NEIGHBOUR = "t1"
SUBJECT = "t2"


def monotonic(commands: list[tuple[Command, int]]) -> list[tuple[Command, int]]:
    """The record timestamps a LogAppendTime topic would give: never decreasing."""
    latest, stamped = 0, []
    for command, timestamp_us in commands:
        latest = max(latest, timestamp_us)
        stamped.append((command, latest))
    return stamped


def with_ticks(records: list[tuple[Command, int]], seed: int) -> list[Record]:
    """Tick records between commands at random, each at a time between its neighbours'."""
    chooser = random.Random(seed)
    result: list[Record] = []
    previous_us = T0_US
    for command, timestamp_us in records:
        if chooser.random() < 0.3:
            low, high = sorted((previous_us, timestamp_us))
            result.append((None, chooser.randint(low, high)))
        result.append((command, timestamp_us))
        previous_us = timestamp_us
    result.append((None, previous_us + 3_600 * SECOND_US))  # a late tick expires everything due
    return result


def run_records(records: list[Record], state: ledger.LedgerState | None = None) -> list[Event]:
    state = state or ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=5)
    events: list[Event] = []
    for command, timestamp_us in records:
        decision = (
            ledger.step_tick(state, timestamp_us)
            if command is None
            else ledger.step(state, command, timestamp_us)
        )
        events.extend(decision.events)
    state.commit()
    return events


def event_bytes(events: list[Event], tenant: str) -> list[bytes]:
    return [encode_event(event) for event in events if event.tenant_id == tenant]


@PROPERTY_SETTINGS
@given(histories)
def test_effective_times_never_decrease_per_tenant(history: History) -> None:
    events = run_records(with_ticks(build(history), seed=1))
    latest: dict[str, int] = {}
    for event in events:
        assert event.effective_at_us >= latest.get(event.tenant_id, 0), event
        latest[event.tenant_id] = event.effective_at_us


@PROPERTY_SETTINGS
@given(histories)
def test_a_tenants_events_do_not_depend_on_its_neighbours_or_on_ticks(history: History) -> None:
    records = monotonic(build(history))
    alone = [(c, t) for c, t in records if c.tenant_id == SUBJECT]
    alone_with_late_tick: list[Record] = [*alone, (None, records[-1][1] + 3_600 * SECOND_US)]
    shared = run_records(with_ticks(records, seed=2))
    assert event_bytes(shared, SUBJECT) == event_bytes(run_records(alone_with_late_tick), SUBJECT)


@PROPERTY_SETTINGS
@given(histories)
def test_expiries_are_effective_at_their_deadline(history: History) -> None:
    events = run_records(with_ticks(monotonic(build(history)), seed=3))
    deadlines = {
        (event.tenant_id, event.transfer_id): event.expires_at_us
        for event in events
        if isinstance(event, TransferPending)
    }
    for event in events:
        if isinstance(event, PendingExpired):
            assert event.effective_at_us == deadlines[(event.tenant_id, event.transfer_id)]


@PROPERTY_SETTINGS
@given(histories)
def test_ticks_replay_and_restore_byte_identically(history: History) -> None:
    records = with_ticks(monotonic(build(history)), seed=4)
    straight = run_records(records)
    assert [encode_event(e) for e in run_records(records)] == [encode_event(e) for e in straight]
    half = len(records) // 2
    first = ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=5)
    before = run_records(records[:half], first)
    restored = ledger.restore(
        list(ledger.export_records(first)),
        list(ledger.outcomes_of(first)),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=5,
    )
    after = run_records(records[half:], restored)
    assert [encode_event(e) for e in before + after] == [encode_event(e) for e in straight]


def test_a_tick_expires_an_idle_partitions_pending_transfer_at_its_deadline() -> None:
    book = Ledger()
    for account_id in ("cash", "sales"):
        book.accept(open_account(account_id))
    created = book.accept(
        transfer("p1", "cash", "sales", 5, pending=True, pending_timeout_s=2), at_us=T0_US + 10
    )
    (pending,) = created.events
    assert isinstance(pending, TransferPending) and pending.expires_at_us is not None
    assert ledger.next_deadline_us(book.state) == pending.expires_at_us
    early = ledger.step_tick(book.state, pending.expires_at_us - 1)
    assert early.events == ()
    late = ledger.step_tick(book.state, pending.expires_at_us + 7 * SECOND_US)
    (expired,) = late.events
    assert isinstance(expired, PendingExpired)
    assert expired.effective_at_us == pending.expires_at_us
    assert ledger.next_deadline_us(book.state) is None
    assert book.state.stream_time_us == pending.expires_at_us + 7 * SECOND_US
