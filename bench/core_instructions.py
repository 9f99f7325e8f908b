"""The workloads of the core's instruction counts (decisions 0143 and 0145), for callgrind.

    python -m bench.core_instructions write PICKLE
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=OUT \\
        python -m bench.core_instructions run PICKLE transfers   # none|standard|transactions

``write`` encodes three workloads once and pickles them, so both sides of an A/B run the same
bytes (the multileg workloads' timestamps follow the clock) and the count leaves out building
them: the loadgen's standard mix (``bench_core``'s, batches of 5,000) and the multileg suite's
two in-process workloads, two-account transfers and 10-posting transactions (batches of 500).
``run`` loads the pickle, sets the processor's collector thresholds and folds one workload
with ``bench_core.run_full``; ``none`` only loads, the figure to subtract.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Final

from bench import multileg_suite
from bench.bench_core import run_full
from processors.loop import tune_garbage_collection
from producers.loadgen import LoadPlan, generate
from schemas import codec

Records = list[tuple[bytes, int]]
STANDARD_BATCH: Final = 5_000  # bench_core's default
NONE: Final = "none"


def workloads() -> dict[str, tuple[Records, int]]:
    plan = LoadPlan(seed=7, tenants=200, commands=20_000)
    commands = [generated.command for generated in generate(plan)]
    standard = [(codec.encode_command(c), c.submitted_at_us // 1000 * 1000) for c in commands]
    transfers, transactions = multileg_suite.build_workloads(
        multileg_suite.IN_PROCESS_COMMANDS,
        multileg_suite.IN_PROCESS_TENANTS,
        multileg_suite.SEED,
    )
    batch = multileg_suite.IN_PROCESS_BATCH
    return {
        "standard": (standard, STANDARD_BATCH),
        "transfers": ([(r.value, r.timestamp_ms * 1000) for r in transfers.records], batch),
        "transactions": ([(r.value, r.timestamp_ms * 1000) for r in transactions.records], batch),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_instructions")
    parser.add_argument("action", choices=("write", "run"))
    parser.add_argument("pickle", type=Path)
    parser.add_argument("workload", nargs="?", default=NONE)
    arguments = parser.parse_args(argv)
    if arguments.action == "write":
        written = workloads()
        arguments.pickle.write_bytes(pickle.dumps(written))
        for name, (records, batch) in written.items():
            print(f"{name}: {len(records):,} records, batches of {batch:,}")
        return 0
    loaded: dict[str, tuple[Records, int]] = pickle.loads(arguments.pickle.read_bytes())
    tune_garbage_collection()  # as `streamledger process` does
    if arguments.workload != NONE:
        records, batch = loaded[arguments.workload]
        run_full(records, batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
