"""Where the API's balance read spends its CPU during ``make bench``'s API figure (decision 0131).

    .venv/bin/python -m bench.api_read_cpu [--runs 1] [--repetitions 4] [--seconds 3]
        [--api-port PORT] [--no-pgbench] [--out FILE.json]

``bench.bench_api.run_api``'s procedure (fresh topics and database; processor, projection and
``streamledger api`` as child processes; 10 submits; ``BENCH_INGEST_RATE`` transfers/s through
the SDK; a ``WARM_UP_S`` warm-up; then per repetition ``--seconds`` of ``bench/http_load`` with
``BENCH_CLIENTS`` clients and, unless ``--no-pgbench``, the same of pgbench on the same
statement), with, per HTTP window, what ``run_api`` does not print:

- the API process's CPU per read, all threads (``/proc/PID/task/*/schedstat``, nanoseconds),
  and without its background work (its CPU over 2 s of ingest without reads, scaled);
- its event-loop thread's CPU per read (uvicorn runs the loop in the main thread), how long that
  thread ran and waited runnable (schedstat), its voluntary and involuntary context switches
  per read, and the share of its CPU spent in the kernel (``/proc/PID/task/PID/stat``).

One JSON line per repetition, then the medians per run. ``--runs N`` starts N stacks one after
the other (to compare two commits, run it on each, alternating). ``--api-port`` keeps the API on
a port of your range (default: one the kernel picks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.bench_api import (
    BENCH_CLIENTS,
    BENCH_INGEST_RATE,
    BENCH_SUBMITS,
    CONCURRENCY,
    TENANTS,
    WARM_UP_S,
    http_reads,
    ingest,
    percentile,
    pgbench_reads,
    set_up_and_submit,
)
from streamledger.settings import load_settings
from workloads.api_stack import running_api_stack

BACKGROUND_S = 2.0  # the API's CPU with ingest and no reads, measured over this long
SUMMARY_KEYS = (
    "ratio",
    "http_p99_ms",
    "pgbench_p99_ms",
    "http_p50_ms",
    "reads_per_s",
    "api_cpu_per_read_us",
    "api_cpu_per_read_net_us",
    "loop_cpu_per_read_us",
    "loop_ran_s",
    "loop_waited_s",
    "involuntary_switches_per_read",
    "voluntary_switches_per_read",
    "loop_kernel_share",
    "load",
)


def threads_cpu_ns(pid: int) -> int:
    """CPU of every thread of ``pid`` so far (schedstat's run time, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended since the listing
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total


def thread_reading(pid: int) -> dict[str, int]:
    """The event-loop thread (``pid``'s main thread): run and run-queue wait time (ns), context
    switches, user and kernel clock ticks."""
    task = Path(f"/proc/{pid}/task/{pid}")
    ran, waited, _ = (int(value) for value in (task / "schedstat").read_text().split())
    switches = {}
    for line in (task / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            switches[name] = int(value)
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    return {
        "ran": ran,
        "waited": waited,
        "voluntary": switches["voluntary_ctxt_switches"],
        "involuntary": switches["nonvoluntary_ctxt_switches"],
        "user_ticks": int(fields[11]),
        "kernel_ticks": int(fields[12]),
    }


def window(
    api_pid: int, run: Callable[[], list[float]], background_ns_per_s: float
) -> dict[str, float]:
    """Run ``run()`` (the HTTP reads) and read the API's CPU around it."""
    all_before, loop_before = threads_cpu_ns(api_pid), thread_reading(api_pid)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    latencies = run()
    wall_s = time.perf_counter() - started
    all_after, loop_after = threads_cpu_ns(api_pid), thread_reading(api_pid)
    reads = max(len(latencies), 1)
    delta = {key: loop_after[key] - loop_before[key] for key in loop_after}
    all_ns = all_after - all_before
    ticks = max(delta["user_ticks"] + delta["kernel_ticks"], 1)
    return {
        "http_p50_ms": percentile(latencies, 0.50) * 1e3,
        "http_p99_ms": percentile(latencies, 0.99) * 1e3,
        "reads_per_s": len(latencies) / wall_s,
        "api_cpu_per_read_us": all_ns / reads / 1e3,
        "api_cpu_per_read_net_us": (all_ns - background_ns_per_s * wall_s) / reads / 1e3,
        "loop_cpu_per_read_us": delta["ran"] / reads / 1e3,
        "loop_ran_s": delta["ran"] / 1e9,
        "loop_waited_s": delta["waited"] / 1e9,
        "involuntary_switches_per_read": delta["involuntary"] / reads,
        "voluntary_switches_per_read": delta["voluntary"] / reads,
        "loop_kernel_share": delta["kernel_ticks"] / ticks,
        "load": load,
    }


def one_run(
    number: int, repetitions: int, seconds: float, api_port: int | None, pgbench: bool
) -> list[dict[str, float]]:
    logs = Path(tempfile.mkdtemp(prefix="bench-api-cpu-"))
    flags = ["--wait-timeout-ms=20000", f"--pool-size-max={max(CONCURRENCY)}"]
    settings = load_settings()
    records: list[dict[str, float]] = []
    with running_api_stack(settings, logs, TENANTS, flags, api_port=api_port) as stack:
        api_pid = stack.children[-1].process.pid
        set_up_and_submit(stack, BENCH_SUBMITS)
        stop = threading.Event()
        feeder = threading.Thread(target=ingest, args=(stack.settings, BENCH_INGEST_RATE, stop))
        feeder.start()
        try:
            time.sleep(1.0)  # as run_api: the accounts reach the projection
            before = threads_cpu_ns(api_pid)
            time.sleep(BACKGROUND_S)
            background_ns_per_s = (threads_cpu_ns(api_pid) - before) / BACKGROUND_S
            http_reads(stack, BENCH_CLIENTS, WARM_UP_S)
            for repetition in range(repetitions):
                figures = window(
                    api_pid, lambda: http_reads(stack, BENCH_CLIENTS, seconds), background_ns_per_s
                )
                if pgbench:
                    by_pgbench = pgbench_reads(stack, BENCH_CLIENTS, seconds)
                    figures["pgbench_p99_ms"] = percentile(by_pgbench, 0.99) * 1e3
                    figures["ratio"] = figures["http_p99_ms"] / figures["pgbench_p99_ms"]
                figures["run"] = number
                figures["repetition"] = repetition
                figures["background_ms_per_s"] = background_ns_per_s / 1e6
                print(json.dumps({key: round(value, 4) for key, value in figures.items()}))
                records.append(figures)
        finally:
            stop.set()
            feeder.join()
    return records


def summary(records: list[dict[str, float]]) -> str:
    medians = [
        f"{key} {statistics.median(record[key] for record in records):.3g}"
        for key in SUMMARY_KEYS
        if key in records[0]
    ]
    return ", ".join(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1, help="stacks started one after another")
    parser.add_argument("--repetitions", type=int, default=4, help="HTTP windows per run")
    parser.add_argument("--seconds", type=float, default=3.0, help="per window (and pgbench)")
    parser.add_argument("--api-port", type=int, default=None)
    parser.add_argument("--no-pgbench", action="store_true", help="HTTP windows only")
    parser.add_argument("--out", type=Path, default=None, help="all repetitions as JSON")
    arguments = parser.parse_args()
    records: list[dict[str, float]] = []
    for number in range(arguments.runs):
        run = one_run(
            number,
            arguments.repetitions,
            arguments.seconds,
            arguments.api_port,
            not arguments.no_pgbench,
        )
        print(f"run {number} (medians): {summary(run)}")
        records.extend(run)
    print(f"all runs (medians of {len(records)} repetitions): {summary(records)}")
    if arguments.out is not None:
        arguments.out.write_text(json.dumps(records))


if __name__ == "__main__":
    main()
