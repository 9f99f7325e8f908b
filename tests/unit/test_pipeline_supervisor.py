"""The supervisor of ``streamledger run`` with stand-in children (tiny Python processes).

Restart with bounded exponential backoff, a clean stop that waits for SIGTERM handlers, SIGKILL
for a child that ignores SIGTERM, the state file, and the status line's restart-proof counters;
the stall check (a heartbeat that stops moving), the wait for Kafka / PostgreSQL, and the DLQ
figure taken from its source.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import pytest

from infra.prometheus_server import ScrapeTargets
from pipeline import liveness
from pipeline.dependencies import KAFKA, POSTGRESQL, DependencyWatch
from pipeline.local_prometheus import scrape_targets
from pipeline.metrics_scrape import sum_samples
from pipeline.status import (
    COMMANDS_CONSUMED,
    DLQ_RECORDS,
    CounterTotals,
    DeadLetterTally,
    StatusReporter,
)
from pipeline.supervisor import ChildSpec, RunSettings, Supervisor, plan_children, read_state
from streamledger.errors import InfraError, SettingError
from streamledger.settings import Settings

CRASH = "import sys; sys.exit(3)"
STALL_SEEN_S_MAX = 5  # a 1 s stall timeout checked every 0.05 s: reported by then, even loaded
CHILDREN_TIMEOUT_S = 60.0  # stand-in children starting: Python start-ups, seconds when loaded
GRACEFUL = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(0.05)\n"
)
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(0.05)\n"
)


def spec(tmp_path: Path, name: str, code: str) -> ChildSpec:
    return ChildSpec(
        name=name,
        role="processor",
        argv=(sys.executable, "-c", code),
        environment={},
        log_path=tmp_path / "logs" / f"{name}.log",
    )


def test_a_crashing_child_restarts_with_bounded_exponential_backoff(tmp_path: Path) -> None:
    run = RunSettings(backoff_s_min=0.05, backoff_s_max=0.2, healthy_after_s=60)
    supervisor = Supervisor(Settings(home=tmp_path), run, [spec(tmp_path, "crasher", CRASH)])
    supervisor.start()
    backoffs: list[float] = []
    deadline = time.monotonic() + CHILDREN_TIMEOUT_S
    child = supervisor.children[0]
    try:
        while child.starts < 5 and time.monotonic() < deadline:
            for line in supervisor.supervise_once():
                if "exited" in line:
                    backoffs.append(child.backoff_s)
            time.sleep(0.01)
    finally:
        supervisor.stop()
    assert child.starts >= 5
    assert backoffs[:4] == [0.05, 0.1, 0.2, 0.2]
    assert set(child.crashes) == {3}
    assert supervisor.restarts == child.starts - 1


def test_stop_waits_for_sigterm_handlers_and_kills_what_ignores_them(tmp_path: Path) -> None:
    run = RunSettings(shutdown_timeout_s=1.0)
    specs = [spec(tmp_path, "graceful", GRACEFUL), spec(tmp_path, "stubborn", STUBBORN)]
    supervisor = Supervisor(Settings(home=tmp_path), run, specs)
    supervisor.start()
    state = read_state(supervisor.state_path)
    assert [child["name"] for child in state["children"]] == ["graceful", "stubborn"]  # type: ignore[attr-defined]
    deadline = time.monotonic() + CHILDREN_TIMEOUT_S
    for each in specs:  # both have installed their signal handlers
        while "ready" not in each.log_path.read_text().splitlines():
            assert time.monotonic() < deadline, f"{each.name} not ready"
            time.sleep(0.05)
    started = time.monotonic()
    lines = supervisor.stop()
    assert time.monotonic() - started < 10
    assert lines[0] == "graceful stopped (exit code 0)"
    assert lines[1].startswith("stubborn did not stop within 1 s; killed")
    assert not supervisor.state_path.exists()
    assert supervisor.running_count == 0


def test_plan_children_gives_consecutive_metrics_ports(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, metrics_port=9500)
    specs = plan_children(settings, RunSettings(processors=2, projections=2))
    assert [(s.name, s.metrics_port) for s in specs] == [
        ("processor-0", 9500),
        ("processor-1", 9501),
        ("projection-0", 9502),
        ("projection-1", 9503),
    ]
    assert "--instance-id=p1" in specs[1].argv
    assert specs[2].environment["STREAMLEDGER_METRICS_PORT"] == "9502"


def test_the_verifier_and_the_api_are_where_prometheus_scrapes_them(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, metrics_port=9500)
    run = RunSettings(processors=2, projections=1, verifier=True, api=True, api_port=8090)
    specs = plan_children(settings, run)
    assert [(s.name, s.role, s.metrics_port) for s in specs] == [
        ("processor-0", "processor", 9500),
        ("processor-1", "processor", 9501),
        ("projection-0", "projection", 9502),
        ("verifier", "verifier", 9503),
        ("api", "api", 8090),
    ]
    assert "--every-s=600" in specs[3].argv and "--metrics-port=9503" in specs[3].argv
    assert "--port=8090" in specs[4].argv
    targets = scrape_targets(settings, run)
    assert targets == ScrapeTargets((9500, 9501), (9502,), (9503,), (8090,), (9504,))


def test_counters_survive_a_child_restart() -> None:
    totals = CounterTotals()
    totals.observe("processor-0", {COMMANDS_CONSUMED: 100.0})
    totals.observe("processor-0", {COMMANDS_CONSUMED: 150.0})
    totals.observe("processor-0", {COMMANDS_CONSUMED: 20.0})  # restarted from zero
    totals.observe("processor-1", {COMMANDS_CONSUMED: 5.0})
    assert totals.total(COMMANDS_CONSUMED) == 175.0


def test_status_line_from_scrapes(tmp_path: Path) -> None:
    text = (
        "# TYPE streamledger_processor_commands_consumed_total counter\n"
        "streamledger_processor_commands_consumed_total 40\n"
        "# TYPE streamledger_processor_consumer_lag_records gauge\n"
        'streamledger_processor_consumer_lag_records{partition="0"} 3\n'
        'streamledger_processor_consumer_lag_records{partition="1"} 4\n'
    )
    samples = sum_samples(text)
    assert samples["streamledger_processor_consumer_lag_records"] == 7.0
    settings = Settings(home=tmp_path)
    supervisor = Supervisor(
        settings, RunSettings(), plan_children(settings, RunSettings(projections=0))
    )
    reporter = StatusReporter(supervisor, scraper=lambda url: samples)
    line = reporter.line()  # children not running: nothing scraped
    assert "lag commands ?" in line
    assert "up 0/2" in line


# ---------------------------------------------------------------------- stalls (decision 0023)


def test_progress_moves_only_when_the_heartbeat_changes() -> None:
    progress = liveness.started(100.0)
    assert not liveness.is_stalled(progress, 109.9, stall_timeout_s=10)
    assert liveness.is_stalled(progress, 110.0, stall_timeout_s=10)  # never beat since start
    progress = liveness.observe(progress, 5_000.0, now=105.0)
    assert progress.moved_at == 105.0
    assert liveness.observe(progress, 5_000.0, now=108.0) is progress  # same value: no progress
    assert liveness.observe(progress, None, now=108.0) is progress  # no answer: no progress
    assert liveness.silent_s(progress, 114.0) == 9.0
    assert liveness.is_stalled(progress, 115.0, stall_timeout_s=10)
    assert liveness.observe(progress, 4_000.0, now=115.0).moved_at == 115.0  # clock step: moved


def watched_spec(tmp_path: Path, name: str, code: str) -> ChildSpec:
    """A stand-in processor with a metrics port, so the stall check reads its heartbeat."""
    return replace(spec(tmp_path, name, code), metrics_port=1)


def run_until(
    supervisor: Supervisor, done: Callable[[list[str]], bool], seconds: float
) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while not done(lines) and time.monotonic() < deadline:
        lines.extend(supervisor.supervise_once())
        time.sleep(0.02)
    return lines


def test_a_child_whose_heartbeat_stops_is_terminated_killed_and_restarted(tmp_path: Path) -> None:
    beats = iter(range(1, 6))  # five readings that move, then the heartbeat stops
    last = [0.0]

    def heartbeat(url: str, series: str) -> float:
        last[0] = float(next(beats, last[0]))
        return last[0]

    run = RunSettings(
        stall_timeout_s=1.0, stall_check_interval_s=0.05, stall_kill_after_s=0.3,
        backoff_s_min=0.05, healthy_after_s=60,
    )  # fmt: skip
    specs = [watched_spec(tmp_path, "processor-0", STUBBORN)]  # ignores SIGTERM
    supervisor = Supervisor(Settings(home=tmp_path), run, specs, heartbeat_reader=heartbeat)
    supervisor.start()
    child = supervisor.children[0]
    try:
        lines = run_until(
            supervisor, lambda seen: any("stalled:" in x for x in seen), CHILDREN_TIMEOUT_S
        )
        assert child.stalled_at is not None and not child.up
        assert supervisor.stalled_names() == ["processor-0"]
        assert supervisor.up_count == 0 and supervisor.running_count == 1
        state = read_state(supervisor.state_path)
        assert state["children"][0]["state"] == "stalled"  # type: ignore[index]
        reporter = StatusReporter(supervisor, scraper=lambda url: None)
        assert "| stalled processor-0" in reporter.line()
        lines += run_until(
            supervisor, lambda seen: any("restarted" in x for x in seen), CHILDREN_TIMEOUT_S
        )
    finally:
        supervisor.stop()
    stalled = next(line for line in lines if "stalled:" in line)
    # seen within a check interval of the timeout, give or take a slow pass of this loop on a
    # loaded machine (the printed age is rounded: 1 s when on time)
    silent = re.search(
        r"no heartbeat for (\d+) s \(stall_timeout_s 1\); sent SIGTERM, SIGKILL in 0\.3 s", stalled
    )
    assert silent is not None and 1 <= int(silent.group(1)) <= STALL_SEEN_S_MAX, stalled
    assert any("ignored SIGTERM after its stall; sent SIGKILL" in line for line in lines)
    assert any("exited with signal SIGKILL after its stall" in line for line in lines)
    assert child.starts == 2 and child.stalls == 1 and supervisor.stalls == 1
    assert child.stalled_at is None  # the new incarnation starts with a clean slate
    stalls = supervisor.metrics.registry.get_sample_value(
        "streamledger_supervisor_stalls_total", {"child": "processor-0"}
    )
    assert stalls == 1.0


def test_a_child_without_a_heartbeat_series_is_never_called_stalled(tmp_path: Path) -> None:
    run = RunSettings(stall_timeout_s=1.0, stall_check_interval_s=0.05)
    api = replace(spec(tmp_path, "api", GRACEFUL), role="api", metrics_port=1)
    supervisor = Supervisor(
        Settings(home=tmp_path), run, [api], heartbeat_reader=lambda url, series: None
    )
    supervisor.start()
    try:
        lines = run_until(supervisor, lambda seen: False, 1.5)
    finally:
        supervisor.stop()
    assert lines == [] and supervisor.stalls == 0


# ---------------------------------------------------------------------- dependencies (0023)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def unread() -> NoReturn:
    raise AssertionError("a topic was read while Kafka is known to be down")


def test_children_wait_for_their_dependencies_and_start_when_they_answer(tmp_path: Path) -> None:
    kafka_problem: list[str | None] = ["Kafka at 127.0.0.1:1 did not answer"]
    probes = {KAFKA: lambda: kafka_problem[0], POSTGRESQL: lambda: None}
    clock = FakeClock()
    watch = DependencyWatch(probes, probe_interval_s=2.0)
    specs = [
        spec(tmp_path, "processor-0", GRACEFUL),
        replace(spec(tmp_path, "api", GRACEFUL), role="api"),
    ]
    supervisor = Supervisor(
        Settings(home=tmp_path), RunSettings(), specs, clock=clock, dependencies=watch
    )
    try:
        lines = supervisor.start()
        assert lines == [
            "waiting for kafka before starting processor-0"
            " (kafka: Kafka at 127.0.0.1:1 did not answer)"
        ]
        processor, api = supervisor.children
        assert not processor.running and api.running  # the API needs PostgreSQL only
        assert supervisor.waiting() == {KAFKA: ["processor-0"]}
        clock.now += 30
        assert supervisor.supervise_once() == []  # still down: said once, not every pass
        reporter = StatusReporter(
            supervisor, scraper=lambda url: None, lag_source=unread, dlq_source=unread
        )
        line = reporter.line()  # no topic read while Kafka is known down: no timeouts waited
        assert "| lag commands ? events ? | dlq ? |" in line
        assert "| waiting for kafka 30 s (processor-0)" in line
        waiting = supervisor.metrics.registry.get_sample_value(
            "streamledger_supervisor_waiting_for_dependency", {"dependency": "kafka"}
        )
        assert waiting == 1.0
        kafka_problem[0] = None
        clock.now += 1  # within the probe interval: the cached answer stands
        assert supervisor.supervise_once() == []
        clock.now += 1
        assert supervisor.supervise_once() == ["started processor-0: kafka answers again"]
        assert processor.running and supervisor.waiting() == {}
    finally:
        supervisor.stop()


def test_waiting_gives_up_after_dependency_wait_s_max(tmp_path: Path) -> None:
    clock = FakeClock()
    watch = DependencyWatch({KAFKA: lambda: "no broker"}, probe_interval_s=1.0)
    run = RunSettings(dependency_wait_s_max=60)
    specs = [spec(tmp_path, "processor-0", GRACEFUL)]
    supervisor = Supervisor(Settings(home=tmp_path), run, specs, clock=clock, dependencies=watch)
    supervisor.start()
    clock.now += 59
    supervisor.supervise_once()
    clock.now += 1
    with pytest.raises(
        InfraError, match=r"kafka did not answer for 60 s \(dependency_wait_s_max\)"
    ):
        supervisor.supervise_once()
    supervisor.stop()


def test_run_settings_name_a_bad_stall_or_wait_limit() -> None:
    with pytest.raises(SettingError, match=r"setting stall_timeout_s \(--stall-timeout-s\)"):
        RunSettings(stall_timeout_s=0.5)
    with pytest.raises(SettingError, match=r"dependency_wait_s_max \(--dependency-wait-s-max\)"):
        RunSettings(dependency_wait_s_max=-1)


# ---------------------------------------------------------------------- the DLQ figure


def test_the_dlq_figure_comes_from_the_dlq_source_not_the_counters(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    supervisor = Supervisor(settings, RunSettings(), [])
    counters = {DLQ_RECORDS: 4.0}  # what a restarted processor's counter would say
    tallies: list[DeadLetterTally | None] = [
        DeadLetterTally(5, True), DeadLetterTally(7, False), None,
    ]  # fmt: skip
    reporter = StatusReporter(
        supervisor, scraper=lambda url: counters, dlq_source=lambda: tallies.pop(0)
    )
    assert "| dlq 5 |" in reporter.line()
    assert "| dlq 7+ (counting) |" in reporter.line()
    assert "| dlq ? |" in reporter.line()


def test_processors_auto_is_one_per_usable_core_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from pipeline.supervisor import PROCESSES_MAX
    from streamledger.cli_parser import add_declared_arguments
    from streamledger.setting_fields import declaration_of

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_declared_arguments(parser, RunSettings, dest_prefix="run_")

    def processors(text: str) -> int:
        value = parser.parse_args(["--processors", text]).run_processors
        return RunSettings(processors=value).processors

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2})
    assert processors("auto") == 3  # the affinity, not os.cpu_count
    assert processors("5") == 5
    assert declaration_of(RunSettings, "processors").parse_text(" auto ") == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(PROCESSES_MAX + 8)))
    assert processors("auto") == PROCESSES_MAX
    with pytest.raises(argparse.ArgumentError, match="'many' is not a whole number"):
        processors("many")
