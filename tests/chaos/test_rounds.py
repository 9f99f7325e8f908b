"""The pure parts of ``make chaos`` (tests/chaos/rounds*.py) and the test-stack settings.

No stack needed: the workload is built and the checks are fed made-up records, so a check that
could never fail is caught here rather than by a green night of chaos.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from producers.loadgen import FUNDING_ACCOUNT
from schemas.keys import command_key, partition_for
from schemas.model import GENESIS_HASH, PostTransaction, Transfer
from tests.chaos.rounds import fold, parse_arguments
from tests.chaos.rounds_checks import (
    Findings,
    Record,
    check_chain,
    check_dead_letters,
    compare_command_events,
)
from tests.chaos.rounds_workload import (
    EXPIRING_TIMEOUT_S,
    MISROUTED_PER_KIND,
    RoundPlan,
    RoundWorkload,
    build,
)
from tests.conftest import TEST_STACK_DEFAULTS, stack_defaults_from
from tests.system.free_ports import free_port_bounds

PLAN = RoundPlan(seed=5, commands=3_000)


@pytest.fixture(scope="module")
def workload() -> RoundWorkload:
    return build(PLAN)


def test_the_workload_is_reproducible(workload: RoundWorkload) -> None:
    assert build(PLAN).records == workload.records


def test_misrouted_records_are_valid_commands_on_the_wrong_partition_or_key(
    workload: RoundWorkload,
) -> None:
    by_value = {record.value: record for record in workload.records}
    kinds = [misrouted.kind for misrouted in workload.misrouted]
    assert kinds.count("wrong_partition") == kinds.count("key_mismatch") == MISROUTED_PER_KIND
    for misrouted in workload.misrouted:
        record = by_value[misrouted.value]
        home = partition_for(command_key(misrouted.tenant_id), PLAN.partitions)
        if misrouted.kind == "wrong_partition":
            assert (record.key, record.partition != home) == (
                command_key(misrouted.tenant_id),
                True,
            )
        else:
            assert record.key != command_key(misrouted.tenant_id)
            assert record.partition == home == partition_for(record.key, PLAN.partitions)
    decided = {(c.tenant_id, c.idempotency_key) for c in workload.commands}
    assert not decided & {(m.tenant_id, m.idempotency_key) for m in workload.misrouted}


def test_expiring_transfers_change_no_other_decision(workload: RoundWorkload) -> None:
    expiring = {t for ids in workload.expiring.values() for t in ids}
    assert expiring
    for command in workload.commands:
        if isinstance(command, Transfer) and command.transfer_id in expiring:
            assert command.debit_account_id == FUNDING_ACCOUNT  # never guarded
            assert command.pending and command.pending_timeout_s == EXPIRING_TIMEOUT_S
    _, reference = fold(PLAN)
    for tenant in reference.tenants.values():
        assert all(tenant.pending[t].status == "expired" for t in expiring if t in tenant.pending)


def test_multi_leg_transactions_are_in_the_round_and_decided_by_the_fold(
    workload: RoundWorkload,
) -> None:
    """Fee splits, payouts and FX by default (decision 0067): most accepted, the sweep and the
    expiring transfers still in the tenant's own currency (FX opens accounts in another)."""
    transactions = [c for c in workload.commands if isinstance(c, PostTransaction)]
    assert workload.transactions >= 0.05 * PLAN.commands
    assert workload.postings > 3 * workload.transactions
    assert any(len({p.currency for p in c.postings}) == 2 for c in transactions)  # FX
    assert any(len(c.postings) >= 10 for c in transactions)  # payouts
    _, reference = fold(PLAN)
    outcomes = [reference.outcomes[(c.tenant_id, c.idempotency_key)] for c in transactions]
    accepted = sum(outcome.status == "accepted" for outcome in outcomes)
    assert accepted >= 0.9 * len(outcomes), {o.reason for o in outcomes}
    for command in workload.sweep:
        assert reference.outcomes[(command.tenant_id, command.idempotency_key)].reason is None
        tenant = reference.tenants[command.tenant_id]
        assert isinstance(command, Transfer)
        assert tenant.accounts[FUNDING_ACCOUNT].currency == command.currency


def test_duplicates_and_backdated_records_are_there(workload: RoundWorkload) -> None:
    assert build(RoundPlan(seed=5, commands=20_000)).duplicate_share() >= 0.10
    assert sum(record.backdated for record in workload.records) == workload.backdated == 50


def event(sequence: int, effective_at_us: int, previous: bytes) -> SimpleNamespace:
    return SimpleNamespace(
        sequence=sequence, effective_at_us=effective_at_us, prev_hash=previous,
        hash=bytes([sequence]) * 32,
    )  # fmt: skip


def test_check_chain_counts_time_going_back_gaps_and_broken_links() -> None:
    first = event(1, 100, GENESIS_HASH)
    findings = Findings()
    check_chain(findings, "t", [first, event(2, 200, first.hash)])  # type: ignore[list-item]
    assert findings.total() == 0
    check_chain(findings, "t", [first, event(2, 50, first.hash)])  # type: ignore[list-item]
    check_chain(findings, "t", [first, event(3, 100, b"x" * 32)])  # type: ignore[list-item]
    assert findings.violations == {
        "effective time went back": 1,
        "sequence gap": 1,
        "hash chain": 1,
    }


def test_compare_command_events_tells_misrouted_repeated_and_missing_apart() -> None:
    wanted = [("TransferPosted", "a", 1), ("TransferPosted", "b", 2)]
    findings = Findings()
    compare_command_events(findings, "t", list(wanted), wanted, set())
    assert (findings.total(), findings.lost, findings.duplicated) == (0, 0, 0)
    seen = [wanted[0], wanted[0], ("TransferPosted", "misrouted-1", 1)]
    compare_command_events(findings, "t", seen, wanted, {("t", "misrouted-1")})
    assert findings.violations == {"misrouted decided": 1}
    assert (findings.lost, findings.duplicated) == (1, 1)
    assert findings.details == {"misrouted decided": 1, "duplicated: event": 1, "lost: event": 1}


def test_dead_letters_need_each_misrouted_record_with_its_kind(workload: RoundWorkload) -> None:
    right = [
        Record(0, b"k", m.value, {"dlq.error.kind": m.kind.encode()}) for m in workload.misrouted
    ]
    poison = [Record(0, key, value, {"dlq.error.kind": b"x"}) for key, value, _ in workload.poison]
    findings = Findings()
    check_dead_letters(findings, right + poison, workload)
    assert findings.total() == 0
    wrong = [Record(0, b"k", r.value, {"dlq.error.kind": b"body_invalid"}) for r in right]
    check_dead_letters(findings, wrong[1:] + poison, workload)
    assert findings.violations == {"misrouted not dead-lettered": len(right)}


def test_stack_settings_come_from_the_environment_and_name_a_bad_value() -> None:
    chosen = stack_defaults_from(
        "STREAMLEDGER_TEST_",
        TEST_STACK_DEFAULTS,
        {"STREAMLEDGER_TEST_KAFKA_PORT": "39092", "STREAMLEDGER_TEST_HOME": "/tmp/sl-x"},
    )
    assert (chosen.kafka_port, chosen.home, chosen.postgres_port) == (
        39092,
        Path("/tmp/sl-x"),
        25432,
    )
    assert stack_defaults_from("STREAMLEDGER_TEST_", TEST_STACK_DEFAULTS, {}) == TEST_STACK_DEFAULTS
    with pytest.raises(ValueError, match="STREAMLEDGER_TEST_API_PORT='80a'"):
        stack_defaults_from(
            "STREAMLEDGER_TEST_", TEST_STACK_DEFAULTS, {"STREAMLEDGER_TEST_API_PORT": "80a"}
        )
    assert free_port_bounds("") == (10_000, 15_000)
    assert free_port_bounds("40000-41000") == (40_000, 41_000)
    with pytest.raises(ValueError, match="STREAMLEDGER_TEST_FREE_PORTS"):
        free_port_bounds("41000-40000")


def test_the_command_line_keeps_sizes_and_fault_kinds_within_bounds() -> None:
    options = parse_arguments(["--rounds", "2", "--commands", "20000", "--faults", "kill,broker"])
    assert (options.rounds, options.commands, options.faults) == (2, 20_000, {"kill", "broker"})
    with pytest.raises(SystemExit):
        parse_arguments(["--faults", "meteor"])
