"""``python -m bench.latency_suite`` on the test stack, at a low rate with the breakdown: every
command becomes visible in PostgreSQL through the suite's visibility probe (decision 0135: the
tenant heads checked on the server every 2 ms), each figure is measured, and rows are seen
after their events are visible in Kafka (the hop's p50 is positive). Run as the bench runs, in
a process of its own: tests do not import bench (the layers, decision 0029)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamledger.settings import Settings, child_environment

REPOSITORY = Path(__file__).resolve().parents[2]
SUITE_TIMEOUT_S = 300.0


def figures(stdout: str, group: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) >= 3 and cells[0] == group:
            found[cells[1]] = float(cells[2].split()[0].replace(",", ""))
    return found


def test_the_latency_suite_sees_every_command_visible_and_times_each_hop(
    stack_settings: Settings,
) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.latency_suite", "--rates", "200", "--duration-s", "3",
         "--breakdown"],
        cwd=REPOSITORY, env=child_environment(stack_settings), capture_output=True, text=True,
        timeout=SUITE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    latency = figures(finished.stdout, "latency")
    assert set(latency) == {f"end-to-end {p} at 200/s" for p in ("p50", "p95", "p99")}, latency
    assert 0 < latency["end-to-end p50 at 200/s"] <= latency["end-to-end p99 at 200/s"], latency
    hops = figures(finished.stdout, "latency hop")
    # The probe reads a head only once the projection committed it, which it does after it read
    # the event read_committed: no row is seen before its event was visible.
    assert hops["event_visible → row_visible p50 at 200/s"] > 0, hops
