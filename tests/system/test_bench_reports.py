"""``python -m bench.reports_suite --size tiny`` on the test stack: the fill is consistent (the
statement's opening + entries = closing, every trial balance nets to zero, each searched
``order_id`` is found, all checked by the product's own code, or the suite stops; the metadata
rows, filled beside the transfers, are the transfers' metadata in the same order) and every
figure is measured. Run as the bench runs, in a process of its own: tests do not import bench
(the layers, decision 0029)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamledger.settings import Settings, child_environment

REPOSITORY = Path(__file__).resolve().parents[2]
SUITE_TIMEOUT_S = 600.0


def test_the_reports_bench_fills_consistent_rows_and_times_the_real_reads(
    stack_settings: Settings,
) -> None:
    environment = child_environment(stack_settings)
    finished = subprocess.run(
        [sys.executable, "-m", "bench.reports_suite", "--size", "tiny", "--check-fill"],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in finished.stdout.splitlines()
        if line.startswith("| reports |")
    ]
    assert len(rows) == 4, finished.stdout
    for _group, name, cell, _unit, count, check in rows:
        # the cell has two decimals (a tiny trial balance can print 0.00 s); the median in the
        # check column has three significant digits
        median = float(check.split("p50 ", 1)[1].split()[0])
        assert count == "1" and float(cell.split()[0].replace(",", "")) >= 0, name
        assert median > 0, name
        assert "load" in check, name
    assert [row[5].startswith("target") for row in rows] == [True, True, True, False]
    assert finished.stdout.count("reports: filled ") == 6, finished.stdout  # one per filled part
    # the metadata rows, made beside the transfers, are the transfers' metadata (decision 0136)
    assert "reports: the metadata rows are the transfers' metadata" in finished.stdout


def test_the_reports_fill_restored_from_its_cache_is_the_fresh_fill(
    stack_settings: Settings, tmp_path: Path
) -> None:
    """``--check-cache``: the fill stored as a data-only dump and restored by COPY into a
    migrated database has the fresh fill's rows in the same physical order and the same pages
    (every table and index), decision 0147."""
    finished = subprocess.run(
        [sys.executable, "-m", "bench.reports_suite", "--size", "tiny", "--check-cache",
         str(tmp_path)],
        cwd=REPOSITORY,
        env=child_environment(stack_settings),
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "the same as a fresh fill" in finished.stdout, finished.stdout
    assert finished.stdout.count(" same: ") == 6, finished.stdout  # every filled table
    assert len(list(tmp_path.glob("reports-*.dump"))) == 1
