"""Issue 13's property, end to end without a broker: random command records with a random key,
partition, body tenant and timestamp skew go through the processor's routing check and the
partition adapters, and the events they produce through the projection's planner. No chain ever
forks or goes back in time, every decided command gets exactly one reply, and the projection
quarantines no tenant (there is nothing to quarantine).

The broker and the real loop are covered by tests/system/test_routing_time_replies.py; this is
the same path (``processors.routing.misrouting`` → ``PartitionLedger.decide``) over far more
shapes of input than a system test can send.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from processors.partition_ledger import WIRE_FORMAT, PartitionLedger
from processors.routing import misrouting
from projections.batch import PlanContext, plan_records
from projections.event_records import event_record
from schemas.codec import decode_event
from schemas.keys import command_key, partition_for
from schemas.model import Command
from tests.unit.ledger_builders import SECOND_US, T0_US, open_account, transfer

PARTITIONS = 4
TENANTS = ("acme", "bolt", "cove", "dune", "echo")
ACCOUNTS = ("a", "b", "c")

records = st.lists(
    st.tuples(
        st.sampled_from(TENANTS),  # body tenant
        st.one_of(st.none(), st.sampled_from(TENANTS)),  # record key: None = the body's tenant
        st.one_of(st.none(), st.integers(0, PARTITIONS - 1)),  # partition: None = its home
        st.integers(-3_600, 30),  # seconds since the previous record: clocks may be behind
        st.sampled_from(("open", "transfer", "pending", "retry")),
        st.sampled_from(ACCOUNTS),
        st.integers(1, 50),
    ),
    min_size=10,
    max_size=80,
)


def home(tenant_id: str) -> int:
    return partition_for(command_key(tenant_id), PARTITIONS)


def command_of(operation: str, tenant: str, account: str, amount: int, number: int) -> Command:
    if operation == "open":
        return open_account(account, tenant=tenant, key=f"open-{account}")
    other = ACCOUNTS[(ACCOUNTS.index(account) + 1) % len(ACCOUNTS)]
    key = "k0" if operation == "retry" else f"k{number}"
    return transfer(
        f"t{number}" if operation != "retry" else "t0",
        account,
        other,
        amount,
        tenant=tenant,
        key=key,
        pending=operation == "pending",
        pending_timeout_s=5 if operation == "pending" else None,
    )


@settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(records)
def test_hostile_records_never_fork_a_chain_and_every_command_gets_one_reply(
    drawn: list[tuple[str, str | None, int | None, int, str, str, int]],
) -> None:
    partitions = {
        p: PartitionLedger(p, ledger.LedgerState(wire_format=WIRE_FORMAT))
        for p in range(PARTITIONS)
    }
    now_us, decided, dead_letters = T0_US, 0, 0
    for number, (tenant, key_tenant, partition, step_s, operation, account, amount) in enumerate(
        drawn
    ):
        now_us += step_s * SECOND_US
        command = command_of(operation, tenant, account, amount, number)
        key = command_key(key_tenant or tenant)
        at = home(key_tenant or tenant) if partition is None else partition
        if misrouting(key, at, command.tenant_id, PARTITIONS) is not None:
            dead_letters += 1
            assert key != command_key(tenant) or at != home(tenant)
            continue
        partitions[at].decide(command, now_us, offset=number)
        decided += 1
    replies, events, locations = 0, [], []
    for partition, adapter in partitions.items():
        outputs = adapter.staged_outputs()
        replies += len(outputs.replies)
        for offset, (_, value) in enumerate(outputs.events):
            assert value is not None
            events.append(decode_event(value))
            locations.append((partition, offset))
        adapter.commit()
    assert replies == decided and decided + dead_letters == len(drawn)
    latest: dict[str, tuple[int, int]] = {}  # tenant -> (sequence, effective time)
    for event, (partition, _) in zip(events, locations, strict=True):
        assert partition == home(event.tenant_id)  # one partition per tenant: no fork
        sequence, effective = latest.get(event.tenant_id, (0, 0))
        assert event.sequence == sequence + 1
        assert event.effective_at_us >= effective  # never back in time
        latest[event.tenant_id] = (event.sequence, event.effective_at_us)
    plan = plan_records(
        [event_record(e) for e in events], locations, PlanContext(partitions=PARTITIONS)
    )
    assert plan.quarantines == {}
    for tenant, (sequence, _) in latest.items():
        assert plan.tenant_runs[tenant].last_sequence == sequence
