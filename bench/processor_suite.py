"""Processor figures: StreamLedger vs the transactional pass-through on the same records, the
raw producer, restore time, 1 vs 2 processor processes and their peak RSS, and a profile.

Every repetition gets a fresh topic prefix (fresh topics, consumer groups, transactional ids):
the workload's pre-encoded records are produced into it (timed: the raw producer figure), the
pass-through copies them, then the processor processes them. The first repetition's output is
checked against the core's fold (``bench.ledger_check``).

On its own, against the stack the ``STREAMLEDGER_*`` settings name (fresh topic prefixes,
deleted afterwards), the processor workloads only (`--profile`: the standard run under cProfile;
`--scale`: then the scale suite, 1 and 2 processes on the standard workload; `--workloads=`:
no workload, e.g. the scale suite alone):

    python -m bench.processor_suite [--size tiny|small] [--repetitions 1] [--workloads standard]
        [--profile] [--scale]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition

from bench import bench_processor, grants, ledger_check, workloads
from bench.results import BenchRun
from bench.workloads import Workload, produce
from kafka_adapter.admin import admin_client
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.processor_settings import build_processor_settings
from schemas.topics import COMMANDS_TOPIC, EVENTS_TOPIC, OUTCOMES_TOPIC
from streamledger.settings import Settings, environment_for, load_settings, replace

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT_S = 900.0
OFFSETS_POLL_S = 0.05
PROCESS_EXIT_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 120.0  # N processes joining one group on an idle topic
DESCRIBE_TIMEOUT_S = 30.0  # one describe of the group
# standalone sizes: (commands, tenants) of the standard mix; the runner's ``small`` is the same
STANDALONE_SIZES = {"tiny": (3_000, 10), "small": (20_000, 50)}
STANDALONE_SEED = 42  # the runner's
STANDALONE_PARTITIONS = 4


def fresh(settings: Settings, partitions: int) -> Settings:
    scoped = replace(settings, topic_prefix=grants.prefix("b"), partitions=partitions)
    grants.apply_topics(scoped)
    return scoped


def processor_settings_for(settings: Settings, instance_id: str = "bench") -> object:
    return build_processor_settings(settings, instance_id=instance_id, metrics_port=0)


def run_workload(
    run: BenchRun,
    settings: Settings,
    workload: Workload,
    *,
    repetitions: int,
    partitions: int,
    check: bool,
    passthrough: bool,
    restore: bool,
    profiler: cProfile.Profile | None = None,
) -> None:
    name = workload.name
    for repetition in range(repetitions):
        scoped = fresh(settings, partitions)
        processor_settings = processor_settings_for(scoped)
        try:
            rate = produce(
                client_config(scoped, ADMIN_PRINCIPAL),
                scoped.topic(COMMANDS_TOPIC),
                workload.records,
            )
            run.add("limits", f"raw producer ({name})", "records/s", rate)
            total = len(workload.records)
            if passthrough:
                rate = bench_processor.passthrough(scoped, processor_settings, total)  # type: ignore[arg-type]
                run.add("processor", f"pass-through EOS ({name})", "records/s", rate)
            rate = bench_processor.run_processor(
                processor_settings,  # type: ignore[arg-type]
                total,
                profile=False,
                timed_from=workload.timed_from,
                profiler=profiler if repetition == 0 else None,
                measure=None
                if workload.timed_from
                else partial(
                    _group_rate,
                    scoped,
                    f"{scoped.topic_prefix}streamledger-processor",
                    total,
                    partitions,
                ),
            )
            figure = run.add("processor", f"StreamLedger EOS ({name})", "commands/s", rate)
            if check and repetition == 0:
                result = check_output(scoped, workload, partitions)
                figure.correct = result.passed
                print(f"  check StreamLedger ({name}): {result.summary()}", flush=True)
            if restore:
                seconds_per_million, bytes_per_key, keys = bench_processor.measure_restore(
                    processor_settings  # type: ignore[arg-type]
                )
                run.add("restore", "restore time per million keys", "s", seconds_per_million)
                run.add("restore", "state memory per million keys", "MiB",
                        bytes_per_key * 1_000_000 / 2**20)  # fmt: skip
                run.sizes["restore_keys"] = keys
        finally:
            bench_processor.delete_topics(scoped)


def check_output(
    settings: Settings, workload: Workload, partitions: int
) -> ledger_check.CheckResult:
    # the input as the processor read it: broker timestamps, its tick records (ledger_check)
    records = ledger_check.read_input(
        client_config(settings, ADMIN_PRINCIPAL),
        settings.topic(COMMANDS_TOPIC),
        partitions,
        f"{settings.topic_prefix}streamledger-processor",
    )
    assert len(records) >= len(workload.records), "the processor committed too few commands"
    expected = ledger_check.expected_fold(records)
    events = ledger_check.read_values(
        client_config(settings, ADMIN_PRINCIPAL), settings.topic(EVENTS_TOPIC), partitions
    )
    outcomes = ledger_check.read_values(
        client_config(settings, ADMIN_PRINCIPAL), settings.topic(OUTCOMES_TOPIC), partitions
    )
    return ledger_check.check(expected, events, outcomes)


# --------------------------------------------------------------------------- processes


def committed_offsets(consumer: Consumer, topic: str, partitions: int) -> list[int]:
    committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
    return [max(tp.offset, 0) for tp in committed]


def partition_ends(consumer: Consumer, topic: str, partitions: int) -> list[int]:
    """Each partition's end offset now (the records already there)."""
    return [
        consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in range(partitions)
    ]


def wait_for_group(
    settings: Settings,
    group_id: str,
    total: int,
    partitions: int,
    pids: list[int],
    *,
    timeout_s: float = PROCESS_TIMEOUT_S,
    processes: list[subprocess.Popen[bytes]] | None = None,
    cpu_per_command: dict[int, float] | None = None,
) -> tuple[float, dict[int, int]]:
    """Commands/s of an engine in child processes, and the peak RSS (bytes) of each pid.
    ``cpu_per_command``, if given, is filled with each pid's CPU seconds (user + system, every
    thread) over the same window, per command committed in it.

    Steady state, measured the same way for every engine: from the first time the group's
    committed offsets are seen above zero (its first transaction is committed; start-up,
    group join and restore are behind it) to the moment they cover every command, over the
    commands committed in between. "Every command" is every partition's end as it is when this
    starts (the records are all there by then), partition by partition: a processor appends
    tick records to its own input partitions (decision 0026), so the offsets' sum can reach
    ``total`` while another partition still has commands to go. An engine that commits
    everything in one transaction has no steady state to measure: that raises (give it a bigger
    workload or a shorter interval)."""
    consumer = Consumer({**client_config(settings, ADMIN_PRINCIPAL), "group.id": group_id})
    topic = settings.topic(COMMANDS_TOPIC)
    peaks = dict.fromkeys(pids, 0)
    first: tuple[float, int] | None = None  # (when, committed) at the first commit seen
    cpu_first: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        ends = partition_ends(consumer, topic, partitions)
        assert sum(ends) >= total, f"{topic} holds {sum(ends)} records, fewer than {total}"
        while time.monotonic() < deadline:
            for pid in pids:
                peaks[pid] = max(peaks[pid], peak_rss_bytes(pid))
            offsets = committed_offsets(consumer, topic, partitions)
            committed = sum(offsets)
            covered = all(offset >= end for offset, end in zip(offsets, ends, strict=True))
            now = time.perf_counter()
            if first is None and committed > 0:
                first = (now, committed)
                cpu_first = {pid: cpu_seconds(pid) for pid in pids}
                if covered:
                    raise AssertionError(
                        f"group {group_id} committed all {total} commands in its first"
                        " transaction: no steady state to time"
                    )
            elif first is not None and covered:
                started, already = first
                if cpu_per_command is not None:
                    for pid in pids:
                        used_s = cpu_seconds(pid) - cpu_first[pid]
                        cpu_per_command[pid] = used_s / (total - already)
                return (total - already) / (now - started), peaks
            exited = [p.pid for p in processes or [] if p.poll() is not None]
            if exited:
                raise AssertionError(f"process {exited} exited before the end")
            time.sleep(OFFSETS_POLL_S)
    finally:
        consumer.close()
    raise AssertionError(f"group {group_id} did not reach {total} in {timeout_s} s")


def _group_rate(settings: Settings, group_id: str, total: int, partitions: int) -> float:
    return wait_for_group(settings, group_id, total, partitions, [])[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, every thread (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the ")" of the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of a running process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def spawn_processor(
    settings: Settings, instance_id: str, log_directory: Path, flags: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``streamledger process`` as a child process, with ``flags`` (its options) added."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEDGER_")}
    environment.update(environment_for(settings))
    log_directory.mkdir(parents=True, exist_ok=True)
    log = (log_directory / f"processor-{settings.topic_prefix}{instance_id}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "streamledger.cli", "process",
         f"--instance-id={instance_id}", "--metrics-port=0", *flags],
        env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )  # fmt: skip


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(PROCESS_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(PROCESS_EXIT_TIMEOUT_S)


def run_instances(
    run: BenchRun,
    settings: Settings,
    workload: Workload,
    *,
    instances: int,
    repetitions: int,
    partitions: int,
) -> None:
    """``streamledger process`` x instances as child processes, measured by committed offsets."""
    for _ in range(repetitions):
        scoped = fresh(settings, partitions)
        children: list[subprocess.Popen[bytes]] = []
        group = f"{scoped.topic_prefix}streamledger-processor"
        try:
            children = [
                spawn_processor(scoped, f"i{number}", settings.home / "logs")
                for number in range(instances)
            ]
            # every instance in the group with its share before the records arrive: the figure
            # is the steady state of N processes, not the first member's batches while the
            # others join (a cooperative rebalance waits for two polls of each busy member)
            wait_until_settled(scoped, group, instances, partitions, children)
            produce(
                client_config(scoped, ADMIN_PRINCIPAL),
                scoped.topic(COMMANDS_TOPIC),
                workload.records,
            )
            cpu_per_command: dict[int, float] = {}
            rate, peaks = wait_for_group(
                scoped,
                group,
                len(workload.records),
                partitions,
                [child.pid for child in children],
                processes=children,
                cpu_per_command=cpu_per_command,
            )
            run.add("scale", f"{instances} processor process(es) ({workload.name})",
                    "commands/s", rate)  # fmt: skip
            # diagnostic, not a target: the processes' CPU (summed) per command over the same
            # window, so that a slower figure tells a slower machine (same CPU per command, less
            # of it to be had) from slower code (more CPU per command)
            cpu_us = sum(cpu_per_command.values()) * 1e6
            cpu = run.add("scale", f"{instances} processor process(es) ({workload.name}):"
                          " CPU per command, all processes", "µs", cpu_us)  # fmt: skip
            cpu.note = "diagnostic"
            for peak in peaks.values():
                run.add("memory", f"peak RSS: processor, {instances} instance(s)", "MiB",
                        peak / 2**20)  # fmt: skip
        finally:
            for child in children:
                stop_process(child)
            bench_processor.delete_topics(scoped)


def wait_until_settled(
    settings: Settings,
    group_id: str,
    instances: int,
    partitions: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Until ``group_id`` is stable with ``instances`` members holding all ``partitions``. A
    describe that fails (a coordinator loading, a timed-out request) is asked again until the
    deadline; the last failure is what the timeout's message names."""
    admin = admin_client(settings)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    seen = "nothing"
    while time.monotonic() < deadline:
        exited = [p.pid for p in processes if p.poll() is not None]
        if exited:
            raise AssertionError(f"process {exited} exited before the group settled")
        try:
            description = admin.describe_consumer_groups(
                [group_id], request_timeout=DESCRIBE_TIMEOUT_S
            )[group_id].result(timeout=DESCRIBE_TIMEOUT_S + 5)
        except (KafkaException, TimeoutError) as error:  # a slow coordinator: ask again
            seen = f"describe failed: {error}"
            time.sleep(OFFSETS_POLL_S)
            continue
        held = sum(len(m.assignment.topic_partitions) for m in description.members)
        seen = f"{description.state}, {len(description.members)} members, {held} partitions"
        if (
            description.state == ConsumerGroupState.STABLE
            and len(description.members) == instances
            and held == partitions
            and all(m.assignment.topic_partitions for m in description.members)
        ):
            return
        time.sleep(OFFSETS_POLL_S)
    raise AssertionError(f"group {group_id} not settled in {SETTLE_TIMEOUT_S} s: {seen}")


# --------------------------------------------------------------------------- profile

CATEGORIES = (
    ("decode", ("decode", "avro_command_readers")),
    # the compiled writers are builtins named "<built-in method schemas.avro_writers.write_…>"
    ("encode", ("encode", "seal", "canonical", "to_avro", "schemaless_writer", "state_key",
                "avro_writers")),
    ("kafka calls", ("cimpl", "confluent_kafka", "Producer", "Consumer")),
)  # fmt: skip


# the core as cProfile names it: its sources, its generated code, and (mypyc, build/native) its
# compiled functions, which are builtins named "<built-in method ledger.decider.step>" with path
# "~": without those the compiled core counted as "other" (bench/README.md 2026-12-06)
DECIDE_MARKERS = ("/ledger/", "method ledger.", "<generated ledger.", "schemas/limits.py",
                  "schemas.limits", "schemas/model.py", "hashlib", "heapq",
                  "_generated_records")  # fmt: skip
# the adapter's own Python around the core (decision 0125: most of what "other" was)
ADAPTER_MARKERS = ("processors/", "kafka_adapter/", "schemas/keys.py", "schemas/signing_keys.py")


def profile_categories(profiler: cProfile.Profile) -> dict[str, float]:
    """Own time (tottime) of the profiled processor thread, grouped into decode / decide /
    encode / Kafka calls / the adapter (``processors/``: the loop, ``PartitionLedger``, keys,
    routing, signatures) / the rest (metrics, logging, the standard library)."""
    stats = pstats.Stats(profiler)
    totals: dict[str, float] = {"decode": 0.0, "decide": 0.0, "encode": 0.0, "kafka calls": 0.0,
                                "adapter": 0.0, "other": 0.0}  # fmt: skip
    for (path, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own_s = row[2]
        label = f"{path}:{function}"
        category = "other"
        for name, markers in CATEGORIES:
            if any(marker in label for marker in markers):
                category = name
                break
        else:
            if any(part in label for part in DECIDE_MARKERS):
                category = "decide"
            elif any(part in label for part in ADAPTER_MARKERS):
                category = "adapter"
        if "codec.py" in path and category == "other":
            category = "encode"
        if "sleep" in function or "wait" in function:
            continue  # idle, not work
        totals[category] += own_s
    return totals


# --------------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the processor workloads on their own")
    parser.add_argument("--size", choices=sorted(STANDALONE_SIZES), default="tiny")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--workloads", default="standard,hot_tenant,duplicates")
    parser.add_argument("--profile", action="store_true", help="cProfile the standard run")
    parser.add_argument("--scale", action="store_true", help="then 1 and 2 processor processes")
    arguments = parser.parse_args(argv)
    commands, tenants = STANDALONE_SIZES[arguments.size]
    seed, partitions = STANDALONE_SEED, STANDALONE_PARTITIONS
    builders = {
        "standard": lambda: workloads.standard(seed, commands, tenants, partitions),
        "hot_tenant": lambda: workloads.hot_tenant(seed, commands // 2, tenants, partitions),
        "duplicates": lambda: workloads.duplicates(
            workloads.standard(seed + 1, commands // 2, tenants, partitions)
        ),
    }
    settings = load_settings()
    run = BenchRun(size=arguments.size, seed=seed, repetitions=arguments.repetitions)
    profiler = cProfile.Profile() if arguments.profile else None
    for name in filter(None, arguments.workloads.split(",")):
        workload = builders[name]()
        standard = name == "standard"
        run_workload(
            run, settings, workload, repetitions=arguments.repetitions, partitions=partitions,
            check=True, passthrough=standard, restore=standard,
            profiler=profiler if standard else None,
        )  # fmt: skip
    if arguments.scale:
        scale = builders["standard"]()
        for instances in (1, 2):
            run_instances(
                run, settings, scale, instances=instances, repetitions=arguments.repetitions,
                partitions=partitions,
            )  # fmt: skip
    print(run.table())
    if profiler is not None:  # the profiled run's figure is slower than an unprofiled one
        totals = profile_categories(profiler)
        total = sum(totals.values()) or 1.0
        print("processor loop profile (own CPU time):",
              ", ".join(f"{k} {v / total:.0%}" for k, v in totals.items()))  # fmt: skip
    checks = [f for f in run.figures if f.correct is False]
    return 1 if checks else 0


if __name__ == "__main__":
    sys.exit(main())
