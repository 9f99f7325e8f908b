"""The pure batch planner of the projection: rows per event, and the invariants it enforces."""

from __future__ import annotations

import dataclasses

import pytest

from projections.batch import fold_transfers, plan_batch
from projections.event_records import event_record
from projections.settings import ProjectionSettings
from schemas.model import PendingPosted, TransferPosted
from streamledger.errors import InvariantViolationError, SettingError
from tests.system.projection_workload import generate


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


def test_a_gap_a_repeat_or_a_broken_chain_stops_the_batch() -> None:
    events = generate(6, tenants=1, commands=20).events
    with pytest.raises(InvariantViolationError, match="gap or repeat"):
        plan_batch([*events[:3], *events[4:]])
    with pytest.raises(InvariantViolationError, match="gap or repeat"):
        plan_batch([*events[:3], events[2]])
    broken = dataclasses.replace(events[3], prev_hash=bytes(32))
    with pytest.raises(InvariantViolationError, match="does not chain"):
        plan_batch([*events[:3], broken])


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
