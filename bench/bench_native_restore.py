"""A restore's read through librdkafka's C API against the client's, alternating (decision 0133).

    python -m bench.bench_native_restore [--keys 100000] [--partitions 1] [--rounds 4]
                                         [--native-first]

A measurement tool, not the processor's reader: ``bench/native_restore_reader.c`` (built on
demand with ``$CC``, else ``cc``, into ``build/native_restore_reader/`` against Debian's
``librdkafka-dev`` headers, ``apt-get install librdkafka-dev``, and linked to the librdkafka that
confluent-kafka's wheel bundles; nothing in ``make setup`` or ``make test`` builds or imports it)
reads the assigned partitions and folds each record into the snapshot's dicts in C: no
``Message`` object, no accessor call.

1. fills ``--partitions`` partitions with ``--keys`` outcomes and 0.81 posted transfers a key
   (``bench.bench_restore.fill``, as the processor writes them);
2. restores them ``--rounds`` times each way in one process, alternating A (the processor's
   ``read_partitions``: confluent-kafka's ``consume`` and the compiled ``keep_latest``) and B
   (the same listing, passes and deadline, the read and fold in C), both readers made with the
   same configuration (``restore_consumer``'s, with the stack's SASL/SCRAM settings) and
   connected before the clock starts, each snapshot rebuilt (``ledger_from_snapshot``) as the
   loop does;
3. prints per round and as medians, per million keys: the read's wall, the Python thread's CPU
   (``time.thread_time``, split for B into ``rd_kafka_consume_batch_queue``, the fold and
   ``rd_kafka_message_destroy``) and the process's CPU (``time.process_time``, with
   librdkafka's threads), the rebuild's CPU, the restore's wall and CPU. The first round's
   snapshots of both ways are kept and compared (values, header values, records read), so
   round 1 of each way fills fresh memory, as a processor's first restore does; later rounds
   reuse what the previous round freed. ``--native-first`` starts with B.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import confluent_kafka

from bench.bench_processor import delete_topics
from bench.bench_restore import fill, restore_bench_settings
from processors.loop import tune_garbage_collection
from processors.partition_ledger import OUTCOME_TIMES_HEADER, ledger_from_snapshot
from processors.processor_settings import ProcessorSettings
from processors.restore import (
    PartitionSnapshot,
    _passes,
    admin_for,
    read_partitions,
    restore_consumer,
    restore_consumer_config,
    stable_ends,
)

KEYS_PER_MILLION = 1_000_000
SOURCE = Path(__file__).resolve().parent / "native_restore_reader.c"
BUILD_DIRECTORY = Path(__file__).resolve().parent.parent / "build" / "native_restore_reader"
BUILD_TIMEOUT_S = 120
RDKAFKA_HEADER = Path("/usr/include/librdkafka/rdkafka.h")  # Debian's librdkafka-dev


def native_module() -> ModuleType:
    """``native_restore_reader.c`` compiled (again when the source is newer) and imported."""
    libraries = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    (library,) = glob.glob(str(libraries / "librdkafka-*.so*"))
    target = BUILD_DIRECTORY / ("native_restore_reader" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not target.exists() or target.stat().st_mtime < SOURCE.stat().st_mtime:
        if not RDKAFKA_HEADER.exists():
            raise SystemExit(f"{RDKAFKA_HEADER} is missing: apt-get install librdkafka-dev")
        BUILD_DIRECTORY.mkdir(parents=True, exist_ok=True)
        command = [
            os.environ.get("CC", "cc"),
            "-O2",
            "-shared",
            "-fPIC",
            f"-I{sysconfig.get_paths()['include']}",
            "-o",
            str(target),
            str(SOURCE),
            f"-L{libraries}",
            f"-l:{Path(library).name}",
            f"-Wl,-rpath,{libraries}",
        ]
        subprocess.run(command, check=True, timeout=BUILD_TIMEOUT_S)
    spec = importlib.util.spec_from_file_location("native_restore_reader", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["native_restore_reader"] = module
    spec.loader.exec_module(module)
    return module


def native_read_partitions(
    reader: Any,
    admin: Any,
    *,
    topics: Sequence[str],
    partitions: Sequence[int],
    timeout_s: float,
    header_name: str | None,
    known_topics: set[str],
) -> Iterator[PartitionSnapshot]:
    """``processors.restore.read_partitions`` with the read and fold in C: the same listing,
    passes, deadline per pass and snapshots."""
    started = time.monotonic()
    wanted = [
        confluent_kafka.TopicPartition(topic, partition)
        for partition in partitions
        for topic in topics
    ]
    ends = stable_ends(admin, wanted, started + timeout_s)
    header = header_name.encode() if header_name is not None else None
    for group in _passes(partitions, topics, ends):
        named = [(topic, partition) for partition in group for topic in topics]
        values: dict[tuple[str, int], dict[bytes, bytes]] = {tp: {} for tp in named}
        header_values: dict[tuple[str, int], dict[bytes, bytes]] = {tp: {} for tp in named}
        records_read = dict.fromkeys(named, 0)
        to_read = [tp for tp in named if ends[tp][1] > ends[tp][0]]
        if to_read:
            for topic in dict.fromkeys(tp[0] for tp in to_read):
                if topic not in known_topics and reader.learn(topic, 5.0):
                    known_topics.add(topic)
            counts = [0] * len(to_read)
            reader.read(
                [(topic, partition, *ends[topic, partition]) for topic, partition in to_read],
                [values[tp] for tp in to_read],
                [header_values[tp] for tp in to_read],
                counts,
                header,
                max(0.0, started + timeout_s - time.monotonic()),
            )
            records_read.update(zip(to_read, counts, strict=True))
        duration_s = time.monotonic() - started
        for partition in group:
            yield PartitionSnapshot(
                partition,
                {topic: values[topic, partition] for topic in topics},
                {topic: header_values[topic, partition] for topic in topics},
                sum(records_read[topic, partition] for topic in topics),
                duration_s,
            )
        started = time.monotonic()


def one_restore(
    way: str, reader: Any, admin: Any, processor_settings: ProcessorSettings, partitions: int
) -> tuple[dict[str, float], list[PartitionSnapshot]]:
    """One restore of every partition (read, then rebuild each snapshot as it comes)."""
    read = native_read_partitions if way == "native" else read_partitions
    snapshots: list[PartitionSnapshot] = []
    rebuild_wall = rebuild_cpu = 0.0
    wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    for snapshot in read(
        reader,
        admin,
        topics=(processor_settings.topics.balances, processor_settings.topics.outcomes),
        partitions=range(partitions),
        timeout_s=processor_settings.restore_timeout_s,
        header_name=OUTCOME_TIMES_HEADER,
        known_topics=set(),
    ):
        rebuild_started, rebuild_cpu_started = time.perf_counter(), time.process_time()
        ledger_from_snapshot(snapshot, processor_settings)
        rebuild_wall += time.perf_counter() - rebuild_started
        rebuild_cpu += time.process_time() - rebuild_cpu_started
        snapshots.append(snapshot)
    wall = time.perf_counter() - wall
    thread = time.thread_time() - thread
    process = time.process_time() - process
    split = {}
    if way == "native":  # where the C read's thread CPU went (native_restore_reader.timings)
        consume, fold, destroy = sys.modules["native_restore_reader"].timings()
        split = {"  consume_batch": consume, "  fold": fold, "  message_destroy": destroy}
    return {
        "read wall": wall - rebuild_wall,
        "read thread CPU": thread - rebuild_cpu,
        **split,
        "read process CPU": process - rebuild_cpu,
        "rebuild CPU": rebuild_cpu,
        "restore wall": wall,
        "restore CPU": process,
    }, snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help="restores each way, alternating")
    parser.add_argument(
        "--native-first",
        action="store_true",
        help="start with the C read (round 1 of each way is a fresh process's first restore)",
    )
    arguments = parser.parse_args()
    native = native_module()
    tune_garbage_collection()
    settings, processor_settings = restore_bench_settings(
        "benchn", arguments.partitions, "bench-native-restore"
    )
    figures: dict[str, dict[str, list[float]]] = {"client": {}, "native": {}}
    try:
        fill(
            settings,
            processor_settings.topics,
            arguments.keys,
            5_000,
            with_header=True,
            transfers=int(arguments.keys * 0.81),
            partitions=arguments.partitions,
        )
        admin = admin_for(processor_settings)
        admin.list_topics(processor_settings.topics.outcomes, 30)
        readers = {
            "client": restore_consumer(processor_settings),
            "native": native.Reader(restore_consumer_config(processor_settings)),
        }
        readers["client"].list_topics(processor_settings.topics.balances, 30)
        readers["native"].learn(processor_settings.topics.balances, 30.0)
        first: dict[str, list[PartitionSnapshot]] = {}
        per_million = KEYS_PER_MILLION / arguments.keys
        for round_number in range(arguments.rounds):
            ways = ("client", "native") if round_number % 2 == 0 else ("native", "client")
            if arguments.native_first:
                ways = ways[::-1]
            for way in ways:
                measured, snapshots = one_restore(
                    way, readers[way], admin, processor_settings, arguments.partitions
                )
                first.setdefault(way, snapshots)
                for name, seconds in measured.items():
                    figures[way].setdefault(name, []).append(seconds * per_million)
                print(
                    f"round {round_number + 1} {way:6}: "
                    + ", ".join(f"{n} {s * per_million:.2f}" for n, s in measured.items())
                    + f" s/M (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
            if round_number == 0:
                check_equal(first["client"], first["native"])
        readers["client"].close()
        del readers
    finally:
        delete_topics(settings)
    print(f"\nmedians over {arguments.rounds} rounds each, s per million keys [min … max]")
    for name in figures["native"]:
        client = _median(figures["client"][name]) if name in figures["client"] else "-"
        print(f"  {name:18} client {client}   native {_median(figures['native'][name])}")


def check_equal(client: list[PartitionSnapshot], native: list[PartitionSnapshot]) -> None:
    assert len(client) == len(native)
    for a, b in zip(client, native, strict=True):
        assert a.partition == b.partition
        assert a.records == b.records, "values differ"
        assert a.header_values == b.header_values, "header values differ"
        assert a.records_read == b.records_read, (a.records_read, b.records_read)
    print("snapshots equal: values, header values and records read", flush=True)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f} … {max(values):.2f}]"


if __name__ == "__main__":
    main()
