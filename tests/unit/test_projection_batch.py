"""The pure batch planner of the projection: rows per event, and the invariants it enforces."""

from __future__ import annotations

import dataclasses

import pytest

from projections.batch import (
    PlanContext,
    StoredHead,
    fold_transfers,
    head_problems,
    plan_batch,
    plan_records,
)
from projections.event_records import event_record
from projections.settings import ProjectionSettings
from schemas.keys import command_key, partition_for
from schemas.model import PendingPosted, TransferPosted
from streamledger.errors import InvariantViolationError, SettingError
from workloads.projection_events import generate


def test_a_workload_plans_one_journal_row_per_posting() -> None:
    workload = generate(5, tenants=3, commands=600)
    plan = plan_batch(workload.events)
    assert len(plan.entries) == workload.expected.postings
    assert plan.event_count == len(workload.events)
    final = fold_transfers({}, plan.transfer_events)
    assert {key: row.status for key, row in final.items()} == {
        key: transfer.status for key, transfer in workload.expected.transfers.items()
    }
    assert {key: row[2:6] for key, row in plan.balances.items()} == {
        key: account.counters() for key, account in workload.expected.accounts.items()
    }


def test_a_gap_a_repeat_a_broken_chain_or_a_step_back_in_time_quarantines_the_tenant() -> None:
    events = generate(6, tenants=1, commands=20).events
    tenant = events[0].tenant_id
    cases = [
        ([*events[:3], *events[4:]], "sequence_gap", 3),
        ([*events[:3], events[2], *events[3:]], "sequence_repeat", 3),
        ([*events[:3], dataclasses.replace(events[3], prev_hash=bytes(32))], "chain_broken", 3),
        (
            [*events[:3], dataclasses.replace(events[3], effective_at_us=0), *events[4:]],
            "time_went_back",
            3,
        ),
    ]
    for batch, reason, index in cases:
        plan = plan_batch(batch)
        quarantine = plan.quarantines[tenant]
        assert (quarantine.reason, quarantine.index) == (reason, index), quarantine
        assert plan.tenant_runs[tenant].last_sequence == 3  # the rows stop before the break
        assert plan.event_count == 3
        assert plan.held_events[tenant] == len(batch) - 3


def test_a_quarantined_tenant_is_held_back_and_the_others_go_on() -> None:
    workload = generate(7, tenants=2, commands=200)
    first, second = workload.tenants
    events = [e for e in workload.events if e.tenant_id == first]
    events += [dataclasses.replace(events[5], sequence=1)]  # a forged repeat of sequence 1
    events += [e for e in workload.events if e.tenant_id == second]
    plan = plan_batch(events)
    assert set(plan.quarantines) == {first}
    assert plan.quarantines[first].reason == "sequence_repeat"
    assert plan.tenant_runs[second].last_sequence == max(
        e.sequence for e in workload.events if e.tenant_id == second
    )
    held = plan_records(
        [event_record(e) for e in workload.events], context=PlanContext(held={first: 0})
    )
    assert set(held.tenant_runs) == {second} and not held.quarantines
    assert held.held_events[first] == sum(1 for e in workload.events if e.tenant_id == first)


def test_an_event_on_another_tenants_partition_quarantines_unless_released() -> None:
    events = generate(9, tenants=1, commands=30).events
    tenant = events[0].tenant_id
    home = partition_for(command_key(tenant), 12)
    foreign = (home + 1) % 12
    records = [event_record(e) for e in events]
    locations = [(home, offset) for offset in range(len(records))]
    records.insert(2, event_record(dataclasses.replace(events[0], account_id="forged")))
    locations.insert(2, (foreign, 17))
    plan = plan_records(records, locations, PlanContext(partitions=12))
    assert plan.quarantines[tenant].reason == "wrong_partition"
    assert (plan.quarantines[tenant].partition, plan.quarantines[tenant].offset) == (foreign, 17)
    released = PlanContext(partitions=12, releases={tenant: {foreign: 18, home: 0}})
    plan = plan_records(records, locations, released)
    assert not plan.quarantines and plan.excluded_events == 1
    assert plan.tenant_runs[tenant].last_sequence == events[-1].sequence


def test_heads_are_continued_or_the_tenant_is_quarantined_at_its_first_record() -> None:
    events = generate(10, tenants=1, commands=20).events
    tenant = events[0].tenant_id
    plan = plan_batch(events[5:])
    head = StoredHead(events[4].sequence, events[4].hash, events[4].effective_at_us)
    assert head_problems(plan, {tenant: head}) == {}
    assert head_problems(plan, {})[tenant].reason == "sequence_gap"
    later = StoredHead(head.sequence, head.hash, events[5].effective_at_us + 1)
    assert head_problems(plan, {tenant: later})[tenant].reason == "time_went_back"
    forked = StoredHead(head.sequence, bytes(32), head.effective_at_us)
    assert head_problems(plan, {tenant: forked})[tenant].reason == "chain_broken"


def test_a_transfer_is_finalized_once() -> None:
    events = generate(8, tenants=1, commands=300).events
    posted_pending = next(e for e in events if isinstance(e, PendingPosted))
    plan = plan_batch(events)
    again = event_record(posted_pending)
    assert again["event_type"] == "PendingPosted"
    with pytest.raises(InvariantViolationError, match="which is posted"):
        fold_transfers({}, [*plan.transfer_events, again])
    posted = next(e for e in events if isinstance(e, TransferPosted))
    twice = event_record(posted)
    assert twice["event_type"] == "TransferPosted"
    with pytest.raises(InvariantViolationError, match="already exists"):
        fold_transfers({}, [*plan.transfer_events, twice])


@pytest.mark.parametrize(
    ("name", "value"),
    [("batch_records_max", 0), ("batch_interval_ms", 10**9), ("pool_size_max", 0)],
)
def test_projection_limits_are_finite_and_named(name: str, value: int) -> None:
    with pytest.raises(SettingError, match=name):
        ProjectionSettings(**{name: value})  # type: ignore[arg-type]
