"""``python -m bench.processor_suite --workloads= --scale`` on the test stack: the scale suite
alone (1, then 2 ``streamledger process`` children on the tiny standard workload) reports, for
each instance count, its commands/s and the processes' CPU per command over the same window
(summed over the children: a diagnostic figure, so that a slower machine can be told from slower
code). Run as the bench runs, in a process of its own: tests do not import bench (the layers,
decision 0029)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamledger.settings import Settings, child_environment

REPOSITORY = Path(__file__).resolve().parents[2]
SUITE_TIMEOUT_S = 600.0


def test_the_scale_suite_reports_the_processes_cpu_per_command(
    stack_settings: Settings,
) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.processor_suite", "--size", "tiny", "--workloads=",
         "--scale"],
        cwd=REPOSITORY, env=child_environment(stack_settings), capture_output=True, text=True,
        timeout=SUITE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = {
        cells[1]: cells[2:]
        for line in finished.stdout.splitlines()
        if (cells := [cell.strip() for cell in line.split("|")[1:-1]]) and cells[0] == "scale"
    }
    for instances in (1, 2):
        rate = f"{instances} processor process(es) (standard)"
        cpu = f"{rate}: CPU per command, all processes"
        assert set(rows) >= {rate, cpu}, finished.stdout
        assert float(rows[rate][0].split()[0].replace(",", "")) > 0, rows[rate]
        cell, unit, _count, check = rows[cpu]
        assert float(cell.split()[0].replace(",", "")) > 0, rows[cpu]
        assert (unit, check) == ("µs", "diagnostic"), rows[cpu]
