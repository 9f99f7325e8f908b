"""``make chaos-ha``: kill -9 Kafka nodes and the PostgreSQL primary under load; lose nothing.

Not part of CI. On a stack of its own (three Kafka nodes, RF 3, min ISR 2, a PostgreSQL hot
standby; ``.streamledger-ha``, Kafka 26092-26097, PostgreSQL 26432/26433, metrics 26400.., API
26080 — below the kernel's ephemeral range, see decision 0036 — each changed by
``STREAMLEDGER_HA_HOME``, ``STREAMLEDGER_HA_KAFKA_PORT``, ...), one run:

1. fresh topics and a fresh database; ``streamledger run`` (processors, projection, API); a
   steady seeded feed (``tests/chaos/rounds_workload``) at ``--rate`` commands/s;
2. faults, one after another, each followed by its recovery and a settling time:
   - ``kill -9`` the node that is the active controller (it leads a third of the partitions too),
     ``--down-s`` later start it again, wait until no partition is under-replicated;
   - the same for the node that now leads the most partitions;
   - ``kill -9`` the PostgreSQL primary's postmaster, ``streamledger infra promote`` (fence it,
     promote the standby) after ``--detect-s``; the projection reconnects through the DSN that
     names both servers and resumes from the offsets stored in the promoted standby;
3. after the feed, catch-up, then ``rounds_checks.check_round``: every command has exactly one
   outcome (no acknowledged command lost, none duplicated), every chain gapless and intact, the
   balances equal to an independent fold in Kafka and PostgreSQL, ``verify`` clean.

Per fault it prints the measured window (``ha_measure``): the longest time with no committed
progress (end to end and at the processors), the longest stretch of failing API reads, and the
p99 end-to-end latency. The exit status is 1 if anything was lost, duplicated or violated.
Each run starts PostgreSQL afresh (a promoted stack's old primary is fenced).

    python -m tests.chaos.ha --commands 40000 --rate 250
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from api.api_keys import create_api_key
from infra import kafka_broker, postgres_server, postgres_standby, stack, topics
from pipeline.supervisor import state_path
from processors.processor_settings import GROUP_ID_SUFFIX
from producers.loadgen import FUNDING_ACCOUNT
from projections.migrations import apply_migrations
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings, replace
from tests.chaos.ha_measure import Probe, WindowFigures, window_figures
from tests.chaos.rounds import fold, wait_for_catch_up, wait_until
from tests.chaos.rounds_checks import Findings, check_round
from tests.chaos.rounds_faults import wait_for_api
from tests.chaos.rounds_feed import Feeder
from tests.chaos.rounds_workload import RoundPlan, RoundWorkload
from tests.chaos.run_process import RunProcess
from tests.conftest import (
    REPO_ROOT,
    StackDefaults,
    kafka_security_of_test_stacks,
    security_mismatch,
    stack_defaults_from,
)
from tests.system.ledger_reference import ReferenceLedger

HA_PREFIX: Final = "STREAMLEDGER_HA_"
HA_DEFAULTS: Final = StackDefaults(
    home=REPO_ROOT / ".streamledger-ha",
    kafka_port=26092,
    kafka_controller_port=26093,
    postgres_port=26432,
    metrics_port=26400,
    api_port=26080,
)
BROKERS: Final = 3
KAFKA_HEAP_MB: Final = 384  # three nodes: ~0.5 GiB resident each (decision 0036)
PARTITIONS: Final = 3
START_TIMEOUT_S: Final = 180.0
RECOVERY_TIMEOUT_S: Final = 180.0  # a restarted node back in every ISR
POLL_S: Final = 0.5
WARM_UP_S: Final = 15.0  # steady load before the first fault
FAULTS: Final = ("controller", "leaders", "postgres")  # in this order


@dataclass(frozen=True, slots=True)
class Options:
    commands: int
    rate: int
    seed: int
    down_s: float
    settle_s: float
    detect_s: float
    keep_stack: bool
    faults: tuple[str, ...] = FAULTS


@dataclass(frozen=True, slots=True)
class FaultWindow:
    name: str
    started_s: float
    ended_s: float
    note: str


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    defaults = stack_defaults_from(HA_PREFIX, HA_DEFAULTS)
    settings = ha_settings(defaults)
    print(
        f"chaos-ha: {options.commands:,} commands at {options.rate}/s, seed {options.seed};"
        f" stack {settings.home} (Kafka {settings.kafka_bootstrap}, PostgreSQL"
        f" {settings.postgres_port} + standby {settings.postgres_standby_port};"
        f" {settings.kafka_security})",
        flush=True,
    )
    mismatch = security_mismatch(settings)
    if mismatch is not None:
        print(f"chaos-ha: {mismatch}", file=sys.stderr)
        return 2
    fresh_postgres(settings)
    for report in stack.up(settings, with_standby=True):
        print(f"  {report.line()}", flush=True)
    try:
        findings, windows, figures = run_once(settings, options, defaults.api_port)
    finally:
        if not options.keep_stack:
            stack.down(settings)
    for window, figure in zip(windows, figures, strict=True):
        print(f"{window.name}: {window.note}\n    {figure.line()}", flush=True)
    print(verdict(findings), flush=True)
    return 1 if findings.lost or findings.duplicated or findings.total() else 0


def parse_arguments(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="make chaos-ha", description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=40_000, help="mixed commands (40000)")
    parser.add_argument("--rate", type=int, default=250, help="commands/s offered (250)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (1)")
    parser.add_argument("--down-s", type=float, default=15.0, help="a killed node's downtime")
    parser.add_argument("--settle-s", type=float, default=20.0, help="measured after recovery")
    parser.add_argument(
        "--detect-s", type=float, default=2.0, help="primary lost -> promote (an operator/probe)"
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the HA stack up")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help="which of controller (kill -9 the active controller's node), leaders (then the node"
        " leading the most partitions), postgres (the primary, then promote); default all",
    )
    arguments = parser.parse_args(argv)
    faults = tuple(fault for fault in FAULTS if fault in arguments.faults.split(","))
    if not faults or set(arguments.faults.split(",")) - set(FAULTS):
        parser.error(f"--faults: a comma-separated subset of {','.join(FAULTS)}")
    if not 1_000 <= arguments.commands <= 10_000_000 or not 10 <= arguments.rate <= 100_000:
        parser.error("need 1000 <= --commands <= 10000000 and 10 <= --rate <= 100000")
    if not 0 <= arguments.down_s <= 600 or not 0 <= arguments.settle_s <= 600:
        parser.error("need --down-s and --settle-s in 0..600")
    if not 0 <= arguments.detect_s <= 600:
        parser.error("need --detect-s in 0..600")
    return Options(
        arguments.commands, arguments.rate, arguments.seed, arguments.down_s,
        arguments.settle_s, arguments.detect_s, arguments.keep_stack, faults,
    )  # fmt: skip


def ha_settings(defaults: StackDefaults) -> Settings:
    return Settings(
        home=defaults.home,
        kafka_port=defaults.kafka_port,
        kafka_controller_port=defaults.kafka_controller_port,
        postgres_port=defaults.postgres_port,
        postgres_standby_port=defaults.postgres_port + 1,
        metrics_port=defaults.metrics_port,
        brokers=BROKERS,
        replication_factor=BROKERS,
        min_insync_replicas=BROKERS - 1,
        kafka_heap_mb=KAFKA_HEAP_MB,
        kafka_security=kafka_security_of_test_stacks(),
    )


def fresh_postgres(settings: Settings) -> None:
    """Delete the HA stack's primary and standby: a promoted one left its old primary fenced."""
    postgres_standby.reset(settings)
    postgres_server.reset(settings)


def run_settings(settings: Settings, seed: int) -> Settings:
    """Fresh topics and a fresh, migrated database; the DSN names both PostgreSQL servers."""
    prefix = f"ha{seed}-{uuid.uuid4().hex[:6]}."
    database = f"sl_ha_{seed}_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(settings, database)
    url = (
        f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
        f"@127.0.0.1:{settings.postgres_port},127.0.0.1:{settings.postgres_standby_port}"
        f"/{database}?target_session_attrs=primary"
    )
    fresh = replace(settings, topic_prefix=prefix, partitions=PARTITIONS, database_url=url)
    topics.apply(fresh)
    apply_migrations(fresh, schema=LIVE_SCHEMA)
    return fresh


def run_once(
    settings: Settings, options: Options, api_port: int
) -> tuple[Findings, list[FaultWindow], list[WindowFigures]]:
    workload, reference = fold(RoundPlan(seed=options.seed, commands=options.commands))
    fresh = run_settings(settings, options.seed)
    log_path = settings.home / "logs" / f"{fresh.topic_prefix}run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run = RunProcess(fresh, log_path, api_port=api_port)
    print(f"  streamledger run: log {log_path}", flush=True)
    try:
        return under_load(HaRun(settings, fresh, workload, reference, run, options, api_port))
    finally:
        code = run.stop()
        print(f"  streamledger run stopped, exit code {code}", flush=True)


@dataclass(frozen=True, slots=True)
class HaRun:
    settings: Settings  # the HA stack
    fresh: Settings  # this run's topics and database on it
    workload: RoundWorkload
    reference: ReferenceLedger
    run: RunProcess
    options: Options
    api_port: int


def under_load(context: HaRun) -> tuple[Findings, list[FaultWindow], list[WindowFigures]]:
    """Feed, break, recover, catch up, check; every wait bounded."""
    settings, fresh, workload, reference, run, options, api_port = (
        context.settings, context.fresh, context.workload, context.reference, context.run,
        context.options, context.api_port,
    )  # fmt: skip
    wait_until("streamledger run's state file", lambda: not state_path(fresh).exists(), run)
    if wait_for_api(api_port, START_TIMEOUT_S) is None:
        raise RuntimeError(f"the API did not answer /healthz on {api_port}")
    tenant = sorted(reference.tenants)[0]
    token = create_api_key(fresh, tenant).token
    probe = Probe(
        fresh,
        group=f"{fresh.topic_prefix}{GROUP_ID_SUFFIX}",
        api_url=f"http://127.0.0.1:{api_port}/v1/accounts/{FUNDING_ACCOUNT}/balance",
        api_token=token,
    )
    feeder = Feeder(fresh, workload.records, options.rate)
    window_s = len(workload.records) / options.rate
    probe.start()
    feeder.start()
    fed_until = time.monotonic() + window_s
    windows = inject_faults(settings, options, probe)
    if windows and windows[-1].ended_s > fed_until:
        print("  note: the feed ended before the last fault's window; raise --commands", flush=True)
    feeder.join(window_s * 3 + START_TIMEOUT_S)
    sweep = Feeder(fresh, workload.sweep_records(fresh.partitions), options.rate)
    sweep.start()
    sweep.join(START_TIMEOUT_S)
    findings = Findings()
    for problem in feeder.problems + sweep.problems:
        findings.violation("feed", problem)
    try:
        wait_for_catch_up(fresh, reference, run)
    except TimeoutError as exc:
        findings.violation("catch-up timed out", str(exc))
    probe.stop()
    checked = check_round(fresh, workload, reference)
    for kind, count in findings.violations.items():
        checked.violation(kind, "; ".join(findings.examples.get(kind, [])), count)
    figures = [window_figures(probe.samples, w.started_s, w.ended_s) for w in windows]
    return checked, windows, figures


def inject_faults(settings: Settings, options: Options, probe: Probe) -> list[FaultWindow]:
    """The chosen faults in order; each window's figures printed as soon as it closes."""
    time.sleep(WARM_UP_S)
    windows: list[FaultWindow] = []
    killed = 0
    for fault in options.faults:
        if fault == "controller":
            leader = kafka_broker.controller_leader(settings)
            killed = leader[0] if leader is not None else 1
            window = kill_node(settings, options, killed, "the active controller")
        elif fault == "leaders":
            health = kafka_broker.cluster_health(settings)
            others = {node: count for node, count in health.leaders.items() if node != killed}
            target = max(others, key=lambda node: others[node]) if others else 1
            window = kill_node(settings, options, target, "the node leading the most partitions")
        else:
            window = kill_primary(settings, options)
        windows.append(window)
        figures = window_figures(list(probe.samples), window.started_s, window.ended_s)
        print(f"  {window.name}: {window.note}\n      {figures.line()}", flush=True)
    return windows


def kill_node(settings: Settings, options: Options, node_id: int, role: str) -> FaultWindow:
    health = kafka_broker.cluster_health(settings)
    led = health.leaders.get(node_id, 0)
    started_s = time.monotonic()
    process = kafka_broker.kill_node(settings, node_id)
    if process is None:
        raise RuntimeError(f"Kafka node {node_id} was not running when its kill was due")
    time.sleep(options.down_s)
    began = time.monotonic()
    kafka_broker.start(settings)
    restarted_s = time.monotonic() - began
    recovered_s = wait_for(
        "no under-replicated partition",
        lambda: kafka_broker.cluster_health(settings).under_replicated == 0,
    )
    time.sleep(options.settle_s)
    note = (
        f"kill -9 Kafka node {node_id} ({role}; it led {led} of {health.partitions} partitions),"
        f" down {options.down_s:g} s, restarted in {restarted_s:.1f} s, every ISR full again"
        f" {recovered_s:.1f} s later"
    )
    return FaultWindow(f"kafka node {node_id}", started_s, time.monotonic(), note)


def kill_primary(settings: Settings, options: Options) -> FaultWindow:
    started_s = time.monotonic()
    pid = postgres_standby.kill_primary(settings)
    if pid is None:
        raise RuntimeError("the PostgreSQL primary was not running when its kill was due")
    time.sleep(options.detect_s)
    began = time.monotonic()
    steps = postgres_standby.promote(settings)
    promoted_s = time.monotonic() - began
    time.sleep(options.settle_s)
    note = (
        f"kill -9 PostgreSQL primary (postmaster {pid}), promote after {options.detect_s:g} s"
        f" took {promoted_s:.1f} s ({'; '.join(step.strip() for step in steps)})"
    )
    return FaultWindow("postgresql primary", started_s, time.monotonic(), note)


def wait_for(what: str, done: Callable[[], bool]) -> float:
    """Seconds until ``done()``; ``TimeoutError`` after ``RECOVERY_TIMEOUT_S``. A failing look
    (the cluster still electing) counts as not done."""
    began = time.monotonic()
    while time.monotonic() - began < RECOVERY_TIMEOUT_S:
        try:
            if done():
                return time.monotonic() - began
        except Exception:  # noqa: BLE001 - a look during recovery may fail; look again
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"{what}: not after {RECOVERY_TIMEOUT_S:g} s")


def verdict(findings: Findings) -> str:
    line = (
        f"chaos-ha: lost {findings.lost}, duplicated {findings.duplicated}, invariant violations"
        f" {findings.total()} (outcomes, chains, balances, PostgreSQL, verify;"
        f" read {dict(findings.checked)})"
    )
    for kind, count in sorted(findings.details.items()):
        line += f"\n    {kind}: {count}, e.g. {'; '.join(findings.examples.get(kind, []))}"
    return line


if __name__ == "__main__":
    sys.exit(main())
