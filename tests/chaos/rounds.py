"""``make chaos``: N seeded rounds of the whole pipeline under faults, on a stack of its own.

Not part of CI (``make test`` runs the CI-sized ``tests/chaos/test_chaos.py``). Per round, on
fresh topics and a fresh database of the chaos stack: ``streamledger run`` (2 processors, 1
projection, the API); a rate-limited feed of ``rounds_workload`` (>= 100k commands by default,
>= 10 % duplicate retries, fee splits, payouts and FX transactions, expiring pending
transfers, poison, misrouted and back-dated records); meanwhile ``rounds_faults`` kills
processes, the broker and PostgreSQL. Then, after catch-up, ``rounds_checks`` counts what
differs from the independent fold (``tests/system/ledger_reference.py``). One summary line per
round, one total line; the exit status is 1 if anything was lost, duplicated or violated.

The chaos stack has its own home and ports, so it never disturbs the shared test stack:
``.streamledger-chaos``, Kafka 24092/24093, PostgreSQL 24432, metrics 24400-24402, API 24080,
each changed by ``STREAMLEDGER_CHAOS_HOME``, ``STREAMLEDGER_CHAOS_KAFKA_PORT``, ... (the names of
``tests/conftest.py``'s ``TEST_STACK_VARIABLES``). All traffic stays on 127.0.0.1. Every wait is
bounded; a round that does not catch up in time is reported and the next one starts.

    python -m tests.chaos.rounds --rounds 2 --commands 20000
    python -m tests.chaos.rounds --faults kill,broker,postgres,api,expiry   # without record faults
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from infra import kafka_broker, postgres_server, stack, topics
from pipeline.demo import projected_heads
from pipeline.supervisor import state_path
from pipeline.topic_reader import committed_offsets, end_offsets, lag
from processors.processor_settings import GROUP_ID_SUFFIX
from projections.migrations import apply_migrations
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings, replace
from tests.chaos.rounds_checks import Findings, check_round
from tests.chaos.rounds_faults import KILLS_MIN, FaultDriver, FaultPlan, wait_for_api
from tests.chaos.rounds_feed import Feeder
from tests.chaos.rounds_workload import (
    EXPIRING_TIMEOUT_S,
    FAULT_KINDS,
    RoundPlan,
    RoundWorkload,
    build,
)
from tests.chaos.run_process import RunProcess, stopped_cleanly
from tests.conftest import (
    REPO_ROOT,
    StackDefaults,
    delete_topics,
    security_mismatch,
    settings_of,
    stack_defaults_from,
)
from tests.system.ledger_reference import ReferenceLedger, expire_pending

CHAOS_PREFIX: Final = "STREAMLEDGER_CHAOS_"
CHAOS_DEFAULTS: Final = StackDefaults(
    home=REPO_ROOT / ".streamledger-chaos",
    kafka_port=24092,
    kafka_controller_port=24093,
    postgres_port=24432,
    metrics_port=24400,
    api_port=24080,
)
ROUNDS_DEFAULT: Final = 20
COMMANDS_DEFAULT: Final = 100_000
COMMANDS_CLAIMED: Final = 100_000  # the size; smaller runs say they are smaller
RATE_DEFAULT: Final = 1_000  # commands per second the feed offers
KILLS_DEFAULT: Final = 6
PARTITIONS: Final = 3
START_TIMEOUT_S: Final = 120.0  # `streamledger run` up, the API answering
CATCH_UP_TIMEOUT_S: Final = 1_200.0
EXPIRY_MARGIN_S: Final = 1.0
POLL_S: Final = 1.0
PIPELINE_CHILDREN: Final = ("processor-", "projection-")  # must stop with exit code 0 on SIGTERM


@dataclass(slots=True)
class RoundResult:
    seed: int
    commands: int = 0
    duplicate_share: float = 0.0
    transactions: int = 0  # multi-leg transactions sent, and their postings
    postings: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    findings: Findings = field(default_factory=Findings)
    seconds: float = 0.0
    actions: list[str] = field(default_factory=list)

    def kills(self) -> int:
        return sum(count for name, count in self.faults.items() if "kill" in name)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    settings = settings_of(stack_defaults_from(CHAOS_PREFIX, CHAOS_DEFAULTS))
    api_port = stack_defaults_from(CHAOS_PREFIX, CHAOS_DEFAULTS).api_port
    print(
        f"chaos: {options.rounds} rounds x {options.commands:,} commands from seed {options.seed},"
        f" faults {','.join(sorted(options.faults))}; stack {settings.home}"
        f" (Kafka {settings.kafka_port} {settings.kafka_security}, PostgreSQL"
        f" {settings.postgres_port}, API {api_port})",
        flush=True,
    )
    if options.commands < COMMANDS_CLAIMED:
        print(f"chaos: note: {options.commands:,} commands a round is below the claimed size")
    mismatch = security_mismatch(settings)
    if mismatch is not None:
        print(f"chaos: {mismatch}", file=sys.stderr)
        return 2
    kafka_was_running = kafka_broker.is_running(settings)
    postgres_was_running = postgres_server.status(settings).running
    stack.up(settings)
    results: list[RoundResult] = []
    began = time.monotonic()
    try:
        for number in range(options.rounds):
            plan = RoundPlan(
                seed=options.seed + number, commands=options.commands, faults=options.faults
            )
            result = run_round(settings, plan, options, api_port)
            results.append(result)
            print(round_line(number + 1, options.rounds, result), flush=True)
            if options.verbose:
                print(f"    faults: {'; '.join(result.actions)}", flush=True)
                print(f"    read: {dict(result.findings.checked)}", flush=True)
    finally:
        if not options.keep_stack:
            if not kafka_was_running:
                kafka_broker.stop(settings)
            if not postgres_was_running:
                postgres_server.stop(settings)
    print(total_line(results, time.monotonic() - began), flush=True)
    damaged = sum(r.findings.lost + r.findings.duplicated + r.findings.total() for r in results)
    return 1 if damaged else 0


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int
    commands: int
    seed: int
    kills: int
    rate: int
    faults: frozenset[str]
    keep_stack: bool
    verbose: bool = False


def parse_arguments(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT, help="default 20")
    parser.add_argument("--commands", type=int, default=COMMANDS_DEFAULT, help="per round")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round (1)")
    parser.add_argument("--kills", type=int, default=KILLS_DEFAULT, help="kill -9s per round")
    parser.add_argument("--rate", type=int, default=RATE_DEFAULT, help="commands/s offered")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds (default all: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the chaos stack up")
    parser.add_argument(
        "--verbose", action="store_true", help="also print each round's faults and record counts"
    )
    arguments = parser.parse_args(argv)
    faults = frozenset(kind for kind in arguments.faults.split(",") if kind)
    if not 1 <= arguments.rounds <= 1_000 or not 1_000 <= arguments.commands <= 10_000_000:
        parser.error("need 1 <= --rounds <= 1000 and 1000 <= --commands <= 10000000")
    if not KILLS_MIN <= arguments.kills <= 100 or not 10 <= arguments.rate <= 100_000:
        parser.error(f"need {KILLS_MIN} <= --kills <= 100 and 10 <= --rate <= 100000")
    if faults - set(FAULT_KINDS):
        parser.error(f"unknown fault kinds {sorted(faults - set(FAULT_KINDS))}")
    return Options(
        arguments.rounds, arguments.commands, arguments.seed, arguments.kills, arguments.rate,
        faults, arguments.keep_stack, arguments.verbose,
    )  # fmt: skip


def round_settings(settings: Settings, seed: int) -> Settings:
    """Fresh topics and a fresh, migrated database on the chaos stack for one round."""
    prefix = f"chaos{seed}-{uuid.uuid4().hex[:6]}."
    database = f"sl_chaos_{seed}_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(settings, database)
    url = (
        f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
        f"@127.0.0.1:{settings.postgres_port}/{database}"
    )
    fresh = replace(settings, topic_prefix=prefix, partitions=PARTITIONS, database_url=url)
    topics.apply(fresh)
    apply_migrations(fresh, schema=LIVE_SCHEMA)
    return fresh


def fold(plan: RoundPlan) -> tuple[RoundWorkload, ReferenceLedger]:
    workload = build(plan)
    reference = ReferenceLedger().fold(workload.commands)
    for tenant_id, transfer_ids in workload.expiring.items():
        for transfer_id in transfer_ids:
            expire_pending(reference, tenant_id, transfer_id)
    reference.fold(workload.sweep)
    return workload, reference


def run_round(settings: Settings, plan: RoundPlan, options: Options, api_port: int) -> RoundResult:
    began = time.monotonic()
    result = RoundResult(plan.seed)
    workload, reference = fold(plan)
    result.commands = workload.sent_commands()
    result.duplicate_share = workload.duplicate_share()
    result.transactions, result.postings = workload.transactions, workload.postings
    result.faults.update(
        {"misrouted": len(workload.misrouted), "back-dated": workload.backdated,
         "poison": len(workload.poison)}
    )  # fmt: skip
    fresh = round_settings(settings, plan.seed)
    log_path = settings.home / "logs" / f"{fresh.topic_prefix}run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run = RunProcess(fresh, log_path, api_port=api_port)
    try:
        drive(RoundContext(fresh, workload, reference, run, options, api_port), result)
    except Exception as exc:  # noqa: BLE001 - a round that breaks is reported, the run goes on
        result.findings.violation("round broke off", f"{type(exc).__name__}: {exc}")
    finally:
        code = run.stop()
    unclean = [
        line
        for line in run.log().split("stopping:")[-1].splitlines()
        if line.startswith(PIPELINE_CHILDREN) and not stopped_cleanly(line)
    ]
    if code != 0 or unclean:
        result.findings.violation("run stop", f"exit code {code}, {unclean}; see {log_path}")
    if result.findings.total() == 0:
        delete_topics(fresh, [*topics.ledger_topic_names(fresh).all()])
        postgres_server.drop_scratch_database(settings, fresh.database_dsn.rsplit("/", 1)[1])
    result.seconds = time.monotonic() - began
    return result


@dataclass(frozen=True, slots=True)
class RoundContext:
    settings: Settings  # the round's topics and database on the chaos stack
    workload: RoundWorkload
    reference: ReferenceLedger
    run: RunProcess
    options: Options
    api_port: int


def drive(context: RoundContext, result: RoundResult) -> None:
    """Start, feed under faults, sweep, catch up, check: every step bounded."""
    settings, workload, options, api_port = (
        context.settings, context.workload, context.options, context.api_port
    )  # fmt: skip
    run = context.run
    wait_until("streamledger run's state file", lambda: not state_path(settings).exists(), run)
    if wait_for_api(api_port, START_TIMEOUT_S) is None:
        result.findings.violation("api", f"no /healthz on {api_port} within {START_TIMEOUT_S} s")
    window_s = len(workload.records) / options.rate
    feeder = Feeder(settings, workload.records, options.rate)
    driver = FaultDriver(
        result.seed, FaultPlan(options.kills, options.faults, window_s),
        state_path(settings), settings, api_port,
    )  # fmt: skip
    feeder.start()
    driver.start()
    feeder.join(window_s * 3 + START_TIMEOUT_S)
    driver.join(window_s * 3 + START_TIMEOUT_S)
    result.faults.update(driver.done)
    result.actions = driver.actions
    for problem in driver.problems + feeder.problems:
        result.findings.violation("fault not survived", problem)
    time.sleep(EXPIRING_TIMEOUT_S + EXPIRY_MARGIN_S)  # every expiring deadline has passed
    sweep = Feeder(settings, workload.sweep_records(settings.partitions), options.rate)
    sweep.start()
    sweep.join(START_TIMEOUT_S)
    try:
        wait_for_catch_up(settings, context.reference, run)
    except TimeoutError as exc:  # check anyway: the counts say what is missing
        result.findings.violation("catch-up timed out", str(exc))
    findings = check_round(settings, workload, context.reference)
    for kind, count in result.findings.violations.items():
        findings.violation(kind, "; ".join(result.findings.examples.get(kind, [])), count)
    result.findings = findings


def wait_until(
    what: str,
    remaining: Callable[[], int | bool],
    run: RunProcess,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout_s
    left = remaining()
    while left:
        if run.process.poll() is not None:
            raise RuntimeError(f"streamledger run exited: {run.log()[-500:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still {left} left after {timeout_s:g} s")
        time.sleep(POLL_S)
        left = remaining()


def wait_for_catch_up(settings: Settings, reference: ReferenceLedger, run: RunProcess) -> None:
    """Processors committed every command; the projection holds every tenant's last event."""
    commands_topic = settings.topic("ledger.commands")
    commands_end = end_offsets(settings, commands_topic)
    group = f"{settings.topic_prefix}{GROUP_ID_SUFFIX}"
    wait_until(
        "commands not yet processed",
        lambda: lag(committed_offsets(settings, group, commands_topic), commands_end),
        run,
        CATCH_UP_TIMEOUT_S,
    )
    heads = {tenant_id: tenant.sequence for tenant_id, tenant in reference.tenants.items()}

    def events_left() -> int:
        projected = projected_heads(settings, list(heads))
        return sum(max(head - projected.get(t, 0), 0) for t, head in heads.items())

    wait_until("events not yet projected", events_left, run, CATCH_UP_TIMEOUT_S)


def round_line(number: int, rounds: int, result: RoundResult) -> str:
    findings = result.findings
    faults = ", ".join(f"{name} {count}" for name, count in sorted(result.faults.items()))
    line = (
        f"round {number}/{rounds} seed {result.seed}: {result.commands:,} commands"
        f" ({result.duplicate_share:.1%} duplicate retries, {result.transactions:,} multi-leg"
        f" with {result.postings:,} postings), {result.kills()} kills,"
        f" faults {sum(result.faults.values())} ({faults}), expired {findings.expired},"
        f" lost {findings.lost}, duplicated {findings.duplicated},"
        f" invariant violations {findings.total()} in {result.seconds:.0f} s"
    )
    for kind, count in sorted(findings.details.items()):
        line += f"\n    {kind}: {count}, e.g. {'; '.join(findings.examples.get(kind, []))}"
    return line


def total_line(results: list[RoundResult], seconds: float) -> str:
    violations: Counter[str] = Counter()
    for result in results:
        violations.update(result.findings.violations)
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(violations.items()))
    return (
        f"total: {len(results)} rounds, {sum(r.commands for r in results):,} commands,"
        f" {sum(r.kills() for r in results)} kills,"
        f" {sum(sum(r.faults.values()) for r in results)} faults,"
        f" {sum(r.findings.lost for r in results)} lost,"
        f" {sum(r.findings.duplicated for r in results)} duplicated,"
        f" {sum(violations.values())} invariant violations"
        + (f" ({kinds})" if kinds else "")
        + f" in {seconds / 60:.1f} min"
    )


if __name__ == "__main__":
    sys.exit(main())
