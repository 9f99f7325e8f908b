"""The processor after a large restore, with and without the restored state frozen out of the
cyclic garbage collector's reach (decision 0142).

    python -m bench.restored_heap_suite [--keys 1000000] [--commands 200000] [--rounds 3]
                                        [--tenants 200] [--seed 42] [--in-memory]

1. fills one partition's ``ledger.outcomes`` and ``ledger.balances`` with ``--keys`` live
   idempotency keys and 0.81 posted transfers per key, as ``bench.bench_restore`` does, once;
   produces the standard mix (``--commands``, 10 % duplicates) into fresh topics of one
   partition per run, all before the first run (the workload's objects are gone from this
   process while the processor runs);
2. per run, the real loop (``processors.loop.Processor``, in this process, with
   ``streamledger process``'s collector thresholds) whose assignment restores the partition of
   step 1 (the ledger ``restore_ledgers`` rebuilds, as the loop's ``_restore`` does); arm
   ``frozen`` then calls ``freeze_restored_state`` (the candidate decision 0142 measured, not
   built into the loop), arm ``unfrozen`` leaves the state in the collector's reach, as
   ``streamledger process`` does. Both arms
   freeze this process's start-up objects before the run, so they differ by the restored state
   alone. The arms alternate, and which goes first alternates by round;
3. prints per run: commands/s from the first command consumed to the last, this process's CPU
   time per command, the collector's passes per generation with their total and longest time
   (``gc.callbacks``, wall and CPU), the loop's batch times, and one full collection once every
   command is decided (``gc.collect()``, timed: the pause the collector's next full pass would
   take then).

``--in-memory``: no Kafka; one full collection's CPU time per restored key and per command
decided since, and what ``freeze_restored_state`` costs after a restore and on a rebalance
(``heap_costs``).

Uses the shared settings (``STREAMLEDGER_*``) and unique topic prefixes, deleted at the end.
Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import ledger
from bench import bench_processor, bench_restore, workloads
from bench.processor_suite import fresh
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.loop import Processor, tune_garbage_collection
from processors.metrics import ProcessorMetrics
from processors.partition_ledger import (
    WIRE_FORMAT,
    PartitionLedger,
    ledger_from_snapshot,
    restore_ledgers,
)
from processors.processor_settings import ProcessorSettings, build_processor_settings
from processors.restore import PartitionSnapshot, admin_for, restore_consumer
from processors.transport import CommandRecord
from schemas.codec import decode_command, encode_state
from schemas.keys import state_key
from schemas.model import TenantHead
from schemas.topics import COMMANDS_TOPIC
from streamledger.settings import load_settings, replace

ARMS = ("unfrozen", "frozen")
RUN_TIMEOUT_S = 900.0
POLL_S = 0.01
TRANSFERS_PER_KEY = 0.81  # posted transfers per live key after the standard run (bench_restore)
DECIDE_BATCH = 5_000  # commands per transaction, as the loop's batch_records_max
PASSES = 3


@dataclass
class Collections:
    """The collector's passes seen through ``gc.callbacks``: per generation, each pass's s."""

    passes: dict[int, list[float]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    cpu: dict[int, list[float]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    _started: float = 0.0
    _cpu_started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started, self._cpu_started = time.perf_counter(), time.thread_time()
        else:
            self.passes[info["generation"]].append(time.perf_counter() - self._started)
            self.cpu[info["generation"]].append(time.thread_time() - self._cpu_started)


def freeze_restored_state(*, state_dropped: bool) -> None:
    """The candidate decision 0142 measured (not built into ``processors.loop``): every object
    alive after a restore out of the cyclic collector's reach, collected first so no garbage is
    frozen; after a partition's state was dropped, everything unfrozen first so a cycle among
    the dropped state cannot stay frozen (one full pass over the whole process)."""
    if state_dropped:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class RestoredProcessor(Processor):
    """The loop, its assignment restored from the filled topics of step 1 (not its own, which
    are empty), each batch timed."""

    def __init__(
        self,
        processor_settings: ProcessorSettings,
        filled: ProcessorSettings,
        *,
        frozen: bool,
    ) -> None:
        super().__init__(processor_settings, ProcessorMetrics())
        self.filled = filled
        self.frozen = frozen
        self.batch_s: list[float] = []
        self.restore_s = 0.0
        self.freeze_s = 0.0

    def _restore(self, partitions: Iterable[int]) -> None:
        started = time.perf_counter()
        reader, admin = restore_consumer(self.filled), admin_for(self.filled)
        try:
            for ledger, snapshot in restore_ledgers(reader, admin, self.filled, sorted(partitions)):
                self.ledgers[snapshot.partition] = ledger
        finally:
            reader.close()
        self.restore_s = time.perf_counter() - started
        if self.frozen:
            started = time.perf_counter()
            freeze_restored_state(state_dropped=False)
            self.freeze_s = time.perf_counter() - started
        self._report_assignment()

    def _process_batch(self, messages: Sequence[CommandRecord]) -> None:
        started = time.perf_counter()
        super()._process_batch(messages)
        self.batch_s.append(time.perf_counter() - started)


@dataclass
class ArmRun:
    """One run of an arm, as ``_run`` measured it."""

    arm: str
    round_number: int
    rate: float  # commands/s
    cpu_per_command_s: float  # this process's CPU time
    collections: Collections
    full_pass_s: tuple[float, float]  # wall, CPU of one full collection once all was decided
    keys: int  # live idempotency keys then


def main() -> None:
    arguments = parse_arguments()
    tune_garbage_collection()  # as `streamledger process` does
    if arguments.in_memory:
        heap_costs(arguments.keys, arguments.commands, arguments.tenants, arguments.seed)
        return
    settings = load_settings()
    filled_settings, filled = bench_restore.restore_bench_settings("benchh", 1, "bench-heap")
    runs = [
        (round_number, arm)
        for round_number in range(arguments.rounds)
        for arm in (ARMS if round_number % 2 == 0 else ARMS[::-1])
    ]
    scoped = [fresh(settings, 1) for _ in runs]
    try:
        bench_restore.fill(
            filled_settings,
            filled.topics,
            arguments.keys,
            5_000,
            with_header=True,
            transfers=int(arguments.keys * TRANSFERS_PER_KEY),
        )
        # every run's commands produced first: the workload's records and commands are not in
        # this process while the processor runs (a full collection would walk them)
        workload = workloads.standard(arguments.seed, arguments.commands, arguments.tenants, 1)
        total = len(workload.records)
        for run_settings in scoped:
            connection = client_config(run_settings, ADMIN_PRINCIPAL)
            workloads.produce(connection, run_settings.topic(COMMANDS_TOPIC), workload.records)
        del workload
        for (round_number, arm), run_settings in zip(runs, scoped, strict=True):
            processor_settings = build_processor_settings(
                run_settings, instance_id="bench", metrics_port=0
            )
            report(_run(processor_settings, filled, total, arm, round_number))
    finally:
        for run_settings in (filled_settings, *scoped):
            bench_processor.delete_topics(run_settings)


def _run(
    processor_settings: ProcessorSettings,
    filled: ProcessorSettings,
    total: int,
    arm: str,
    round_number: int,
) -> tuple[ArmRun, RestoredProcessor]:
    """Run the loop until ``total`` commands are consumed; then one full collection, timed,
    with every command decided (the loop idle, the state still owned)."""
    # the start-up objects out of the collector's reach in both arms (as after any freeze):
    # the arms differ by the restored state alone
    gc.collect()
    gc.freeze()
    processor = RestoredProcessor(processor_settings, filled, frozen=arm == "frozen")
    processor.check_topics()
    collections = Collections()
    stop = threading.Event()
    errors: list[Exception] = []
    thread = threading.Thread(target=_loop, args=(processor, stop, errors), daemon=True)
    thread.start()
    try:
        consumed = bench_processor._counter(processor.metrics.commands_consumed)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while consumed() == 0 and time.monotonic() < deadline and not errors:
            time.sleep(POLL_S)
        gc.callbacks.append(collections)
        started, cpu_started, first = time.perf_counter(), time.process_time(), consumed()
        while consumed() < total and time.monotonic() < deadline and not errors:
            time.sleep(POLL_S)
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        gc.callbacks.remove(collections)
        keys = sum(ledger.live_idempotency_keys() for ledger in list(processor.ledgers.values()))
        full_started, full_cpu_started = time.perf_counter(), time.thread_time()
        gc.collect()
        full = time.perf_counter() - full_started, time.thread_time() - full_cpu_started
    finally:
        stop.set()
        thread.join(RUN_TIMEOUT_S)
        gc.unfreeze()  # the next run starts from the same collector state
        gc.collect()
    assert not errors, errors
    assert consumed() >= total, f"consumed {consumed()} of {total}"
    run = ArmRun(
        arm, round_number, (total - first) / elapsed, cpu_s / (total - first), collections, full,
        keys,
    )  # fmt: skip
    return run, processor


def _loop(processor: Processor, stop: threading.Event, errors: list[Exception]) -> None:
    try:
        processor.run(stop)
    except Exception as exc:  # noqa: BLE001 - handed to the main thread
        errors.append(exc)


def report(measured: tuple[ArmRun, RestoredProcessor]) -> None:
    run, processor = measured
    collections = run.collections
    passes = "; ".join(
        f"gen{generation} {len(times)}x {sum(times) * 1e3:.0f} ms"
        f" (max {max(times, default=0) * 1e3:.1f}, CPU max"
        f" {max(collections.cpu[generation], default=0) * 1e3:.1f})"
        for generation, times in collections.passes.items()
    )
    batches = sorted(processor.batch_s)
    quantiles = statistics.quantiles(batches, n=1000) if len(batches) > 1 else [0.0] * 999
    print(
        f"round {run.round_number} {run.arm:>8}: {run.rate:,.0f} commands/s, CPU"
        f" {run.cpu_per_command_s * 1e6:.1f} µs/command, load {os.getloadavg()[0]:.2f};"
        f" restore {processor.restore_s:.1f} s (freeze {processor.freeze_s * 1e3:.0f} ms),"
        f" {run.keys:,} live keys after",
        flush=True,
    )
    wall, cpu = run.full_pass_s
    print(
        f"    collector: {passes}; a full collection at the end: {wall * 1e3:.1f} ms"
        f" (CPU {cpu * 1e3:.1f})",
        flush=True,
    )
    print(
        f"    batches: {len(batches)}, p50 {quantiles[499] * 1e3:.1f} ms, p99"
        f" {quantiles[989] * 1e3:.1f}, max {batches[-1] * 1e3:.1f}",
        flush=True,
    )


def heap_costs(keys: int, commands: int, tenants: int, seed: int) -> None:
    """No Kafka, this process's CPU time: one full collection (``gc.collect()``, the fastest of
    ``PASSES``) over (a) the start-up objects, (b) with one partition restored with ``keys`` live
    keys (the state ``bench_restore`` fills, from an in-memory snapshot), (c) with ``commands``
    of the standard mix decided since on another partition (what a processor grows between
    restores); then ``freeze_restored_state`` after the restore (nothing frozen before), a full
    collection after it, and ``freeze_restored_state`` as a rebalance's next restore calls it
    (everything frozen before: unfreeze, collect, freeze)."""
    settings = replace(load_settings(), topic_prefix="heap.", partitions=1)
    processor_settings = build_processor_settings(
        settings,
        instance_id="heap",
        metrics_port=0,
        limits={"idempotency_retention_s": 100 * 365 * 86_400},
    )
    workload = workloads.standard(seed, commands, tenants, 1)
    inputs = [(record.value, record.timestamp_ms * 1000) for record in workload.records]
    del workload
    snapshot = in_memory_snapshot(processor_settings, keys)
    startup_s = full_pass_s()
    restored = ledger_from_snapshot(snapshot, processor_settings)
    del snapshot
    restored_s = full_pass_s()
    # as `streamledger process` does after its first restore
    first_freeze_s = timed_cpu(partial(freeze_restored_state, state_dropped=False))
    frozen_count = gc.get_freeze_count()
    after_freeze_s = full_pass_s()
    grown = PartitionLedger(1, ledger.LedgerState(wire_format=WIRE_FORMAT))
    for first in range(0, len(inputs), DECIDE_BATCH):
        for offset, (value, timestamp_us) in enumerate(inputs[first : first + DECIDE_BATCH], first):
            grown.decide(decode_command(value), timestamp_us, offset, value)
        grown.staged_outputs()
        grown.commit()
    grown_frozen_s = full_pass_s()
    # a rebalance's next restore: a partition added (nothing dropped), then one dropped too
    added_freeze_s = timed_cpu(partial(freeze_restored_state, state_dropped=False))
    full_again_s = full_pass_s()
    dropped_freeze_s = timed_cpu(partial(freeze_restored_state, state_dropped=True))
    gc.unfreeze()
    grown_unfrozen_s = full_pass_s()
    live = restored.live_idempotency_keys() + grown.live_idempotency_keys()
    print(f"live keys: {live:,} ({keys:,} restored, {len(inputs):,} commands decided since)")
    print(f"one full collection (CPU), the fastest of {PASSES}:")
    print(f"  start-up objects:                              {startup_s * 1e3:7.1f} ms")
    print(
        f"  + the restored partition ({keys:,} keys):     {restored_s * 1e3:7.1f} ms"
        f" ({(restored_s - startup_s) * 1e9 / keys:.1f} ms per million keys)"
    )
    print(
        f"  after freeze_restored_state ({first_freeze_s * 1e3:.1f} ms, {frozen_count:,}"
        f" objects frozen): {after_freeze_s * 1e3:.1f} ms"
    )
    print(
        f"  + {len(inputs):,} commands decided since, frozen: {grown_frozen_s * 1e3:7.1f} ms"
        f" ({(grown_frozen_s - after_freeze_s) * 1e6 / len(inputs):.2f} ms per 1,000 commands);"
        f" unfrozen: {grown_unfrozen_s * 1e3:.1f} ms"
    )
    print(
        f"freeze_restored_state on a rebalance: a partition added {added_freeze_s * 1e3:.1f} ms"
        f" (a full collection then: {full_again_s * 1e3:.1f} ms); one dropped too (unfreeze,"
        f" collect all, freeze) {dropped_freeze_s * 1e3:.1f} ms"
    )


def in_memory_snapshot(processor_settings: ProcessorSettings, keys: int) -> PartitionSnapshot:
    """What ``read_partition`` returns for a partition ``bench_restore`` filled with ``keys``."""
    outcomes: dict[bytes, bytes] = {}
    times: dict[bytes, bytes] = {}
    balances: dict[bytes, bytes] = {}
    transfers = int(keys * TRANSFERS_PER_KEY)
    for index in range(keys):
        key, value, _, header = bench_restore.sample_outcome(index)
        outcomes[key], times[key] = value, header
        if index < transfers:
            state_key_bytes, state_value = bench_restore.sample_transfer_state(index)
            balances[state_key_bytes] = state_value
    for tenant in range(bench_restore.TENANTS):
        head = TenantHead(tenant_id=f"tenant-{tenant:04d}", last_sequence=keys)
        balances[state_key(head)] = encode_state(head)
    topics = processor_settings.topics
    return PartitionSnapshot(
        0,
        {topics.balances: balances, topics.outcomes: outcomes},
        {topics.balances: {}, topics.outcomes: times},
        len(outcomes) + len(balances),
        0.0,
    )


def full_pass_s() -> float:
    """The CPU time of one full collection, the fastest of ``PASSES``."""
    return min(timed_cpu(gc.collect) for _ in range(PASSES))


def timed_cpu(function: Callable[[], object]) -> float:
    started = time.thread_time()
    function()
    return time.thread_time() - started


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="restored live keys")
    parser.add_argument("--commands", type=int, default=200_000, help="standard mix, per run")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="each arm once per round")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="no Kafka: what one full collection costs per restored key and per decided"
        " command, and a freeze on a rebalance",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
