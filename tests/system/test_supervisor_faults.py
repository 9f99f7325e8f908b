"""The supervisor of ``streamledger run`` against the real broker and PostgreSQL.

- a real processor that stops making progress (``SIGSTOP``: alive, holding its group membership
  until the session times out, answering nothing) is found by its heartbeat, reported as
  stalled, SIGTERM-ed then SIGKILL-ed, restarted, and counted (decision 0023);
- the dependency probes say "up" for the running stack and name what is down otherwise
  (decision 0023);
- the status line's DLQ figure is the number of committed records in the DLQ topic: aborted
  records and transaction markers, which take offsets, are not counted.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from pipeline.dependencies import DependencyWatch, kafka_probe, postgresql_probe, standard_probes
from pipeline.status import DeadLetterCount, StatusReporter
from pipeline.supervisor import RunSettings, Supervisor, plan_children
from pipeline.topic_reader import end_offsets
from streamledger.settings import Settings, replace
from tests.system.free_ports import free_port_range
from tests.system.kafka_clients import OPERATION_TIMEOUT_S, moved_home, transactional_producer

STALL_TIMEOUT_S = 8.0
WAIT_S_MAX = 120.0
TEST_PROCESSOR_FLAGS = ("--session-timeout-ms=6000", "--batch-interval-ms=50")


def supervise_until(supervisor: Supervisor, text: str, lines: list[str]) -> str:
    """Drive the supervisor until one of its lines contains ``text`` (bounded)."""
    deadline = time.monotonic() + WAIT_S_MAX
    while time.monotonic() < deadline:
        for line in supervisor.supervise_once():
            lines.append(line)
            if text in line:
                return line
        time.sleep(supervisor.run.poll_interval_s)
    raise AssertionError(f"no line with {text!r} within {WAIT_S_MAX:g} s; saw {lines}")


def wait_for_heartbeat(supervisor: Supervisor, lines: list[str]) -> None:
    deadline = time.monotonic() + WAIT_S_MAX
    child = supervisor.children[0]
    while child.progress.heartbeat is None and time.monotonic() < deadline:
        lines.extend(supervisor.supervise_once())
        time.sleep(supervisor.run.poll_interval_s)
    assert child.progress.heartbeat is not None, f"no heartbeat from {child.spec.log_path}"


def test_a_stopped_processor_is_reported_stalled_killed_and_restarted(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    settings = replace(moved_home(ledger_settings, tmp_path), metrics_port=free_port_range(1))
    run = RunSettings(
        processors=1,
        projections=0,
        processor_arguments=TEST_PROCESSOR_FLAGS,
        stall_timeout_s=STALL_TIMEOUT_S,
        stall_check_interval_s=0.5,
        stall_kill_after_s=2.0,
        backoff_s_min=0.1,
    )
    supervisor = Supervisor(
        settings,
        run,
        plan_children(settings, run),
        dependencies=DependencyWatch(standard_probes(settings)),
    )
    reporter = StatusReporter(supervisor)
    lines = supervisor.start()
    child = supervisor.children[0]
    try:
        wait_for_heartbeat(supervisor, lines)
        assert child.process is not None
        stopped_pid = child.process.pid
        os.kill(stopped_pid, signal.SIGSTOP)  # alive, silent, and deaf to SIGTERM
        stalled = supervise_until(supervisor, "stalled:", lines)
        silent = re.search(
            r"processor-0 stalled: no heartbeat for (\d+) s \(stall_timeout_s 8\)", stalled
        )
        assert silent is not None, stalled
        assert STALL_TIMEOUT_S <= int(silent.group(1)) <= STALL_TIMEOUT_S + 5
        status = reporter.line()
        assert "| up 0/1 restarts 0 stalls 1 | stalled processor-0" in status, status
        supervise_until(supervisor, "sent SIGKILL", lines)
        supervise_until(supervisor, "exited with signal SIGKILL after its stall", lines)
        supervise_until(supervisor, "restarted processor-0 (start #2)", lines)
        assert child.process is not None and child.process.pid != stopped_pid
        wait_for_heartbeat(supervisor, lines)  # the new incarnation's loop runs
        assert reporter.line().endswith("| up 1/1 restarts 1 stalls 1")
    finally:
        supervisor.stop()
    stalls = supervisor.metrics.registry.get_sample_value(
        "streamledger_supervisor_stalls_total", {"child": "processor-0"}
    )
    assert stalls == 1.0


def test_the_dependency_probes_see_the_stack_and_name_what_is_down(
    ledger_settings: Settings,
) -> None:
    assert kafka_probe(ledger_settings)() is None
    assert postgresql_probe(ledger_settings)() is None
    closed = free_port_range(2)  # nothing listens there
    down = replace(
        ledger_settings,
        bootstrap_servers="",
        kafka_port=closed,
        database_url="",
        postgres_port=closed + 1,
    )
    started = time.monotonic()
    kafka_problem = kafka_probe(down, timeout_s=1.0)()
    postgresql_problem = postgresql_probe(down, timeout_s=1.0)()
    assert time.monotonic() - started < 15  # bounded: a status line is never held for long
    assert kafka_problem is not None
    assert postgresql_problem is not None and f"port {closed + 1}" in postgresql_problem


def test_the_dlq_count_is_the_committed_records_of_the_topic(ledger_settings: Settings) -> None:
    topic = ledger_settings.topic("ledger.commands.dlq")
    producer = transactional_producer(ledger_settings)

    def transaction(records: int, *, commit: bool) -> None:
        producer.begin_transaction()
        for index in range(records):
            producer.produce(topic, b"letter %d" % index, b"key", partition=index % 2)
        if commit:
            producer.commit_transaction(OPERATION_TIMEOUT_S)
        else:
            producer.abort_transaction(OPERATION_TIMEOUT_S)

    transaction(3, commit=True)
    transaction(2, commit=False)  # a processor's aborted batch: offsets taken, no records
    transaction(2, commit=True)
    counter = DeadLetterCount(ledger_settings, records_max=4, timeout_s=10.0)
    partial = counter.read()
    assert partial is not None and (partial.records, partial.complete) == (4, False)
    tally = counter.read()
    assert tally is not None and (tally.records, tally.complete) == (5, True)
    offsets = sum(end_offsets(ledger_settings, topic).values())
    assert offsets > 5  # what high watermarks alone would have said (markers, aborted records)
    transaction(1, commit=True)
    tally = counter.read()  # reads only what was appended since
    assert tally is not None and (tally.records, tally.complete) == (6, True)
