"""Processor commands/s with signature verification on vs off, in the same run (issue 21 §2).

    python -m bench.signature_suite [--commands 100000] [--tenants 200] [--repetitions 2]
        [--in-process]

The same loadgen commands (standard mix, 10 % duplicates) are pre-filled twice, on two fresh
topic sets: *off* unsigned, processed with ``--command-signatures off``; *on* after one
operator-signed GRANT per tenant, each command signed with its tenant's key (the SDK's
headers), processed with the default ``enrolled`` mode, so every command is verified. After one
unmeasured warm-up round (both arms, ``WARM_UP_COMMANDS`` each), each repetition runs both arms,
which goes first alternating, each arm's processor a ``streamledger process`` child of its own
(as the product runs it; decision 0140), measured by the group's committed offsets
(``bench.processor_suite.wait_for_group``); the check is that both runs stored the same number
of outcomes (no command of the signed run was refused).
Reported per repetition and as medians: commands/s (wall clock, from the first committed
transaction to the last) and commands per CPU-second of the processor's process over the same
window (less sensitive to a shared machine's load), plus ``PartitionLedger.decide`` alone
without Kafka (CPU), each arm in a fresh Python process too. ``--in-process``: the processor
and decide alone in this process, as before decision 0140 (``bench.bench_processor``'s
``run_processor``; the CPU figure is then this whole process's). Target (decision 0086):
on >= 0.9 x off. Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import NamedTuple

from confluent_kafka import Consumer, Producer

import ledger
from bench import grants
from bench.bench_processor import RUN_TIMEOUT_S, delete_topics, run_processor
from bench.ledger_check import read_values
from bench.processor_suite import (
    REPO_ROOT,
    committed_offsets,
    partition_ends,
    spawn_processor,
    stop_process,
    wait_for_group,
)
from bench.results import BenchRun
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.command_signatures import KeyRegistry, SignatureMode
from processors.loop import tune_garbage_collection
from processors.partition_ledger import WIRE_FORMAT, PartitionLedger
from processors.processor_settings import ProcessorSettings, build_processor_settings
from processors.signing_master import ensure_master
from processors.transport import Headers
from producers.loadgen import LoadPlan, generate
from schemas.codec import decode_command, encode_command
from schemas.keys import command_key, partition_for
from schemas.signing_keys import (
    MASTER_SECRET_BYTES,
    OPERATOR_KEY_ID,
    SigningKeyAction,
    SigningKeyCommand,
    encode_signing_key_command,
    operator_secret,
    signature_headers,
    tenant_key_secret,
)
from schemas.topics import COMMANDS_TOPIC, OUTCOMES_TOPIC
from streamledger.settings import Settings, load_settings, replace

KEY_ID = "bench:v1"
DECIDE_BATCH = 5_000  # the processor's default batch: staged outputs and commit this often
TARGET_RATIO = 0.9
SETTLE_TIMEOUT_S = 60.0
# commands per arm of the unmeasured round before the timed repetitions (``warm_up``)
WARM_UP_COMMANDS = 2_000


# (partition, key, value, headers, timestamp ms) of one commands record
CommandRecord = tuple[int, bytes, bytes, Headers | None, int]


def command_records(
    master: bytes, partitions: int, commands: int, tenants: int, *, signed: bool
) -> Iterator[CommandRecord]:
    """The loadgen's commands as records (signed: after a GRANT per tenant, with signature
    headers), each with its submission time; the suite's and ``bench.signature_instructions``'s."""
    plan = LoadPlan(
        seed=42,
        tenants=tenants,
        commands=commands,
        start_us=int(time.time() * 1_000_000),  # now: ticks (the broker's clock) expire nothing
        duplicate_share=0.10,
    )
    secrets: dict[str, bytes] = {}
    for generated in generate(plan):
        tenant_id = generated.command.tenant_id
        key = command_key(tenant_id)
        partition = partition_for(key, partitions)
        timestamp_ms = generated.command.submitted_at_us // 1000
        if signed and tenant_id not in secrets:
            secrets[tenant_id] = tenant_key_secret(master, tenant_id, KEY_ID)
            grant = encode_signing_key_command(
                SigningKeyCommand(
                    tenant_id=tenant_id,
                    idempotency_key=f"grant-{KEY_ID}",
                    action=SigningKeyAction.GRANT,
                    key_id=KEY_ID,
                )
            )
            granted_by: Headers = list(
                signature_headers(operator_secret(master), OPERATOR_KEY_ID, grant)
            )
            yield partition, key, grant, granted_by, timestamp_ms
        value = encode_command(generated.command)
        signed_by: Headers | None = (
            list(signature_headers(secrets[tenant_id], KEY_ID, value)) if signed else None
        )
        yield partition, key, value, signed_by, timestamp_ms


def prefill(settings: Settings, commands: int, tenants: int, *, signed: bool) -> int:
    """The loadgen's commands (signed: after a GRANT per tenant, with signature headers)."""
    master = ensure_master(settings.home)
    producer = Producer({**client_config(settings, ADMIN_PRINCIPAL), "linger.ms": 20})
    topic = settings.topic(COMMANDS_TOPIC)
    count = 0
    for partition, key, value, headers, timestamp_ms in command_records(
        master, settings.partitions, commands, tenants, signed=signed
    ):
        producer.produce(topic, value, key, partition, timestamp=timestamp_ms, headers=headers)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(RUN_TIMEOUT_S) == 0
    return count


def stored_outcomes(settings: Settings) -> int:
    """Committed records on ledger.outcomes: what the run decided and stored. Counted by reading
    them (read_committed), not from the watermarks: a transaction's commit marker takes an
    offset too, and the two runs need not commit the same number of transactions."""
    topic = settings.topic(OUTCOMES_TOPIC)
    connection = client_config(settings, ADMIN_PRINCIPAL)
    return sum(value is not None for value in read_values(connection, topic, settings.partitions))


def end_offsets(settings: Settings, name: str, partitions: int, level: str) -> list[int]:
    """Each partition's end as a reader of isolation ``level`` sees it (read_committed: the
    last stable offset; librdkafka's watermark query honours the level since v1.7.1)."""
    reader = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"bench-ends-{uuid.uuid4().hex}",
            "isolation.level": level,
        }
    )
    try:
        return partition_ends(reader, settings.topic(name), partitions)
    finally:
        reader.close()


def wait_until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, f"not in {SETTLE_TIMEOUT_S} s: {what}"
        time.sleep(0.05)


def settle(settings: Settings, partitions: int, child: subprocess.Popen[bytes]) -> None:
    """Before counting the stored outcomes (``wait_for_group`` has seen every commands
    partition's prefilled end committed): the child is stopped, then no transaction on
    ``ledger.outcomes`` is open or has its marker still to come (a commit's markers reach the
    offsets and each outcomes partition one by one)."""
    stop_process(child)
    wait_until(
        f"{settings.topic(OUTCOMES_TOPIC)} stable",
        lambda: (
            end_offsets(settings, OUTCOMES_TOPIC, partitions, "read_committed")
            == end_offsets(settings, OUTCOMES_TOPIC, partitions, "read_uncommitted")
        ),
    )


class Run(NamedTuple):
    rate: float  # commands/s, wall clock
    cpu_rate: float  # commands per CPU-second of the processor's process
    stored: int  # outcomes stored


def wait_committed(
    settings: Settings, group_id: str, partitions: int, child: subprocess.Popen[bytes]
) -> None:
    """Until the group's committed offsets reach every commands partition's end (untimed)."""
    consumer = Consumer({**client_config(settings, ADMIN_PRINCIPAL), "group.id": group_id})
    topic = settings.topic(COMMANDS_TOPIC)
    try:
        ends = partition_ends(consumer, topic, partitions)

        def covered() -> bool:
            assert child.poll() is None, f"process {child.pid} exited before the end"
            offsets = committed_offsets(consumer, topic, partitions)
            return all(offset >= end for offset, end in zip(offsets, ends, strict=True))

        wait_until(f"group {group_id} at the end of {topic}", covered)
    finally:
        consumer.close()


def one_run(
    base: Settings,
    arguments: argparse.Namespace,
    *,
    signed: bool,
    in_process: bool = False,
    timed: bool = True,
) -> Run:
    """Commands/s of the processor and the outcomes it stored, on fresh topics: the processor
    a ``streamledger process`` child (``in_process``: in this process, as before 0140).
    ``timed=False`` (the warm-up): the child only runs to the end, rates are 0."""
    settings = replace(base, topic_prefix=grants.prefix("bsig"), partitions=arguments.partitions)
    grants.apply_topics(settings)
    mode = "enrolled" if signed else "off"
    processor_settings: ProcessorSettings = build_processor_settings(
        settings, instance_id="bench-signatures", metrics_port=0, command_signatures=mode
    )
    child: subprocess.Popen[bytes] | None = None
    try:
        total = prefill(settings, arguments.commands, arguments.tenants, signed=signed)
        if in_process:
            cpu_started = time.process_time()
            rate = run_processor(processor_settings, total, profile=False)
            cpu_s = time.process_time() - cpu_started  # this whole process, librdkafka's too
            return Run(rate, total / cpu_s, stored_outcomes(settings))
        # the records are all there when it starts: its first consume is a full batch, and the
        # timing starts at its first committed transaction (start-up and group join behind it)
        child = spawn_processor(
            settings, "bench-signatures", settings.home / "logs", [f"--command-signatures={mode}"]
        )
        if not timed:
            wait_committed(settings, processor_settings.group_id, arguments.partitions, child)
            settle(settings, arguments.partitions, child)
            return Run(0.0, 0.0, stored_outcomes(settings))
        cpu_per_command: dict[int, float] = {}
        rate, _ = wait_for_group(
            settings,
            processor_settings.group_id,
            total,
            arguments.partitions,
            [child.pid],
            processes=[child],
            cpu_per_command=cpu_per_command,
        )
        settle(settings, arguments.partitions, child)
        return Run(rate, 1 / cpu_per_command[child.pid], stored_outcomes(settings))
    finally:
        if child is not None:
            stop_process(child)
        delete_topics(settings)


def decide_only(commands: int, tenants: int, *, signed: bool) -> float:
    """Commands per CPU-second of ``PartitionLedger.decide`` alone (no Kafka): the loadgen's
    commands of one partition's worth, decoded as the loop does, verified or not."""
    master = bytes(MASTER_SECRET_BYTES)
    mode = SignatureMode.ENROLLED if signed else SignatureMode.OFF
    book = PartitionLedger(
        0, ledger.LedgerState(wire_format=WIRE_FORMAT), signatures=KeyRegistry(master, mode)
    )
    operator = operator_secret(master)
    plan = LoadPlan(seed=42, tenants=tenants, commands=commands, start_us=1, duplicate_share=0.1)
    records = []
    for generated in generate(plan):
        value = encode_command(generated.command)
        tenant_id = generated.command.tenant_id
        secret = tenant_key_secret(master, tenant_id, KEY_ID)
        headers = signature_headers(secret, KEY_ID, value) if signed else None
        records.append((value, headers, generated.command.submitted_at_us))
    for tenant_id in {decode_command(value).tenant_id for value, _, _ in records}:
        grant = SigningKeyCommand(
            tenant_id=tenant_id,
            idempotency_key="grant",
            action=SigningKeyAction.GRANT,
            key_id=KEY_ID,
        )
        value = encode_signing_key_command(grant)
        book.decide_signing_key(
            grant, value, signature_headers(operator, OPERATOR_KEY_ID, value), 0, 0
        )
    book.staged_outputs()
    book.commit()
    # Both arms under the processor's collector settings (run_processor sets them process-wide,
    # so otherwise the first repetition's arm ran under CPython's defaults), and the prepared
    # records frozen: a processor holds a batch, not the whole workload, and the collector's
    # passes over the signed records' header lists were most of "on"'s extra (decision 0137).
    tune_garbage_collection()
    gc.collect()
    gc.freeze()
    try:
        started = time.process_time()
        for offset, (value, headers, timestamp_us) in enumerate(records):
            book.decide(decode_command(value), timestamp_us, offset, value, headers)
            if offset % DECIDE_BATCH == DECIDE_BATCH - 1:
                book.staged_outputs()
                book.commit()
        return len(records) / (time.process_time() - started)
    finally:
        gc.unfreeze()


def decide_alone(commands: int, tenants: int, *, signed: bool, in_process: bool = False) -> float:
    """``decide_only`` in a fresh Python process of its own (``in_process``: in this one)."""
    if in_process:
        return decide_only(commands, tenants, signed=signed)
    completed = subprocess.run(
        [sys.executable, "-m", "bench.signature_suite", "--decide-alone", "on" if signed else "off",
         f"--commands={commands}", f"--tenants={tenants}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO_ROOT,
        timeout=RUN_TIMEOUT_S, check=True,
    )  # fmt: skip
    return float(completed.stdout.split()[-1])


def warm_up(base: Settings, arguments: argparse.Namespace) -> None:
    """One unmeasured round before the timed repetitions: both arms, ``WARM_UP_COMMANDS``
    each. Otherwise the first timed arm after a broker start (or after an earlier suite's
    topic deletions) pays the broker's warm-up: the transaction coordinator's and the offsets
    topic's partitions loading, the JVM compiling the request paths (decision 0146). A check
    failure here raises: nothing is timed yet."""
    small = argparse.Namespace(**{**vars(arguments), "commands": WARM_UP_COMMANDS})
    stored = [
        one_run(base, small, signed=signed, in_process=arguments.in_process, timed=False).stored
        for signed in (False, True)
    ]
    assert stored[0] == stored[1], f"warm-up: the signed run stored {stored[1]}, not {stored[0]}"


class Repetition(NamedTuple):
    off: Run
    on: Run
    decide_off: float  # commands per CPU-second of decide alone
    decide_on: float


def repetition(base: Settings, arguments: argparse.Namespace, index: int) -> Repetition:
    """Both arms, off first in even repetitions and on first in odd ones (as the monitors suite
    does: the second run of a pair follows the first's topic deletion on the same broker), then
    decide alone, in the same order."""
    in_process = arguments.in_process
    runs: dict[bool, Run] = {}
    decided: dict[bool, float] = {}
    order = (False, True) if index % 2 == 0 else (True, False)
    for signed in order:
        runs[signed] = one_run(base, arguments, signed=signed, in_process=in_process)
    for signed in order:
        decided[signed] = decide_alone(
            arguments.commands, arguments.tenants, signed=signed, in_process=in_process
        )
    return Repetition(runs[False], runs[True], decided[False], decided[True])


def run_signatures(
    run: BenchRun, base: Settings, *, commands: int, tenants: int, repetitions: int
) -> None:
    """``make bench``'s part: the warm-up round, then ``repetitions`` x ``repetition`` (each
    arm's processor and decide alone in a process of its own), into ``run``'s figures (group
    ``signatures``), with the ratios of wall-clock and processor-CPU commands/s and of decide
    alone."""
    arguments = argparse.Namespace(
        commands=commands, tenants=tenants, partitions=3, in_process=False
    )
    warm_up(base, arguments)
    for index in range(repetitions):
        off, on, decide_off, decide_on = repetition(base, arguments, index)
        if on.stored != off.stored:
            run.findings.append(
                f"signatures: the signed run stored {on.stored} outcomes, the unsigned"
                f" {off.stored}: a signed command was refused"
            )
        run.add("signatures", "processor, verification off", "commands/s", off.rate)
        run.add("signatures", "processor, verification on", "commands/s", on.rate)
        run.add("signatures", "on / off (wall clock)", "x", on.rate / off.rate)
        run.add("signatures", "on / off (processor CPU)", "x", on.cpu_rate / off.cpu_rate)
        run.add("signatures", "on / off (decide alone, CPU)", "x", decide_on / decide_off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the processor and decide alone in this process (as before decision 0140)",
    )
    # decide_alone's child: print decide_only's commands per CPU-second and stop
    parser.add_argument("--decide-alone", choices=("on", "off"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.decide_alone is not None:
        signed = arguments.decide_alone == "on"
        print(f"{decide_only(arguments.commands, arguments.tenants, signed=signed):.1f}")
        return
    base = load_settings()
    off_runs: list[Run] = []
    on_runs: list[Run] = []
    off_decide: list[float] = []
    on_decide: list[float] = []
    where = "this process" if arguments.in_process else "a process of its own per arm"
    warm_up(base, arguments)
    for index in range(arguments.repetitions):
        off, on, decide_off, decide_on = repetition(base, arguments, index)
        # both runs store the same outcomes: no signed command was refused
        check = "ok" if on.stored == off.stored else f"FAILED ({on.stored} vs {off.stored})"
        first = "off" if index % 2 == 0 else "on"
        print(
            f"repetition {index + 1} ({first} first): off {off.rate:,.0f}/s"
            f" ({off.cpu_rate:,.0f}/CPU-s), on {on.rate:,.0f}/s ({on.cpu_rate:,.0f}/CPU-s),"
            f" ratio {on.rate / off.rate:.3f} (CPU {on.cpu_rate / off.cpu_rate:.3f}); decide"
            f" only: off {decide_off:,.0f}, on {decide_on:,.0f}/CPU-s"
            f" ({decide_on / decide_off:.3f}); check {check}",
            flush=True,
        )
        off_runs.append(off)
        on_runs.append(on)
        off_decide.append(decide_off)
        on_decide.append(decide_on)
    print(f"commands:          {arguments.commands} ({arguments.tenants} tenants), in {where}")
    for label, pick in (("commands/s", _wall), ("commands/CPU-s", _cpu)):
        off_rate = statistics.median(pick(run) for run in off_runs)
        on_rate = statistics.median(pick(run) for run in on_runs)
        ratios = sorted(pick(on) / pick(off) for off, on in zip(off_runs, on_runs, strict=True))
        verdict = "met" if on_rate / off_rate >= TARGET_RATIO else "NOT met"
        print(
            f"processor {label:15} off {off_rate:,.0f}, on {on_rate:,.0f}: ratio"
            f" {on_rate / off_rate:.3f} (target >= {TARGET_RATIO}: {verdict};"
            f" median of {len(off_runs)}; per repetition {ratios[0]:.3f} .. {ratios[-1]:.3f})"
        )
    off_rate, on_rate = statistics.median(off_decide), statistics.median(on_decide)
    print(
        f"decide only (no Kafka) off {off_rate:,.0f}, on {on_rate:,.0f} commands/CPU-s: ratio"
        f" {on_rate / off_rate:.3f}, {1e6 / on_rate - 1e6 / off_rate:.1f} us per command"
    )


def _wall(run: Run) -> float:
    return run.rate


def _cpu(run: Run) -> float:
    return run.cpu_rate


if __name__ == "__main__":
    main()
