"""The processor loop with signature verification on vs off, without Kafka: for instruction
counts that do not move with the machine's load (issue 21 §2, decision 0146).

    python -m bench.signature_instructions prepare off|on FILE [--commands 10000] [--tenants 50]
    valgrind --tool=callgrind python -m bench.signature_instructions run off|on FILE [--load-only]

``prepare`` writes the signature suite's records (the loadgen's commands, 10 % duplicates, 3
partitions; *on*: a GRANT per tenant first, each command signed with its tenant's key) to FILE,
so that building and signing them is not counted. ``run`` loads them into a ``MemoryBroker``
and runs the real ``Processor`` over ``MemoryTransport`` until it is idle (decode, routing,
``verify``, decide, the outputs produced into memory, a commit per batch), under the
processor's collector thresholds, and prints its CPU per record and what it wrote.
``--load-only`` stops after loading: subtract its count from ``run``'s, divide by the records.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import threading
import time
from pathlib import Path

from bench.signature_suite import CommandRecord, command_records
from processors.loop import Processor, tune_garbage_collection
from processors.memory_transport import MemoryBroker, MemoryTransport
from processors.metrics import ProcessorMetrics
from processors.processor_settings import ProcessorSettings, build_processor_settings
from schemas.signing_keys import MASTER_SECRET_BYTES
from schemas.topics import LedgerTopicNames
from streamledger.settings import Settings

PARTITIONS = 3
TOPICS = LedgerTopicNames.with_prefix("instructions.")
MASTER = bytes(MASTER_SECRET_BYTES)  # a fixed master secret: nothing here leaves the process
IDLE_TAKES = 2  # empty batches in a row before the loop stops
Record = CommandRecord


def records(commands: int, tenants: int, *, signed: bool) -> list[Record]:
    """The signature suite's records (``bench.signature_suite.command_records``), in memory."""
    return list(command_records(MASTER, PARTITIONS, commands, tenants, signed=signed))


def processor_settings(*, signed: bool) -> ProcessorSettings:
    shared = Settings(home=Path("/nonexistent"), topic_prefix="instructions.", partitions=3)
    built = build_processor_settings(
        shared,
        instance_id="instructions",
        metrics_port=0,
        command_signatures="enrolled" if signed else "off",
    )
    return dataclasses.replace(built, signing_master=MASTER)


def run(path: Path, *, signed: bool, load_only: bool) -> None:
    with path.open("rb") as file:
        loaded: list[Record] = pickle.load(file)  # a file that prepare wrote
    settings = processor_settings(signed=signed)
    broker = MemoryBroker(TOPICS.all(), PARTITIONS)
    for partition, key, value, headers, timestamp_ms in loaded:
        broker.append(
            TOPICS.commands, partition, key, value, headers=headers, timestamp_ms=timestamp_ms
        )
    if load_only:
        return
    stop = threading.Event()
    idle = [0]

    def on_idle() -> None:
        idle[0] += 1
        if idle[0] >= IDLE_TAKES:
            stop.set()

    tune_garbage_collection()  # as `streamledger process` does
    processor = Processor(
        settings, ProcessorMetrics(), MemoryTransport(broker, settings, on_idle=on_idle)
    )
    processor.check_topics()
    started = time.process_time()
    processor.run(stop)
    used_s = time.process_time() - started
    written = {
        topic: len(broker.records(topic))
        for topic in (TOPICS.events, TOPICS.outcomes, TOPICS.replies, TOPICS.balances)
    }
    print(f"{'on' if signed else 'off'}: {len(loaded)} records, {1e6 * used_s / len(loaded):.1f}"
          f" us CPU per record; written {written}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("prepare", "run"))
    parser.add_argument("arm", choices=("off", "on"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--load-only", action="store_true")
    arguments = parser.parse_args()
    signed = arguments.arm == "on"
    if arguments.step == "prepare":
        prepared = records(arguments.commands, arguments.tenants, signed=signed)
        with arguments.file.open("wb") as file:
            pickle.dump(prepared, file)
        return
    run(arguments.file, signed=signed, load_only=arguments.load_only)


if __name__ == "__main__":
    main()
