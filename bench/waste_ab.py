"""A/B timings of decision 0147's three steps, each alone, alternating (A B A B ...).

    .venv/bin/python -m bench.waste_ab check [--commands 100000] [--rounds 3]
    .venv/bin/python -m bench.waste_ab grants [--rounds 6]
    .venv/bin/python -m bench.waste_ab fill [--divisor 1] [--rounds 2]

On the stack the settings point at (``STREAMLEDGER_*``; an own stack, see bench/README.md).

- ``check``: a standard mix of ``--commands`` through the processor once, then over that same
  stored output ``ledger_check.check`` with the codec's model values (A, before 0147) and with
  ``workloads.check_records`` (B): this process's CPU and wall per call; then the whole
  ``processor_suite.check_output`` (reads, fold, check) the same way.
- ``grants``: a fresh prefix of 4 partitions by ``topics.apply`` with its per-prefix grants (A)
  and by ``grants.apply_topics`` once the family is granted (B); topics deleted after each.
- ``fill``: the reports fill at ``1/--divisor`` of full (A, with its VACUUM ANALYZE) and the
  same rows restored from a data-only dump into a migrated database (B, ``cached_fill``'s way,
  with the same VACUUM ANALYZE); wall, and the database's size.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from pathlib import Path

from bench import bench_processor, grants, ledger_check, processor_suite, reports_suite, workloads
from bench.bench_processor import delete_topics
from infra import postgres_server, topics
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from schemas.codec import decode_event, decode_outcome
from schemas.topics import COMMANDS_TOPIC, EVENTS_TOPIC, OUTCOMES_TOPIC
from streamledger.settings import Settings, load_settings, replace

PARTITIONS = 4
SEED = 42
TENANTS = 200


def codec_check(
    expected: ledger_check.Expected,
    event_values: list[bytes | None],
    outcome_values: list[bytes | None],
) -> ledger_check.CheckResult:
    """``ledger_check.check`` as it was before decision 0147: the codec's model values."""
    evidence: list[str] = []
    outcomes = [decode_outcome(v) for v in outcome_values if v is not None]
    counts = Counter((o.tenant_id, o.idempotency_key) for o in outcomes)
    if any(count > 1 for count in counts.values()):
        evidence.append("outcomes written more than once")
    found_outcomes: dict[object, object] = {
        (o.tenant_id, o.idempotency_key): (
            o.status.value,
            None if o.reason is None else o.reason.value,
            o.event_sequences,
        )
        for o in outcomes
    }
    ledger_check._compare("outcome", expected.outcomes, found_outcomes, evidence)
    events = [decode_event(v) for v in event_values if v is not None]
    if any(count > 1 for count in Counter((e.tenant_id, e.sequence) for e in events).values()):
        evidence.append("events written more than once")
    found_events: dict[object, object] = {
        (e.tenant_id, e.sequence): (type(e).__name__, e.idempotency_key) for e in events
    }
    ledger_check._compare("event", expected.events, found_events, evidence)
    return ledger_check.CheckResult(not evidence, len(outcomes), len(events), evidence)


def ab_check(settings: Settings, commands: int, rounds: int) -> None:
    workload = workloads.standard(SEED, commands, TENANTS, PARTITIONS)
    scoped = processor_suite.fresh(settings, PARTITIONS)
    new_check = ledger_check.check
    arms = (("A codec", codec_check), ("B check_records", new_check))
    try:
        connection = client_config(scoped, ADMIN_PRINCIPAL)
        processor_suite.produce(connection, scoped.topic(COMMANDS_TOPIC), workload.records)
        bench_processor.run_processor(
            processor_suite.processor_settings_for(scoped),  # type: ignore[arg-type]
            len(workload.records),
            profile=False,
            timed_from=workload.timed_from,
        )
        group = f"{scoped.topic_prefix}streamledger-processor"
        records = ledger_check.read_input(
            connection, scoped.topic(COMMANDS_TOPIC), PARTITIONS, group
        )
        expected = ledger_check.expected_fold(records)
        events = ledger_check.read_values(connection, scoped.topic(EVENTS_TOPIC), PARTITIONS)
        outcomes = ledger_check.read_values(connection, scoped.topic(OUTCOMES_TOPIC), PARTITIONS)
        print(f"{len(workload.records)} records: {len(events)} events, {len(outcomes)} outcomes")
        for number in range(rounds):
            for name, check in arms:
                cpu, wall = time.process_time(), time.perf_counter()
                result = check(expected, events, outcomes)
                print(f"round {number} check() {name}: CPU {time.process_time() - cpu:.2f} s,"
                      f" wall {time.perf_counter() - wall:.2f} s, {result.summary()}",
                      flush=True)  # fmt: skip
        for number in range(rounds):
            for name, check in arms:
                ledger_check.check = check
                cpu, wall = time.process_time(), time.perf_counter()
                result = processor_suite.check_output(scoped, workload, PARTITIONS)
                print(f"round {number} check_output {name}: CPU {time.process_time() - cpu:.2f}"
                      f" s, wall {time.perf_counter() - wall:.2f} s, passed {result.passed}",
                      flush=True)  # fmt: skip
    finally:
        ledger_check.check = new_check
        delete_topics(scoped)


def ab_grants(settings: Settings, rounds: int) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    first = replace(settings, topic_prefix=grants.prefix("g"), partitions=1)
    grants.apply_topics(first)
    delete_topics(first)
    print(f"the family's grant and a first prefix: wall {time.perf_counter() - wall:.2f} s,"
          f" CPU {time.process_time() - cpu:.2f} s")  # fmt: skip
    for number in range(rounds):
        for arm in ("A per prefix", "B family"):
            per_prefix = arm.startswith("A")
            name = f"g{uuid.uuid4().hex[:8]}." if per_prefix else grants.prefix("g")
            scoped = replace(settings, topic_prefix=name, partitions=PARTITIONS)
            cpu, wall = time.process_time(), time.perf_counter()
            if per_prefix:
                topics.apply(scoped)
            else:
                grants.apply_topics(scoped)
            print(f"round {number} {arm}: wall {time.perf_counter() - wall:.2f} s,"
                  f" CPU {time.process_time() - cpu:.3f} s", flush=True)  # fmt: skip
            delete_topics(scoped)


def ab_fill(stack: Settings, divisor: int, rounds: int, directory: Path) -> None:
    full = reports_suite.SIZES["full"]
    size = reports_suite.ReportsSize(
        full.statement_entries // divisor, full.trial_accounts // divisor,
        full.search_transfers // divisor, 0, 0,
    )  # fmt: skip

    def quiet(_text: str) -> None:
        pass

    for number in range(rounds):
        for arm in ("A fill", "B restore"):
            database, settings = reports_suite.scratch_database(stack)
            try:
                started = time.perf_counter()
                if arm.startswith("A"):
                    reports_suite.fill(settings, size, quiet)
                else:
                    reports_suite.cached_fill(
                        stack, settings, database, size, say=quiet, directory=directory
                    )
                seconds = time.perf_counter() - started
                print(f"round {number} {arm} (with VACUUM ANALYZE): {seconds:.1f} s", flush=True)
            finally:
                postgres_server.drop_scratch_database(stack, database)
            if number == 0 and arm.startswith("A"):
                # store the dump once, outside the timed arms
                database, settings = reports_suite.scratch_database(stack)
                try:
                    started = time.perf_counter()
                    stored = reports_suite.cached_fill(
                        stack, settings, database, size, say=quiet, directory=directory
                    )
                    print(f"{'restored' if stored else 'filled and dumped'} once:"
                          f" {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
                finally:
                    postgres_server.drop_scratch_database(stack, database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("step", choices=("check", "grants", "fill"))
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--divisor", type=int, default=1, help="fill: 1/N of full")
    parser.add_argument(
        "--directory", type=Path, default=reports_suite.CACHE_DIRECTORY, help="fill: the dumps"
    )
    arguments = parser.parse_args()
    settings = load_settings()
    if arguments.step == "check":
        ab_check(settings, arguments.commands, arguments.rounds)
    elif arguments.step == "grants":
        ab_grants(settings, arguments.rounds)
    else:
        ab_fill(settings, arguments.divisor, arguments.rounds, arguments.directory)


if __name__ == "__main__":
    main()
