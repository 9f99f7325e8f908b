"""Property (issue 13): whatever is wrong with some tenants' events, the projection's plan stops
only those tenants, each at its first bad record, and plans every other tenant to its end."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from hypothesis import example, given, settings
from hypothesis import strategies as st

from projections.batch import Location, PlanContext, plan_records
from projections.event_records import EventRecord, event_record
from schemas.keys import command_key, partition_for
from schemas.model import Event
from workloads.projection_events import generate

PARTITIONS = 12
WORKLOAD = generate(13, tenants=4, commands=160)
CORRUPTIONS = ("wrong_partition", "repeat", "gap", "chain", "time")


def home(tenant_id: str) -> int:
    return partition_for(command_key(tenant_id), PARTITIONS)


def corrupt(event: Event, kind: str) -> tuple[Event, int]:
    """A bad version of ``event`` and the partition it is read from."""
    if kind == "wrong_partition":
        return event, (home(event.tenant_id) + 1) % PARTITIONS
    if kind == "repeat":
        return dataclasses.replace(event, sequence=max(event.sequence - 1, 1)), home(
            event.tenant_id
        )
    if kind == "gap":
        return dataclasses.replace(event, sequence=event.sequence + 1), home(event.tenant_id)
    if kind == "chain":
        return dataclasses.replace(event, prev_hash=bytes(32)), home(event.tenant_id)
    return dataclasses.replace(event, effective_at_us=0), home(event.tenant_id)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.integers(0, len(WORKLOAD.events) - 1), st.sampled_from(CORRUPTIONS)),
        max_size=4,
    )
)
@example([(0, "gap")])  # a tenant's first record moved to sequence 2
def test_only_corrupted_tenants_stop_each_at_its_first_bad_record(
    corruptions: Sequence[tuple[int, str]],
) -> None:
    bad = dict(corruptions)  # event index -> kind (the last one drawn per index)
    records: list[EventRecord] = []
    locations: list[Location] = []
    first_bad: dict[str, int] = {}
    gapped_first: set[str] = set()  # tenants whose sequence 1 was moved to 2
    for index, event in enumerate(WORKLOAD.events):
        placed, partition = (
            corrupt(event, bad[index]) if index in bad else (event, home(event.tenant_id))
        )
        # A tenant's first record (sequence 1 here) is checked against the stored head at write
        # time, not by the plan; only its partition is checked while planning. A first record
        # moved to sequence 2 makes the tenant's real sequence 2 a repeat within the batch.
        planned_bad = index in bad and (bad[index] == "wrong_partition" or event.sequence > 1)
        repeated = event.tenant_id in gapped_first and event.sequence == 2
        if planned_bad or repeated:
            first_bad.setdefault(event.tenant_id, len(records))
        if index in bad and bad[index] == "gap" and event.sequence == 1:
            gapped_first.add(event.tenant_id)
        records.append(event_record(placed))
        locations.append((partition, index))
    plan = plan_records(records, locations, PlanContext(partitions=PARTITIONS))
    assert {t: q.index for t, q in plan.quarantines.items()} == first_bad
    last = {e.tenant_id: e.sequence for e in WORKLOAD.events}
    for tenant_id in WORKLOAD.tenants:
        if tenant_id in first_bad:
            # the projected run stops before the bad record; a moved first record is in the run
            # with its (wrong) sequence 2, so that run ends at 2
            moved = (
                tenant_id in gapped_first and WORKLOAD.events[first_bad[tenant_id]].sequence == 2
            )
            stop = 2 if moved else WORKLOAD.events[first_bad[tenant_id]].sequence - 1
            run = plan.tenant_runs.get(tenant_id)
            assert (0 if run is None else run.last_sequence) == stop
        else:
            assert plan.tenant_runs[tenant_id].last_sequence == last[tenant_id]
