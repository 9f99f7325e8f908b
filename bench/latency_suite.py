"""End-to-end latency: a command's ``submitted_at`` → its event visible in PostgreSQL, at fixed
offered rates, through the pipeline exactly as ``streamledger run`` starts it.

The driver is open-loop: command ``i`` is due at ``start + i / rate`` and carries that instant as
``submitted_at_us`` (a late send still counts from when it was due: no coordinated omission).
Every command is a posted transfer that must succeed, so each tenant's next event sequence is
known in advance. A poller reads ``tenant_heads`` every ``POLL_INTERVAL_S``; when a tenant's
head reaches a sequence, every command up to it is visible, and its latency is now - due. The
reads run on the server (``HEADS_AFTER``, decision 0135): one statement checks the heads every
``POLL_INTERVAL_S`` in a fresh snapshot and returns as soon as one advanced, so the driver makes
a query per projection transaction instead of one per 2 ms. The
first ``WARMUP_S`` of each run are not counted. The sender sleeps at least
``SEND_SLEEP_MIN_S`` (1 ms) when it is ahead of its schedule and then sends every command that
fell due meanwhile (decision 0123): a sleep per command (every 200 µs at 5,000/s) cost the
sending thread ~17 µs of CPU per command on the cores the pipeline runs on; a command sent
late by it still counts from when it was due.

With ``breakdown=True`` one counted command in ``hop_sample_every`` (default
``HOP_SAMPLE_EVERY``) is also timed per hop (``HOPS``):

    due ──► acked (the SDK's delivery report: linger + the broker's append)
        ──► event produced (the event record's timestamp: the processor decided it)
        ──► event visible (a read_committed observer of ``ledger.events`` got it: committed)
        ──► row visible (the poller saw the tenant head in PostgreSQL)

The observer and the sampled commands' delivery reports cost the driver CPU, which shares the
cores with the pipeline, so the headline figures are measured without them (``make bench``).
Both are light (decision 0118): the observer's broker holds a fetch up to
``OBSERVER_FETCH_WAIT_MS`` (100; it was 5, ~200 fetches a second while idle, 7-8 ms of the
driver's CPU a second against 1.6-1.9 now) but answers as soon as a commit marker makes records
visible (event produced → visible p50 was the same at 5 and 100 ms), and only the sampled
commands get a delivery callback and an entry the observer and the poller fill in; each hop
figure's note says how many were sampled. Without the breakdown, the driver's own CPU per
command at 2,000/s is ~100-150 µs (decision 0135): librdkafka's threads (the SDK, ``linger.ms``
1) ~40-120, the sending thread ~45 (the SDK's ``send`` ~20, the pacing's sleeps ~20, the rest
~5), the poller ~5-9 and its backend ~20; the poller was ~35-40 (one query per 2 ms, ~240 µs of
Python each under load, 255-340 a second) before the reads moved to the server.

The breakdown also reads, per rate, what the children's ``/metrics`` say about the two
transactions on the path (``PACING_SERIES``: the processor's Kafka transaction, commands per
transaction and its commit's duration; the projection's database transaction, events per
transaction and its duration), each child's CPU per command, the driver's own CPU per command, and
how busy the machine's cores were (``/proc/stat``): at a rate the pipeline cannot keep up with,
that says whether it ran out of CPU or waited.

Standalone, against whatever stack the ``STREAMLEDGER_*`` settings point at::

    python -m bench.latency_suite --rates 500,2000 --duration-s 6 --breakdown \\
        [--processor-arg=--batch-interval-ms=10] [--projection-arg=--batch-interval-ms=10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench import grants
from bench.bench_processor import delete_topics
from bench.processor_suite import REPO_ROOT, cpu_seconds, peak_rss_bytes, stop_process
from bench.results import BenchRun
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from pipeline.metrics_scrape import scrape
from producers.sdk import DeliveryCallback, DeliveryReport, LedgerProducer, ProducerSettings
from schemas.keys import KEY_SEPARATOR
from schemas.model import OpenAccount, Transfer
from schemas.topics import EVENTS_TOPIC
from streamledger.settings import Settings, child_environment, load_settings, replace

TENANTS = 8
CUSTOMERS = 4
POLL_INTERVAL_S = 0.002
# The sender's shortest sleep (decision 0123): when it is ahead of its schedule it sleeps at
# least this long, then sends every command due by then, late by at most about this much
# (counted in the latency). At 5,000/s the sending thread's CPU went 37-40 → 21-22 µs per
# command (12-13k sleeps → ~2k per 15,000 commands); at 2,000/s 46-49 → 32-33 µs.
SEND_SLEEP_MIN_S = 0.001
WARMUP_S = 1.0
READY_TIMEOUT_S = 180.0
VISIBLE_TIMEOUT_S = 120.0
PARTITIONS = 4
# The visibility probe (decision 0135): a session-local function that checks the tenant heads
# every POLL_INTERVAL_S on the server and returns the heads beyond the given ones as soon as a
# check sees any (or none after HEADS_WAIT_MAX_S). A VOLATILE PL/pgSQL function takes a fresh
# READ COMMITTED snapshot for each statement, so each check sees what a new query would: the
# same "visible" as one query per poll, without a round trip and a Python query per 2 ms.
HEADS_WAIT_MAX_S = 0.1
HEADS_AFTER = """
CREATE FUNCTION pg_temp.heads_after(
    tenants text[], known bigint[], wait_max_s float8, interval_s float8
) RETURNS TABLE (tenant text, head bigint) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => wait_max_s);
BEGIN
    LOOP
        RETURN QUERY SELECT h.tenant_id, h.last_sequence
            FROM ledger.tenant_heads AS h
            JOIN unnest(tenants, known) AS k (tenant_id, sequence) USING (tenant_id)
            WHERE h.last_sequence > k.sequence;
        IF FOUND OR clock_timestamp() >= deadline THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(interval_s);
    END LOOP;
END
$$
"""
HEADS = "SELECT tenant, head FROM pg_temp.heads_after(%s::text[], %s::bigint[], %s, %s)"
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
# The observer of ledger.events (breakdown only). The broker answers a read_committed fetch when
# a commit marker makes records visible, so this bounds only the idle fetches (decision 0118).
OBSERVER_FETCH_WAIT_MS = 100
# One counted command in this many is timed per hop (breakdown only). Coprime with TENANTS, so
# the sampled commands go round every tenant (and partition) instead of a few of them.
HOP_SAMPLE_EVERY = 5
OBSERVER_POLL_TIMEOUT_S = 0.05
OBSERVER_BATCH_RECORDS_MAX = 1_000
OBSERVER_ASSIGN_TIMEOUT_S = 30.0
# The instants of one command's path, in order; a hop is the time between two neighbours.
STAGES = ("due", "acked", "event_produced", "event_visible", "row_visible")
HOPS = tuple(f"{start} → {end}" for start, end in itertools.pairwise(STAGES))
DEFAULT_RATES = (500, 2_000)
# (figure, unit, role, sum sample, count sample, scale): a mean per transaction over a phase,
# from the children's /metrics (breakdown only).
PACING_SERIES = (
    ("processor commands per Kafka transaction", "commands", "processor",
     "streamledger_processor_batch_size_records_sum",
     "streamledger_processor_batch_size_records_count", 1.0),
    ("processor send_offsets + commit per transaction", "ms", "processor",
     "streamledger_processor_transaction_commit_duration_seconds_sum",
     "streamledger_processor_transaction_commit_duration_seconds_count", 1000.0),
    ("projection events per database transaction", "events", "projection",
     "streamledger_projection_batch_size_events_sum",
     "streamledger_projection_batch_size_events_count", 1.0),
    ("projection database transaction", "ms", "projection",
     "streamledger_projection_batch_duration_seconds_sum",
     "streamledger_projection_batch_duration_seconds_count", 1000.0),
)  # fmt: skip
DEFAULT_DURATION_S = 6.0


@contextmanager
def pipeline(
    settings: Settings, log_path: Path, extra_arguments: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """``streamledger run --processors 1 --projections 1`` on its own topic prefix.

    The API (on by default, as a user starts it) gets a free port of its own, so a run never
    collides with another stack's API on the default port."""
    environment = child_environment(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamledger.cli", "run", "--processors=1",
             "--projections=1", "--status-interval-s=60", f"--api-port={free_port()}",
             *extra_arguments],
            env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )  # fmt: skip
        try:
            yield process
        finally:
            stop_process(process)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class HopTimes:
    """Per counted (tenant, sequence): the instant (µs since the epoch) of each stage."""

    instants: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, tenant: str, sequence: int, stage: str, instant_us: int) -> None:
        with self.lock:
            stages = self.instants.get((tenant, sequence))
            if stages is not None and stage not in stages:
                stages[stage] = instant_us

    def hops_ms(self) -> dict[str, list[float]]:
        """Each hop's durations over the commands whose every stage was seen."""
        hops: dict[str, list[float]] = {hop: [] for hop in HOPS}
        with self.lock:
            complete = [s for s in self.instants.values() if all(k in s for k in STAGES)]
        for stages in complete:
            for hop, (start, end) in zip(HOPS, itertools.pairwise(STAGES), strict=True):
                hops[hop].append((stages[end] - stages[start]) / 1000)
        return hops


class EventObserver:
    """Reads ``ledger.events`` read_committed from its end: when each event became visible."""

    def __init__(self, settings: Settings, hop_times: HopTimes) -> None:
        self.hop_times = hop_times
        self.consumer = Consumer(
            {
                **client_config(settings, ADMIN_PRINCIPAL),
                "group.id": f"{settings.topic_prefix}latency-observer",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": OBSERVER_FETCH_WAIT_MS,
            }
        )
        topic = settings.topic(EVENTS_TOPIC)
        partitions = [TopicPartition(topic, p, OFFSET_END) for p in range(PARTITIONS)]
        self.consumer.assign(partitions)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.observe, daemon=True)

    def observe(self) -> None:
        try:
            while not self.stop.is_set():
                records = self.consumer.consume(OBSERVER_BATCH_RECORDS_MAX, 0)
                if not records:
                    records = self.consumer.consume(1, OBSERVER_POLL_TIMEOUT_S)
                seen_us = now_us()
                for record in records:
                    key = record.key()
                    if record.error() is not None or key is None:
                        continue
                    tenant, sequence = key.decode().split(KEY_SEPARATOR, 1)
                    _, produced_ms = record.timestamp()
                    self.hop_times.note(tenant, int(sequence), "event_produced", produced_ms * 1000)
                    self.hop_times.note(tenant, int(sequence), "event_visible", seen_us)
        finally:
            self.consumer.close()


class Visibility:
    """Polls tenant heads; records latency for every (tenant, sequence) that became visible."""

    def __init__(self, settings: Settings, tenants: list[str], hop_times: HopTimes) -> None:
        self.settings = settings
        self.tenants = tenants
        self.hop_times = hop_times
        self.due_us: dict[tuple[str, int], int] = {}
        self.seen: dict[str, int] = dict.fromkeys(tenants, 0)
        self.latencies_ms: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        with psycopg.connect(self.settings.database_dsn, autocommit=True) as conn:
            conn.execute(HEADS_AFTER)
            while not self.stop.is_set():
                known = [self.seen[tenant] for tenant in self.tenants]
                parameters = (self.tenants, known, HEADS_WAIT_MAX_S, POLL_INTERVAL_S)
                rows = conn.execute(HEADS, parameters).fetchall()
                seen_us = now_us()
                if not rows:
                    continue
                with self.lock:
                    for tenant_id, head in rows:
                        for sequence in range(self.seen[tenant_id] + 1, head + 1):
                            due = self.due_us.pop((tenant_id, sequence), None)
                            if due is not None:
                                self.latencies_ms.append((seen_us - due) / 1000)
                                self.hop_times.note(tenant_id, sequence, "row_visible", seen_us)
                        self.seen[tenant_id] = max(self.seen[tenant_id], head)
                time.sleep(POLL_INTERVAL_S)

    def wait_for(self, heads: dict[str, int], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if all(self.seen[t] >= s for t, s in heads.items()):
                    return
            time.sleep(0.05)
        raise AssertionError(f"not visible in {timeout_s} s: want {heads}, saw {self.seen}")


def open_accounts(producer: LedgerProducer, tenants: list[str], opened_us: int) -> dict[str, int]:
    for tenant in tenants:
        names = ["funding"] + [f"c{n}" for n in range(CUSTOMERS)]
        for number, name in enumerate(names):
            producer.send(
                OpenAccount(tenant_id=tenant, idempotency_key=f"open-{number}",
                            submitted_at_us=opened_us, account_id=name, currency="USD",
                            asset_scale=2)
            )  # fmt: skip
    producer.flush(60)
    return dict.fromkeys(tenants, CUSTOMERS + 1)


def delivery_timer(hop_times: HopTimes, tenant: str, sequence: int) -> DeliveryCallback:
    """A delivery callback noting when the broker acknowledged (tenant, sequence)'s command."""

    def on_delivery(report: DeliveryReport) -> None:
        if report.error is None:
            hop_times.note(tenant, sequence, "acked", now_us())

    return on_delivery


def offered(
    producer: LedgerProducer,
    visibility: Visibility,
    heads: dict[str, int],
    *,
    rate: int,
    duration_s: float,
    tag: str,
    hop_sample_every: int,
) -> None:
    """Send ``rate * duration_s`` posted transfers open-loop. ``hop_sample_every`` > 0 (the
    breakdown): one counted command in that many gets an entry in the hop times and a delivery
    report (its acked instant; a Python callback per command is driver CPU, which shares the
    cores with the pipeline, so only for the sampled ones)."""
    tenants = visibility.tenants
    hop_times = visibility.hop_times
    total = int(rate * duration_s)
    start_us = now_us() + 100_000
    warmup = int(rate * WARMUP_S)
    for index in range(total):
        due_us = start_us + index * 1_000_000 // rate
        delay_s = (due_us - now_us()) / 1e6
        if delay_s > 0:
            time.sleep(max(delay_s, SEND_SLEEP_MIN_S))
        tenant = tenants[index % len(tenants)]
        heads[tenant] += 1
        sequence = heads[tenant]
        on_delivery: DeliveryCallback | None = None
        if index >= warmup:
            with visibility.lock:
                visibility.due_us[(tenant, sequence)] = due_us
            if hop_sample_every and (index - warmup) % hop_sample_every == 0:
                with hop_times.lock:
                    hop_times.instants[(tenant, sequence)] = {"due": due_us}
                on_delivery = delivery_timer(hop_times, tenant, sequence)

        producer.send(
            Transfer(tenant_id=tenant, idempotency_key=f"{tag}-{index}", submitted_at_us=due_us,
                     transfer_id=f"{tag}-{index}", debit_account_id="funding",
                     credit_account_id=f"c{index % CUSTOMERS}", amount=1, currency="USD"),
            on_delivery=on_delivery,
        )  # fmt: skip
        producer.poll(0)
    producer.flush(60)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_latency(
    run: BenchRun,
    settings: Settings,
    *,
    rates: tuple[int, ...],
    duration_s: float,
    repetitions: int,
    breakdown: bool = False,
    hop_sample_every: int = HOP_SAMPLE_EVERY,
    extra_arguments: Sequence[str] = (),
) -> None:
    """``breakdown``: also time each hop (one counted command in ``hop_sample_every``) and each
    child's CPU (see the module docstring)."""
    assert math.gcd(hop_sample_every, TENANTS) == 1, "hop_sample_every must be coprime with 8"
    scoped = replace(settings, topic_prefix=grants.prefix("l"), partitions=PARTITIONS)
    grants.apply_topics(scoped)
    tenants = [f"lat-{uuid.uuid4().hex[:6]}-{n}" for n in range(TENANTS)]
    log_path = settings.home / "logs" / f"bench-run-{scoped.topic_prefix}log"
    hop_times = HopTimes()
    observer = EventObserver(scoped, hop_times) if breakdown else None
    try:
        with pipeline(scoped, log_path, extra_arguments) as process:
            visibility = Visibility(scoped, tenants, hop_times)
            visibility.thread.start()
            if observer is not None:
                observer.thread.start()
            producer = LedgerProducer(scoped, producer_settings=ProducerSettings(linger_ms=1))
            heads = open_accounts(producer, tenants, now_us())
            visibility.wait_for(dict(heads), READY_TIMEOUT_S)
            for repetition in range(repetitions):
                for rate in rates:
                    visibility.latencies_ms.clear()
                    hop_times.instants.clear()
                    children = pipeline_children(scoped)
                    cpu_before = [cpu_seconds(pid) for _, pid in children]
                    phase_before = PhaseCounters.read(scoped) if breakdown else None
                    offered(
                        producer, visibility, heads, rate=rate, duration_s=duration_s,
                        tag=f"r{repetition}-{rate}",
                        hop_sample_every=hop_sample_every if breakdown else 0,
                    )  # fmt: skip
                    visibility.wait_for(dict(heads), VISIBLE_TIMEOUT_S)
                    assert process.poll() is None, log_path.read_text()[-2000:]
                    for name, fraction in PERCENTILES:
                        run.add("latency", f"end-to-end {name} at {rate}/s", "ms",
                                percentile(visibility.latencies_ms, fraction))  # fmt: skip
                    if observer is not None and phase_before is not None:
                        add_hops(run, rate, hop_times.hops_ms(), hop_sample_every)
                        add_cpu(run, rate, int(rate * duration_s), children, cpu_before)
                        phase_before.add_phase(run, rate, int(rate * duration_s), scoped)
            record_pipeline_rss(run, scoped)
            visibility.stop.set()
            visibility.thread.join(10)
    finally:
        if observer is not None:
            observer.stop.set()
            observer.thread.join(10)
        delete_topics(scoped)


@dataclass(frozen=True)
class PhaseCounters:
    """What one rate's phase is measured against: the children's metrics, the machine's CPU
    times and the driver's own CPU, read before the phase (breakdown only)."""

    metrics: dict[str, dict[str, float]]  # role → summed samples
    machine_busy_s: float
    machine_total_s: float
    driver_cpu_s: float

    @classmethod
    def read(cls, settings: Settings) -> PhaseCounters:
        busy_s, total_s = machine_cpu_seconds()
        return cls(child_metrics(settings), busy_s, total_s, time.process_time())

    def add_phase(self, run: BenchRun, rate: int, commands: int, settings: Settings) -> None:
        """The phase's figures: this object is its start, now is its end."""
        after = PhaseCounters.read(settings)
        for figure, unit, role, sum_name, count_name, scale in PACING_SERIES:
            ended, started = after.metrics.get(role, {}), self.metrics.get(role, {})
            count = ended.get(count_name, 0.0) - started.get(count_name, 0.0)
            if count > 0:
                total = ended.get(sum_name, 0.0) - started.get(sum_name, 0.0)
                run.add("latency pacing", f"{figure} mean at {rate}/s", unit, total / count * scale)
        total_s = after.machine_total_s - self.machine_total_s
        if total_s > 0:
            busy = (after.machine_busy_s - self.machine_busy_s) / total_s
            run.add("latency cpu", f"machine CPU busy at {rate}/s ({os.cpu_count()} cores)",
                    "%", busy * 100)  # fmt: skip
        run.add("latency cpu", f"driver (SDK, pollers) CPU per command at {rate}/s", "µs",
                (after.driver_cpu_s - self.driver_cpu_s) / commands * 1e6)  # fmt: skip


def child_metrics(settings: Settings) -> dict[str, dict[str, float]]:
    """role → the summed samples of its first child's /metrics (none if it did not answer)."""
    state_path = settings.home / "run" / f"{settings.topic_prefix}pipeline.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, dict[str, float]] = {}
    for child in state.get("children", []):
        role, port = str(child.get("role", "")), child.get("metrics_port")
        if port and role not in found:
            samples = scrape(f"http://127.0.0.1:{int(port)}/metrics")
            if samples is not None:
                found[role] = samples
    return found


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of every core since boot, from /proc/stat's first line."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0
    ticks = [int(value) for value in first[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / ticks_per_s, sum(ticks) / ticks_per_s


def add_cpu(
    run: BenchRun,
    rate: int,
    commands: int,
    children: list[tuple[str, int]],
    cpu_before: list[float],
) -> None:
    """Each child's CPU time per offered command (its CPU over the phase / commands)."""
    for (role, pid), before in zip(children, cpu_before, strict=True):
        used_s = cpu_seconds(pid) - before
        run.add("latency cpu", f"{role} CPU per command at {rate}/s", "µs",
                used_s / commands * 1e6)  # fmt: skip


def add_hops(run: BenchRun, rate: int, hops: dict[str, list[float]], sample_every: int) -> None:
    for hop, durations in hops.items():
        if not durations:
            continue
        note = f"1 command in {sample_every} sampled ({len(durations):,} in the last repetition)"
        figures = [run.add("latency hop", f"{hop} mean at {rate}/s", "ms",
                           statistics.fmean(durations))]  # fmt: skip
        for name, fraction in PERCENTILES:
            figures.append(run.add("latency hop", f"{hop} {name} at {rate}/s", "ms",
                                   percentile(durations, fraction)))  # fmt: skip
        for figure in figures:
            figure.note = note


def pipeline_children(settings: Settings) -> list[tuple[str, int]]:
    """(role, pid) of every child ``streamledger run`` started, from its state file."""
    state_path = settings.home / "run" / f"{settings.topic_prefix}pipeline.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return []
    children = [(str(c.get("role", "child")), c.get("pid")) for c in state.get("children", [])]
    return [(role, int(pid)) for role, pid in children if pid]


def record_pipeline_rss(run: BenchRun, settings: Settings) -> None:
    for role, pid in pipeline_children(settings):
        run.add("memory", f"peak RSS: {role} under streamledger run",
                "MiB", peak_rss_bytes(pid) / 2**20)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_suite", description=__doc__)
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                        help="offered commands/s, comma-separated")  # fmt: skip
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--breakdown", action="store_true", help="time each hop too")
    parser.add_argument("--hop-sample-every", type=int, default=HOP_SAMPLE_EVERY,
                        help="with --breakdown: time 1 command in N per hop")  # fmt: skip
    parser.add_argument("--processor-arg", action="append", default=[])
    parser.add_argument("--projection-arg", action="append", default=[])
    arguments = parser.parse_args(argv)
    if arguments.hop_sample_every < 1 or math.gcd(arguments.hop_sample_every, TENANTS) != 1:
        parser.error(f"--hop-sample-every: a positive number coprime with the {TENANTS} tenants")
    rates = tuple(int(rate) for rate in arguments.rates.split(","))
    extra = [f"--processor-arg={flag}" for flag in arguments.processor_arg] + [
        f"--projection-arg={flag}" for flag in arguments.projection_arg
    ]
    if math.gcd(arguments.hop_sample_every, TENANTS) != 1:
        parser.error(f"--hop-sample-every must be coprime with the {TENANTS} tenants")
    if arguments.breakdown:
        print(f"breakdown: per-hop instants of 1 counted command in {arguments.hop_sample_every}"
              f" (a delivery report each); observer fetch.wait.max.ms {OBSERVER_FETCH_WAIT_MS}",
              flush=True)  # fmt: skip
    run = BenchRun(size="latency", seed=0, repetitions=arguments.repetitions)
    run_latency(
        run, load_settings(), rates=rates, duration_s=arguments.duration_s,
        repetitions=arguments.repetitions, breakdown=arguments.breakdown,
        hop_sample_every=arguments.hop_sample_every, extra_arguments=extra,
    )  # fmt: skip
    print(run.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
