"""``streamledger bench``: the same run as ``make bench`` (see ``bench.runner``).

Registering the subcommand imports nothing heavy: the run itself (and ``tests.system``'s
workload helpers it reuses, which live in the repository, not in the installed packages) is
imported only when ``streamledger bench`` runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamledger.cli import Subparsers
from streamledger.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE_NAMES = ("small", "full")


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="every benchmark on a private stack: table + bench/results/<time>.json (~10 min)",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_bench_command)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size", choices=SIZE_NAMES, default="small", help="default small (~10 min); full ~19 min"
    )
    parser.add_argument("--repetitions", type=int, default=3, help="per figure (default 3)")
    parser.add_argument("--skip-peers", action="store_true", help="no faust / Quix runs")
    parser.add_argument("--skip-latency", action="store_true", help="no end-to-end latency")
    parser.add_argument("--keep-stack", action="store_true", help="leave the bench stack up")


def run_bench_command(arguments: argparse.Namespace, settings: Settings) -> int:
    """The bench runs on its own stack and ports; the shared settings are not used."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bench.runner import run_bench

    return run_bench(arguments)
