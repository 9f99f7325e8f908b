"""The supervisor of ``streamledger run`` with stand-in children (tiny Python processes).

Restart with bounded exponential backoff, a clean stop that waits for SIGTERM handlers, SIGKILL
for a child that ignores SIGTERM, the state file, and the status line's restart-proof counters.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from infra.prometheus_server import ScrapeTargets
from pipeline.local_prometheus import scrape_targets
from pipeline.status import COMMANDS_CONSUMED, CounterTotals, StatusReporter, sum_samples
from pipeline.supervisor import ChildSpec, RunSettings, Supervisor, plan_children, read_state
from streamledger.settings import Settings

CRASH = "import sys; sys.exit(3)"
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
    deadline = time.monotonic() + 20
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
    deadline = time.monotonic() + 20
    for each in specs:  # both have installed their signal handlers
        while "ready" not in each.log_path.read_text().splitlines() and time.monotonic() < deadline:
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
    assert targets == ScrapeTargets((9500, 9501), (9502,), (9503,), (8090,))


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
