"""``python -m bench.reconciliation_suite --check-cache DIRECTORY``: the workload the bench keeps
between runs (decision 0141) is, read back, the one a fresh build makes. No stack: the suite
builds and compares in its own process (tests do not import bench, decision 0029)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
CHECK_TIMEOUT_S = 300.0


def check_cache(directory: Path) -> str:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.reconciliation_suite", "--size", "small",
         "--check-cache", str(directory)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


def test_the_cached_reconciliation_workload_is_the_one_a_fresh_build_makes(
    tmp_path: Path,
) -> None:
    assert "stored in" in check_cache(tmp_path)
    stored = list(tmp_path.glob("reconciliation-*.pickle"))
    assert len(stored) == 1, stored
    read = check_cache(tmp_path)
    assert "read from" in read and "the same as a fresh build" in read, read
    assert list(tmp_path.glob("reconciliation-*.pickle")) == stored
