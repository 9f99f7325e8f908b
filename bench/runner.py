"""``make bench`` / ``python -m bench``: every benchmark in one run, on a private stack.

    python -m bench [--size small|full] [--repetitions 3] [--skip-peers] [--skip-latency]

1. starts its own Kafka + PostgreSQL through ``infra.stack`` on its own home and ports
   (``.streamledger-bench``, Kafka 43092/43093, PostgreSQL 43432), wiped first, stopped at the
   end — it never touches the demo, test or anyone else's stack;
2. builds the seeded workloads once (standard mix, hot tenant, all-duplicates replay);
3. processor: StreamLedger vs the no-logic transactional pass-through vs the raw producer on the
   same records, each run checked against the core's fold; restore; 1 vs 2 processes and
   their CPU per command (a diagnostic); a profile of the loop (separate, untimed pass);
   multi-leg: postings/s of 10-posting
   transactions beside two-account transfers/s (``bench.multileg_suite``); commands/s with
   1,000 balance monitors on the hot accounts against none (``bench.monitor_suite``);
   signed commands: the standard size with signature verification on vs off, wall clock,
   processor CPU and decide alone, each arm in a process of its own, after an unmeasured
   warm-up round (``bench.signature_suite``, issue 21 §2, decisions 0140, 0146);
   the SDK's ``send`` from one process beside a raw confluent-kafka produce of the same
   records, wall clock and CPU per command (``bench.bench_producer``, issue 17);
4. peers: faust-streaming and Quix Streams on the same records, same check;
5. projection vs raw COPY; reports and metadata search on a filled scratch database, with
   the issue 19 targets (``bench.reports_suite``); the API's balance read over HTTP beside
   pgbench on the same statement, 8 clients each, during ingest (``bench.bench_api.run_api``,
   issue 17); end-to-end latency through ``streamledger run``;
   webhook delivery through ``streamledger notify``: latency at 1,000/s, saturation, the
   receiver's raw rate as the baseline (``bench.notify_suite``); reconciliation: statement
   lines matched/s by ``streamledger reconcile`` against a 50k (small) / 1M (full) movement
   ledger, the raw read of its inputs as the baseline, memory per open item
   (``bench.reconciliation_suite``);
6. prints the table and writes ``bench/results/<timestamp>.json``.
Each figure is the median of ``--repetitions`` runs with min and max (faust and Quix: one run
each, ``Size.peer_repetitions_max``; reconciliation at full: two, ``Shape.repetitions_max``);
ratios are per repetition (same repetition index, measured back to back). The machine may be
shared: compare figures of the same run only.
"""

from __future__ import annotations

import argparse
import cProfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import (
    bench_api,
    bench_producer,
    latency_suite,
    monitor_suite,
    multileg_suite,
    notify_suite,
    processor_suite,
    projection_suite,
    reconciliation_suite,
    reports_suite,
    signature_suite,
    workloads,
)
from bench.peers import runner as peers
from bench.results import BenchRun, repetitions_at_most
from infra import stack
from streamledger.settings import KAFKA_SECURITY_DEFAULT, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_ENVIRONMENT = {
    "STREAMLEDGER_HOME": str(REPO_ROOT / ".streamledger-bench"),
    "STREAMLEDGER_KAFKA_PORT": "43092",
    "STREAMLEDGER_KAFKA_CONTROLLER_PORT": "43093",
    "STREAMLEDGER_POSTGRES_PORT": "43432",
    "STREAMLEDGER_METRICS_PORT": "43400",
    "STREAMLEDGER_PROMETHEUS_PORT": "43090",
    "STREAMLEDGER_KAFKA_HEAP_MB": "1024",
    # the product's default, also on a bench home formatted before it was (wiped at start)
    "STREAMLEDGER_KAFKA_SECURITY": KAFKA_SECURITY_DEFAULT,
}
SEED = 42
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class Size:
    standard: int
    tenants: int
    hot_tenant: int
    duplicates: int  # base workload; the replay doubles it, the second half is timed
    peers: int
    scale: int
    profile: int
    projection_events: int
    latency_duration_s: float
    latency_rates: tuple[int, ...] = (500, 2_000, 5_000)
    api_read_s: float = 3.0  # each side of the API balance read figure, per repetition
    # faust and Quix run at most this many repetitions (None: ``--repetitions``). At small
    # size a faust repetition is ~34 s and a Quix one ~18 s (a fifth of ``make bench`` for
    # three of each); their spreads in the small runs of 2026-12-06 were 0.2-1.4 % (Quix) and
    # 0.6-14 % (faust), beside StreamLedger / peer ratios of 9x and 19x whose spread is
    # StreamLedger's own (decision 0118). At full the same (the 04:15 run of 2026-12-07:
    # faust 527-600 commands/s, Quix 2,019-2,051, ratios 24-34x and 7.0-8.7x), at ~52 s a
    # faust repetition: each peer runs once, checked, at both sizes (decision 0141)
    peer_repetitions_max: int | None = 1
    # commands per side of the signature suite's on / off ratio: the standard size at small; at
    # full 100,000, not the standard mix's 500,000: the ratio is a per-command cost and its
    # spread at 100,000 is no wider than at 500,000 (decision 0136), in a fifth of the ~11 min
    signatures: int = 20_000


SIZES = {
    "small": Size(
        standard=20_000, tenants=50, hot_tenant=10_000, duplicates=10_000, peers=12_000,
        scale=20_000, profile=10_000, projection_events=20_000, latency_duration_s=4.0,
    ),
    "full": Size(
        standard=500_000, tenants=200, hot_tenant=100_000, duplicates=100_000, peers=20_000,
        scale=200_000, profile=50_000, projection_events=200_000, latency_duration_s=12.0,
        signatures=100_000,
    ),
}  # fmt: skip


def bench_settings() -> Settings:
    return load_settings(environment=BENCH_ENVIRONMENT, working_directory=REPO_ROOT)


def run_bench(arguments: argparse.Namespace) -> int:
    size = SIZES[arguments.size]
    settings = bench_settings()
    run = BenchRun(size=arguments.size, seed=SEED, repetitions=arguments.repetitions)
    started = time.monotonic()
    say(f"bench stack: {settings.home} (Kafka {settings.kafka_port}, PostgreSQL"
        f" {settings.postgres_port}), wiped and started")  # fmt: skip
    stack.reset(settings)
    stack.up(settings)
    try:
        run_suites(run, settings, size, arguments)
    finally:
        if not arguments.keep_stack:
            stack.down(settings)
        run.elapsed_s = time.monotonic() - started
    add_ratios(run)
    print()
    print(run.table())
    for finding in run.findings:
        print(f"finding: {finding}")
    if run.profile:
        total = sum(run.profile.values()) or 1.0
        parts = ", ".join(f"{k} {v / total:.0%}" for k, v in run.profile.items())
        print(f"processor loop profile (own CPU time): {parts}")
    path = run.write()
    say(f"{run.elapsed_s:.0f} s; results in {path}")
    return 0


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_suites(
    run: BenchRun, settings: Settings, size: Size, arguments: argparse.Namespace
) -> None:
    repetitions = arguments.repetitions
    say("building workloads")
    standard = workloads.standard(SEED, size.standard, size.tenants, PARTITIONS)
    hot = workloads.hot_tenant(SEED, size.hot_tenant, size.tenants, PARTITIONS)
    duplicates = workloads.duplicates(
        workloads.standard(SEED + 1, size.duplicates, size.tenants, PARTITIONS)
    )
    run.sizes.update(
        standard=len(standard.records), hot_tenant=len(hot.records),
        duplicates_timed=duplicates.timed_count, partitions=PARTITIONS, tenants=size.tenants,
    )  # fmt: skip
    for workload, passthrough, restore in ((standard, True, True), (hot, True, False),
                                           (duplicates, False, False)):  # fmt: skip
        say(f"processor: {workload.name} ({len(workload.records)} records) x {repetitions}")
        processor_suite.run_workload(
            run, settings, workload, repetitions=repetitions, partitions=PARTITIONS,
            check=True, passthrough=passthrough, restore=restore,
        )  # fmt: skip
    say(f"multi-leg: transfers vs transactions of {multileg_suite.POSTINGS_PER_TRANSACTION}"
        f" postings x {repetitions}")  # fmt: skip
    multileg_suite.run_multileg(
        run, settings, size=arguments.size, repetitions=repetitions, partitions=PARTITIONS
    )
    transfers = monitor_suite.COMMANDS_BY_SIZE[arguments.size]
    say(f"monitors: {monitor_suite.MONITORS:,} monitors on hot accounts vs none, {transfers:,}"
        f" transfers x {repetitions}")  # fmt: skip
    monitor_suite.run_monitors(
        run, settings, size=arguments.size, repetitions=repetitions, partitions=PARTITIONS
    )
    say(f"signatures: verification on vs off, {size.signatures:,} commands x {repetitions}")
    signature_suite.run_signatures(
        run, settings, commands=size.signatures, tenants=size.tenants, repetitions=repetitions
    )
    run.sizes["signature_commands"] = size.signatures
    say(f"sdk: LedgerProducer.send vs raw produce of the same records x {repetitions}")
    bench_producer.run_producer(
        run, settings, commands=bench_producer.COMMANDS_PER_SIZE[arguments.size],
        tenants=bench_producer.TENANTS, repetitions=repetitions,
    )  # fmt: skip
    say("processor: profile (untimed pass)")
    profiler = cProfile.Profile()
    profiled = workloads.standard(SEED + 2, size.profile, size.tenants, PARTITIONS)
    scratch = BenchRun(size="profile", seed=SEED, repetitions=1)
    processor_suite.run_workload(
        scratch, settings, profiled, repetitions=1, partitions=PARTITIONS, check=False,
        passthrough=False, restore=False, profiler=profiler,
    )  # fmt: skip
    run.profile = processor_suite.profile_categories(profiler)
    scale = (
        standard
        if size.scale == size.standard
        else workloads.standard(SEED, size.scale, size.tenants, PARTITIONS)
    )
    for instances in (1, 2):
        say(f"scale: {instances} processor process(es) x {repetitions}")
        processor_suite.run_instances(
            run, settings, scale, instances=instances, repetitions=repetitions,
            partitions=PARTITIONS,
        )  # fmt: skip
    if not arguments.skip_peers:
        run_peers(run, settings, size, standard, repetitions)
    say(f"projection: {size.projection_events} events x {repetitions}")
    projection_suite.run_projection(
        run, settings, events=size.projection_events, tenants=size.tenants,
        repetitions=repetitions, seed=SEED,
    )  # fmt: skip
    say(f"reports: statement, trial balance, metadata search on filled rows ({arguments.size})")
    reports_suite.run_reports(run, settings, size_name=arguments.size, say=say)
    say(f"api: balance read, HTTP vs pgbench, {bench_api.BENCH_CLIENTS} clients, during ingest"
        f" x {repetitions}")  # fmt: skip
    bench_api.run_api(run, settings, repetitions=repetitions, seconds=size.api_read_s)
    if not arguments.skip_latency:
        say(f"latency: {size.latency_rates}/s x {size.latency_duration_s:g} s x {repetitions}")
        latency_suite.run_latency(
            run, settings, rates=size.latency_rates, duration_s=size.latency_duration_s,
            repetitions=repetitions,
        )  # fmt: skip
    if not arguments.skip_reconciliation:
        shape_of = reconciliation_suite.SIZES[arguments.size]
        say(f"reconciliation: {shape_of.movements:,} mirror movements, statement lines matched"
            f" x {shape_of.repetitions(repetitions)}")  # fmt: skip
        reconciliation_suite.run_reconciliation(
            run, settings, size=arguments.size, repetitions=shape_of.repetitions(repetitions),
            say=say,
        )  # fmt: skip
    if not arguments.skip_notify:
        shape = notify_suite.SIZES[arguments.size]
        say(f"webhooks: {shape.rates}/s x {shape.duration_s:g} s, backlogs of {shape.backlog:,}"
            f" x {repetitions}")  # fmt: skip
        notify_suite.run_notify(
            run, settings, rates=shape.rates, duration_s=shape.duration_s,
            backlog=shape.backlog, repetitions=repetitions,
        )  # fmt: skip


def run_peers(
    run: BenchRun, settings: Settings, size: Size, standard: workloads.Workload, repetitions: int
) -> None:
    if size.peers == size.standard:
        workload = standard
    else:
        workload = workloads.standard(SEED, size.peers, size.tenants, PARTITIONS)
        workload = workloads.Workload("peers", workload.records, seed=SEED)
        say(f"processor: StreamLedger on the peers' workload x {repetitions}")
        processor_suite.run_workload(
            run, settings, workload, repetitions=repetitions, partitions=PARTITIONS,
            check=True, passthrough=True, restore=False,
        )  # fmt: skip
    run.sizes["peers"] = len(workload.records)
    peer_repetitions = repetitions_at_most(repetitions, size.peer_repetitions_max)
    for peer in peers.PEERS:
        say(f"peer: {peer.label} on {workload.name} ({len(workload.records)})"
            f" x {peer_repetitions}")  # fmt: skip
        peers.run_peer(
            run, settings, peer, workload, repetitions=peer_repetitions, partitions=PARTITIONS
        )


def add_ratios(run: BenchRun) -> None:
    """Per-repetition ratios of figures measured back to back in the same run."""
    pairs = []
    for workload in ("standard", "hot_tenant", "peers"):
        ours = f"StreamLedger EOS ({workload})"
        pairs.append(
            (ours, f"pass-through EOS ({workload})", f"StreamLedger / pass-through ({workload})")
        )
        for peer in peers.PEERS:
            pairs.append(
                (ours, f"{peer.label} ({workload})", f"StreamLedger / {peer.label} ({workload})")
            )
    for numerator, denominator, name in pairs:
        top, bottom = run.find("processor", numerator), run.find("processor", denominator)
        if top is None or bottom is None or not top.values or not bottom.values:
            continue
        ratio = run.figure("ratio", name, "x")
        ratio.values = [a / b for a, b in zip(top.values, bottom.values, strict=False) if b]
        if bottom.correct is False:
            ratio.note = "denominator INCORRECT"
    projection = run.find("projection", "projection into PostgreSQL")
    copy = run.find("limits", "raw binary COPY of the same rows")
    if projection is not None and copy is not None and copy.values:
        ratio = run.figure("ratio", "projection / raw COPY", "x")
        ratio.values = [a / b for a, b in zip(projection.values, copy.values, strict=False)]
