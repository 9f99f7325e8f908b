"""The processor's CPU hot path without Kafka: decode → decide → encode, in commands/s.

    python -m bench.bench_core [--commands 50000] [--tenants 200] [--profile]

Measures CPU time (``time.process_time``, so other processes on the machine add little noise):

* the full per-command path the processor runs (``PartitionLedger``: decode a command record,
  ``step``, encode its events and stored outcome; per batch of ``--batch`` commands the changed
  state records and the commit) on the loadgen's standard mix, pre-encoded;
* the pure core alone (``step`` + ``commit`` per batch) on the same decoded commands;
* the same workload stage by stage, in µs per command: decode, validate (``first_violation``),
  ``command_fingerprint``, encode of the stored outcomes and of the batches' state records (each
  spread over all commands);
* µs per stage on typical records (Transfer command, TransferPosted event, Outcome,
  AccountState), against fastavro's bare ``schemaless_writer``/``schemaless_reader`` on the same
  Avro dicts as the floor the codec adds to.

Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable

from fastavro import schemaless_reader, schemaless_writer

import ledger
from processors.partition_ledger import WIRE_FORMAT, PartitionLedger
from producers.loadgen import LoadPlan, generate
from schemas import codec
from schemas.limits import first_violation
from schemas.model import Command, Event, Outcome, StateRecord

STAGE_REPEATS = 20_000


def main() -> None:
    arguments = parse_arguments()
    plan = LoadPlan(seed=7, tenants=arguments.tenants, commands=arguments.commands)
    commands = [generated.command for generated in generate(plan)]
    records = [(codec.encode_command(c), c.submitted_at_us // 1000 * 1000) for c in commands]
    print(f"commands: {len(records):,} ({arguments.tenants} tenants), batch {arguments.batch}")

    full_s = best_of(arguments.rounds, lambda: run_full(records, arguments.batch))
    decoded = [(codec.decode_command(data), stamp) for data, stamp in records]
    core_s = best_of(arguments.rounds, lambda: run_core(decoded, arguments.batch))
    print(f"full path (decode+decide+encode): {len(records) / full_s:10,.0f} commands/s")
    print(f"pure core (step + commit):        {len(records) / core_s:10,.0f} commands/s")
    print_workload_stages(records, decoded, arguments)
    print_stages(decoded)
    if arguments.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_full, records, arguments.batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    return parser.parse_args()


def best_of(rounds: int, run: Callable[[], object]) -> float:
    """The least CPU seconds of ``rounds`` runs (the one least disturbed by the machine)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def run_full(records: list[tuple[bytes, int]], batch: int) -> None:
    partition = PartitionLedger(0, ledger.LedgerState(wire_format=WIRE_FORMAT))
    for start in range(0, len(records), batch):
        for offset, (data, timestamp_us) in enumerate(records[start : start + batch], start):
            partition.decide(codec.decode_command(data), timestamp_us, offset)
        partition.staged_outputs()
        partition.commit()


def run_core(commands: list[tuple[Command, int]], batch: int) -> None:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    step = ledger.step
    for start in range(0, len(commands), batch):
        for command, timestamp_us in commands[start : start + batch]:
            step(state, command, timestamp_us)
        state.staged_records()
        state.commit()


def print_workload_stages(
    records: list[tuple[bytes, int]],
    decoded: list[tuple[Command, int]],
    arguments: argparse.Namespace,
) -> None:
    """µs per command of each stage of the full path, over the whole workload."""
    state, outcomes, states = (
        ledger.LedgerState(wire_format=WIRE_FORMAT),
        [],
        [],
    )
    for start in range(0, len(decoded), arguments.batch):
        for command, timestamp_us in decoded[start : start + arguments.batch]:
            stored = ledger.step(state, command, timestamp_us).stored_outcome
            if stored is not None:
                outcomes.append(stored)
        states.extend(state.staged_records())
        state.commit()
    commands = [command for command, _ in decoded]
    stages: list[tuple[str, Callable[[], object]]] = [
        ("full path", lambda: run_full(records, arguments.batch)),
        ("pure core", lambda: run_core(decoded, arguments.batch)),
        ("decode command", lambda: [codec.decode_command(data) for data, _ in records]),
        ("first_violation", lambda: [first_violation(command) for command in commands]),
        ("command_fingerprint", lambda: [ledger.command_fingerprint(c) for c in commands]),
        ("encode outcomes", lambda: [codec.encode_outcome(outcome) for outcome in outcomes]),
        ("encode states", lambda: [codec.encode_state(record) for record in states]),
    ]
    print(f"{'stage (µs/command, CPU)':<28}{'':>8}")
    for name, run in stages:
        print(f"{name:<28}{best_of(arguments.rounds, run) / len(records) * 1e6:8.2f}")


def microseconds(function: Callable[[], object], repeats: int = STAGE_REPEATS) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(repeats):
            function()
        best = min(best, time.process_time() - started)
    return best / repeats * 1e6


def typical_records(
    commands: list[tuple[Command, int]],
) -> tuple[Command, Event, Outcome, StateRecord]:
    """A Transfer, the TransferPosted it caused, its outcome and its debit account's state."""
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    found: tuple[Command, Event, Outcome, StateRecord] | None = None
    for command, timestamp_us in commands:
        decision = ledger.step(state, command, timestamp_us)
        events = [e for e in decision.events if type(e).__name__ == "TransferPosted"]
        if found is None and events and command.metadata == ():
            account = state.account(command.tenant_id, events[0].balances[0].account_id)
            assert account is not None
            found = (command, events[0], decision.outcome, account)
    assert found is not None
    return found


def bare(family: codec.RecordFamily, value: object) -> tuple[Callable[[], object], ...]:
    """fastavro alone on the same Avro dict: (write, read)."""
    branch = family.by_type[type(value)]
    record = codec.to_avro(value, branch.field_names)
    body = codec._encode(family, value)[len(branch.prefix) :]

    def write() -> bytes:
        buffer = io.BytesIO()
        schemaless_writer(buffer, branch.wire, record)
        return buffer.getvalue()

    def read() -> object:
        return schemaless_reader(io.BytesIO(body), branch.wire, None)

    return write, read


def print_stages(commands: list[tuple[Command, int]]) -> None:
    command, event, outcome, account = typical_records(commands)
    rows: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = []
    stages = (
        ("command", codec.COMMANDS, command, codec.encode_command, codec.decode_command),
        ("event", codec.EVENTS, event, codec.encode_event, codec.decode_event),
        ("outcome", codec.OUTCOMES, outcome, codec.encode_outcome, codec.decode_outcome),
        ("state", codec.STATES, account, codec.encode_state, codec.decode_state),
    )
    for name, family, value, encode, decode in stages:
        data = encode(value)  # type: ignore[operator]
        write, read = bare(family, value)
        rows.append((f"encode {name}", lambda e=encode, v=value: e(v), write))  # type: ignore[misc]
        rows.append((f"decode {name}", lambda d=decode, b=data: d(b), read))  # type: ignore[misc]
    rows.append(("event_canonical_bytes", lambda: codec.event_canonical_bytes(event), None))
    rows.append(("command_fingerprint", lambda: ledger.command_fingerprint(command), None))
    rows.append(("first_violation", lambda: first_violation(command), None))
    print(f"{'stage (µs, CPU)':<24}{'codec':>8}{'fastavro':>10}")
    for name, function, baseline in rows:
        floor = f"{microseconds(baseline):10.2f}" if baseline is not None else f"{'':>10}"
        print(f"{name:<24}{microseconds(function):8.2f}{floor}")


if __name__ == "__main__":
    main()
