"""The compiled core (mypyc, decision 0048) against the Python sources, back to back.

    python -m bench.bench_native [--commands 30000] [--repetitions 3] [--profile]

Each repetition runs ``bench.bench_core``'s full path (decode, ``step``, seal and encode, per
batch the state records and the commit) and pure core (``step`` + commit) in two child processes,
one with ``STREAMLEDGER_PURE_PYTHON=1`` and one compiled, alternating which goes first, and
reports CPU µs per command and the ratio pure/compiled of the same repetition (the machine is
shared: only ratios of one run are believed). ``--profile`` adds each implementation's cProfile
top entries of the full path (own time). Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 1_800
CHILD = """
import cProfile, io, json, pstats, sys, time
import ledger
from bench.bench_core import best_of, run_core, run_full
from producers.loadgen import LoadPlan, generate
from schemas import codec
from streamledger import native

commands_wanted, tenants, batch, profile = (int(a) for a in sys.argv[1:5])
plan = LoadPlan(seed=7, tenants=tenants, commands=commands_wanted)
commands = [generated.command for generated in generate(plan)]
records = [(codec.encode_command(c), c.submitted_at_us // 1000 * 1000) for c in commands]
decoded = [(codec.decode_command(data), stamp) for data, stamp in records]
full_s = best_of(2, lambda: run_full(records, batch))
core_s = best_of(2, lambda: run_core(decoded, batch))
result = {"commands": len(records), "full_us": full_s / len(records) * 1e6,
          "core_us": core_s / len(records) * 1e6, "compiled": len(native.compiled_modules())}
if profile:
    profiler = cProfile.Profile()
    profiler.runcall(run_full, records, batch)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    result["profile"] = text.getvalue()
print(json.dumps(result))
"""


def run_child(
    *, pure_python: bool, arguments: argparse.Namespace, profile: bool
) -> dict[str, object]:
    environment = {**os.environ, "STREAMLEDGER_PURE_PYTHON": "1" if pure_python else "0"}
    program = [
        str(arguments.commands),
        str(arguments.tenants),
        str(arguments.batch),
        str(int(profile)),
    ]
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, *program],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"child failed:\n{completed.stderr[-4000:]}")
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    ratios: dict[str, list[float]] = {"full_us": [], "core_us": []}
    print(f"{'rep':<4}{'impl':<10}{'modules':>8}{'full µs/cmd':>14}{'core µs/cmd':>14}")
    for repetition in range(arguments.repetitions):
        order = (True, False) if repetition % 2 == 0 else (False, True)
        results = {}
        for pure_python in order:
            result = run_child(pure_python=pure_python, arguments=arguments, profile=False)
            results[pure_python] = result
            name = "python" if pure_python else "compiled"
            print(
                f"{repetition:<4}{name:<10}{result['compiled']:>8}"
                f"{result['full_us']:>14.1f}{result['core_us']:>14.1f}"
            )
        for figure, values in ratios.items():
            values.append(float(results[True][figure]) / float(results[False][figure]))  # type: ignore[arg-type]
    for figure, values in ratios.items():
        print(
            f"python / compiled, {figure}: median {statistics.median(values):.3f}"
            f" [{min(values):.3f} … {max(values):.3f}] over {len(values)} repetitions"
        )
    if arguments.profile:
        for pure_python in (True, False):
            result = run_child(pure_python=pure_python, arguments=arguments, profile=True)
            print(f"\n== profile, {'python' if pure_python else 'compiled'} (full path)")
            print(result["profile"])


if __name__ == "__main__":
    main()
