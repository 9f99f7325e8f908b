"""``python -m bench`` / ``make bench``: the benchmarks' command line (the run is ``bench.runner``).

The benchmarks are not a ``streamledger`` subcommand: the product does not depend on ``bench``,
``bench`` depends on the product (decision 0029).
"""

from __future__ import annotations

import argparse

from bench.runner import run_bench

SIZE_NAMES = ("small", "full")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        choices=SIZE_NAMES,
        default="small",
        help="default small (~10 min); full ~39 min on a quiet 2-core machine (decision 0136)",
    )
    parser.add_argument("--repetitions", type=int, default=3, help="per figure (default 3)")
    parser.add_argument("--skip-peers", action="store_true", help="no faust / Quix runs")
    parser.add_argument("--skip-latency", action="store_true", help="no end-to-end latency")
    parser.add_argument("--skip-notify", action="store_true", help="no webhook delivery suite")
    parser.add_argument(
        "--skip-reconciliation",
        action="store_true",
        help="no reconciliation suite (small ~1.2 min; full ~6: build ~2, 2 repetitions)",
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the bench stack up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="every benchmark on a private stack: table + bench/results/<time>.json",
    )
    add_arguments(parser)
    return run_bench(parser.parse_args(argv))
