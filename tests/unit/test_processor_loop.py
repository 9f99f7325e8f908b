"""The real ``Processor`` loop over ``MemoryTransport``: failures a broker causes, without one.

Each test feeds the same command records (several tenants on 3 partitions, duplicates, a
rejection, a poison record, a misrouted one), injects a failure, and compares every output
topic with a run without failures: same records, byte for byte, each exactly once. That covers
"outputs invisible and state rolled back" too: a retried batch decided over a state that kept
the aborted batch's changes would answer differently (duplicates, other sequences).
The real broker runs the same loop in tests/system/test_processor*.py.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from processors import loop as loop_module
from processors.kafka_clients import AbortableError, FencedError, ProcessorKafkaError
from processors.loop import Processor
from processors.memory_transport import MemoryBroker, MemoryTransport
from processors.metrics import PREFIX as METRICS_PREFIX
from processors.metrics import ProcessorMetrics
from processors.processor_settings import ProcessorSettings, build_processor_settings
from schemas.codec import decode_event, decode_notification, encode_command
from schemas.keys import command_key, partition_for
from schemas.model import Command, CreateMonitor, MonitorCleared, MonitorTriggered, PendingExpired
from schemas.topics import LedgerTopicNames
from streamledger.errors import InvariantViolationError
from streamledger.settings import Settings
from tests.unit.ledger_builders import T0_US, open_account, transfer

PARTITIONS = 3
PREFIX = "loop."
TOPICS = LedgerTopicNames.with_prefix(PREFIX)
OUTPUT_TOPICS = (
    TOPICS.events,
    TOPICS.outcomes,
    TOPICS.balances,
    TOPICS.replies,
    TOPICS.notifications,
)
TENANTS = ("acme", "bolt", "cove", "dune", "echo", "fern")
BATCH_RECORDS_MAX = 4  # many small transactions
IDLE_TAKES_MAX = 3  # the loop stops after this many empty batches in a row
T0_MS = T0_US // 1000


def monitor(
    monitor_id: str, account_id: str, operator: str, threshold: int, tenant: str
) -> Command:
    """A balance monitor on the account's net posted balance (decision 0058)."""
    return CreateMonitor(
        tenant_id=tenant,
        idempotency_key=f"monitor-{monitor_id}",
        submitted_at_us=T0_US,
        monitor_id=monitor_id,
        account_id=account_id,
        field="posted",
        operator=operator,
        threshold=threshold,
    )


def workload() -> list[Command]:
    commands: list[Command] = []
    for tenant in TENANTS:
        commands += [
            open_account("cash", tenant=tenant),
            open_account("sales", tenant=tenant),
            monitor("sales-high", "sales", ">=", 50, tenant),  # 0: not yet
            transfer("t1", "cash", "sales", 100, tenant=tenant),  # 100: triggered
            monitor("cash-negative", "cash", "<", 0, tenant),  # -100: triggered at creation
            transfer("t1", "cash", "sales", 100, tenant=tenant),  # a duplicate
            transfer("t2", "cash", "nowhere", 5, tenant=tenant),  # rejected
            transfer("t3", "sales", "cash", 40, tenant=tenant),  # 60 and -60: no edge
            transfer("t4", "sales", "cash", 20, tenant=tenant),  # 40: cleared
        ]
    return commands


def feed(broker: MemoryBroker, commands: list[Command]) -> None:
    """The commands on their tenants' partitions, a poison record and a misrouted one."""
    for index, command in enumerate(commands):
        key = command_key(command.tenant_id)
        partition = partition_for(key, PARTITIONS)
        broker.append(
            TOPICS.commands, partition, key, encode_command(command), timestamp_ms=T0_MS + index
        )
    broker.append(TOPICS.commands, 0, b"acme", b"\x00 not avro", timestamp_ms=T0_MS)
    wrong = (partition_for(command_key("bolt"), PARTITIONS) + 1) % PARTITIONS
    stray = encode_command(open_account("stray", tenant="bolt"))
    broker.append(TOPICS.commands, wrong, b"bolt", stray, timestamp_ms=T0_MS)


def settings(**limits: int) -> ProcessorSettings:
    shared = Settings(home=Path("/nonexistent"), topic_prefix=PREFIX, partitions=PARTITIONS)
    return build_processor_settings(
        shared,
        instance_id="0",
        metrics_port=0,
        limits={"batch_records_max": BATCH_RECORDS_MAX, **limits},
    )


@dataclass
class Run:
    """A processor on a fresh in-memory broker, stopped once it has nothing left to read."""

    processor_settings: ProcessorSettings = field(default_factory=settings)
    broker: MemoryBroker = field(
        default_factory=lambda: MemoryBroker(TOPICS.all(), PARTITIONS, clock_ms=lambda: T0_MS)
    )
    stop: threading.Event = field(default_factory=threading.Event)
    idle_takes: int = 0

    def __post_init__(self) -> None:
        self.transport = MemoryTransport(self.broker, self.processor_settings, on_idle=self.idle)
        self.metrics = ProcessorMetrics()
        self.processor = Processor(self.processor_settings, self.metrics, self.transport)
        feed(self.broker, workload())

    def idle(self) -> None:
        self.idle_takes += 1
        if self.idle_takes >= IDLE_TAKES_MAX:
            self.stop.set()

    def run(self) -> Run:
        self.processor.check_topics()
        self.processor.run(self.stop)
        return self

    def outputs(self) -> dict[str, list[list[tuple[bytes | None, bytes | None, object]]]]:
        """Every committed output record per topic and partition."""
        return {
            topic: [
                [(r.key(), r.value(), r.headers()) for r in self.broker.records(topic, p)]
                for p in range(PARTITIONS)
            ]
            for topic in (*OUTPUT_TOPICS, TOPICS.commands_dlq)
        }

    def counted(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(f"{METRICS_PREFIX}{name}_total", labels)
        return value or 0.0

    def aborts(self, cause: str) -> float:
        return self.counted("transaction_aborts", {"cause": cause})

    def everything_committed(self) -> bool:
        ends = {p: len(self.broker.logs[TOPICS.commands][p]) for p in range(PARTITIONS)}
        committed = self.broker.committed(self.processor_settings.group_id, TOPICS.commands)
        return all(committed.get(p, 0) >= ends[p] - 1 for p in range(PARTITIONS))


@pytest.fixture(scope="module")
def clean() -> Run:
    """The run every faulty one must match."""
    return Run().run()


def test_a_clean_run_answers_every_command_once_and_commits_every_input(clean: Run) -> None:
    outputs = clean.outputs()
    replies = sum(len(records) for records in outputs[TOPICS.replies])
    assert replies == len(workload())
    dead_letters = [headers for records in outputs[TOPICS.commands_dlq] for *_, headers in records]
    assert len(dead_letters) == 2  # the poison record and the misrouted one
    assert clean.everything_committed()
    assert clean.counted("transaction_commits") > len(workload()) / BATCH_RECORDS_MAX


def test_commands_are_counted_per_partition_for_the_tenant_volume_panel(clean: Run) -> None:
    """Per partition (bounded), never per tenant: the partitions' counts add up to the total,
    and each partition's count is its share of the commands topic."""
    per_partition = {
        p: clean.counted("partition_commands_consumed", {"partition": str(p)})
        for p in range(PARTITIONS)
    }
    assert sum(per_partition.values()) == clean.counted("commands_consumed") > 0
    for p, count in per_partition.items():
        assert count == len(clean.broker.logs[TOPICS.commands][p])


def test_monitors_notify_once_per_edge_in_the_batch_transaction(clean: Run) -> None:
    """Three edges per tenant, each once, keyed by (sequence, monitor); every faulty run below
    must produce the same notification bytes (exactly once across aborts, fencing, restore)."""
    found = [
        (type(note).__name__, note.tenant_id, note.monitor_id, note.sequence, note.value)
        for records in clean.outputs()[TOPICS.notifications]
        for _key, value, _headers in records
        for note in [decode_notification(value or b"")]
    ]
    expected = [
        (kind, tenant, monitor_id, sequence, value)
        for tenant in TENANTS
        for kind, monitor_id, sequence, value in (
            (MonitorTriggered.__name__, "sales-high", 4, 100),
            (MonitorTriggered.__name__, "cash-negative", 5, -100),
            (MonitorCleared.__name__, "sales-high", 7, 40),
        )
    ]
    assert sorted(found) == sorted(expected)
    assert clean.counted("notifications_produced", {"kind": "MonitorTriggered"}) == 2 * len(TENANTS)


def test_an_abortable_error_mid_batch_aborts_rolls_back_and_retries_the_batch(clean: Run) -> None:
    run = Run()
    run.broker.fail("produce", nth=7, error=AbortableError("injected: produce"))
    run.run()
    assert run.aborts("abortable_error") == 1
    assert run.outputs() == clean.outputs()  # nothing of the aborted try, the retry once


def test_commit_failing_on_the_third_transaction_is_retried(clean: Run) -> None:
    run = Run()
    run.broker.fail("commit", nth=3, error=AbortableError("injected: commit"))
    run.run()
    assert run.aborts("abortable_error") == 1
    assert run.outputs() == clean.outputs()
    assert run.everything_committed()


def test_more_aborts_in_a_row_than_commit_retries_max_stop_the_loop() -> None:
    run = Run(settings(commit_retries_max=2))
    run.broker.fail("commit", nth=1, times=3, error=AbortableError("injected: commit"))
    with pytest.raises(AbortableError):
        run.run()
    assert run.aborts("abortable_error") == 2
    assert all(not records for records in run.outputs()[TOPICS.events])


def test_a_fenced_producer_rebuilds_rejoins_restores_and_goes_on(clean: Run) -> None:
    run = Run()
    transactional_id = run.processor_settings.transactional_id
    # another producer with our transactional id starts just before our 4th commit
    run.broker.before_call("commit", 4, lambda: run.broker.fence(transactional_id))
    run.run()
    assert run.aborts("fenced") == 1
    assert run.counted("producer_rebuilds") == 1
    assert run.outputs() == clean.outputs()


def test_a_fatal_producer_error_is_handled_like_fencing(clean: Run) -> None:
    run = Run()
    run.broker.fail("send_offsets", nth=2, error=FencedError("injected: fatal"))
    run.run()
    assert run.aborts("fenced") == 1
    assert run.outputs() == clean.outputs()


def test_an_error_the_loop_cannot_handle_stops_it() -> None:
    run = Run()
    run.broker.fail("commit", nth=2, error=ProcessorKafkaError("injected: unknown"))
    with pytest.raises(ProcessorKafkaError, match="injected: unknown"):
        run.run()


@pytest.mark.parametrize("lost", [False, True])
def test_a_partition_revoked_mid_batch_is_skipped_then_reassigned_and_restored(
    clean: Run, lost: bool, caplog: pytest.LogCaptureFixture
) -> None:
    run = Run()
    busy = partition_for(command_key("acme"), PARTITIONS)

    def revoke_during_the_next_batch() -> None:
        run.transport.revoke_mid_batch = [busy]
        run.transport.lose_mid_batch = lost

    run.broker.before_call("commit", 2, revoke_during_the_next_batch)
    with caplog.at_level(logging.INFO, logger="streamledger.processor"):
        run.run()
    expected = f"{'lost' if lost else 'revoked'} partitions [{busy}]"
    assert expected in caplog.text
    assert run.outputs() == clean.outputs()
    assert run.everything_committed()


def test_an_offset_that_would_go_back_stops_the_loop_before_anything_commits(
    clean: Run,
) -> None:
    run = Run()
    rewound = False

    def rewind_once() -> None:  # a consumer that jumps back past committed records
        nonlocal rewound
        if not rewound:
            rewound = True
            run.transport.seek(1, 0)
        else:
            run.idle()

    run.transport.on_idle = rewind_once
    with pytest.raises(InvariantViolationError, match="offsets only move forward"):
        run.run()
    assert run.outputs() == clean.outputs()  # the re-decided batch never committed


def test_ticks_are_written_read_back_and_expire_a_due_pending_transfer() -> None:
    run = Run()
    pending = transfer("p1", "cash", "sales", 7, tenant="acme", pending=True, pending_timeout_s=1)
    partition = partition_for(command_key("acme"), PARTITIONS)
    late_ms = T0_MS + 10_000  # after every workload record: acme's stream time is past T0
    run.broker.append(
        TOPICS.commands, partition, b"acme", encode_command(pending), timestamp_ms=late_ms
    )
    run.run()  # the wall clock is years past the deadline: the loop ticks the partition
    ticks = [r for r in run.broker.records(TOPICS.commands, partition) if r.key() == b"_tick"]
    assert ticks
    events = [decode_event(r.value() or b"") for r in run.broker.records(TOPICS.events, partition)]
    expired = [event for event in events if isinstance(event, PendingExpired)]
    assert [(event.tenant_id, event.transfer_id) for event in expired] == [("acme", "p1")]
    assert run.counted("tick_records") >= 1


def test_the_watchdog_is_re_armed_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each re-arm starts faulthandler's watchdog thread afresh: not once per loop turn."""
    run = Run()
    armed: list[int] = []
    monkeypatch.setattr(Processor, "_arm_watchdog", staticmethod(armed.append))
    now = [100.0]
    monkeypatch.setattr(loop_module.time, "monotonic", lambda: now[0])
    for step_s in (0.0, 0.3, 0.3, 0.5, 0.1, 2.0):
        now[0] += step_s
        run.processor._keep_watchdog_armed()
    stall_timeout_s = run.processor_settings.stall_timeout_s
    assert armed == [stall_timeout_s] * 3  # at 100.0, 101.1 and 103.2
