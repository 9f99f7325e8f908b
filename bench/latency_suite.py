"""End-to-end latency: a command's ``submitted_at`` → its event visible in PostgreSQL, at fixed
offered rates, through the pipeline exactly as ``streamledger run`` starts it.

The driver is open-loop: command ``i`` is due at ``start + i / rate`` and carries that instant as
``submitted_at_us`` (a late send still counts from when it was due: no coordinated omission).
Every command is a posted transfer that must succeed, so each tenant's next event sequence is
known in advance. A poller reads ``tenant_heads`` every ``POLL_INTERVAL_S``; when a tenant's
head reaches a sequence, every command up to it is visible, and its latency is now - due. The
first ``WARMUP_S`` of each run are not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.bench_processor import delete_topics
from bench.processor_suite import REPO_ROOT, peak_rss_bytes, stop_process
from bench.results import BenchRun
from infra import topics
from producers.sdk import LedgerProducer, ProducerSettings
from schemas.model import OpenAccount, Transfer
from streamledger.settings import Settings, environment_for, replace

TENANTS = 8
CUSTOMERS = 4
POLL_INTERVAL_S = 0.002
WARMUP_S = 1.0
READY_TIMEOUT_S = 180.0
PARTITIONS = 4
HEADS = "SELECT tenant_id, last_sequence FROM ledger.tenant_heads WHERE tenant_id = ANY(%s)"


@contextmanager
def pipeline(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``streamledger run --processors 1 --projections 1`` on its own topic prefix."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEDGER_")}
    environment.update(environment_for(settings))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamledger.cli", "run", "--processors=1",
             "--projections=1", "--status-interval-s=60"],
            env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )  # fmt: skip
        try:
            yield process
        finally:
            stop_process(process)


class Visibility:
    """Polls tenant heads; records latency for every (tenant, sequence) that became visible."""

    def __init__(self, settings: Settings, tenants: list[str]) -> None:
        self.settings = settings
        self.tenants = tenants
        self.due_us: dict[tuple[str, int], int] = {}
        self.seen: dict[str, int] = dict.fromkeys(tenants, 0)
        self.latencies_ms: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        with psycopg.connect(self.settings.database_dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(HEADS, (self.tenants,)).fetchall()
                now_us = time.time_ns() // 1000
                with self.lock:
                    for tenant_id, head in rows:
                        for sequence in range(self.seen[tenant_id] + 1, head + 1):
                            due = self.due_us.pop((tenant_id, sequence), None)
                            if due is not None:
                                self.latencies_ms.append((now_us - due) / 1000)
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


def open_accounts(producer: LedgerProducer, tenants: list[str], now_us: int) -> dict[str, int]:
    for tenant in tenants:
        names = ["funding"] + [f"c{n}" for n in range(CUSTOMERS)]
        for number, name in enumerate(names):
            producer.send(
                OpenAccount(tenant_id=tenant, idempotency_key=f"open-{number}",
                            submitted_at_us=now_us, account_id=name, currency="USD",
                            asset_scale=2)
            )  # fmt: skip
    producer.flush(60)
    return dict.fromkeys(tenants, CUSTOMERS + 1)


def offered(
    producer: LedgerProducer,
    visibility: Visibility,
    heads: dict[str, int],
    *,
    rate: int,
    duration_s: float,
    tag: str,
) -> None:
    tenants = visibility.tenants
    total = int(rate * duration_s)
    start_us = time.time_ns() // 1000 + 100_000
    warmup = int(rate * WARMUP_S)
    for index in range(total):
        due_us = start_us + index * 1_000_000 // rate
        delay_s = (due_us - time.time_ns() // 1000) / 1e6
        if delay_s > 0:
            time.sleep(delay_s)
        tenant = tenants[index % len(tenants)]
        heads[tenant] += 1
        if index >= warmup:
            with visibility.lock:
                visibility.due_us[(tenant, heads[tenant])] = due_us
        producer.send(
            Transfer(tenant_id=tenant, idempotency_key=f"{tag}-{index}", submitted_at_us=due_us,
                     transfer_id=f"{tag}-{index}", debit_account_id="funding",
                     credit_account_id=f"c{index % CUSTOMERS}", amount=1, currency="USD")
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
) -> None:
    scoped = replace(settings, topic_prefix=f"l{uuid.uuid4().hex[:8]}.", partitions=PARTITIONS)
    topics.apply(scoped)
    tenants = [f"lat-{uuid.uuid4().hex[:6]}-{n}" for n in range(TENANTS)]
    log_path = settings.home / "logs" / f"bench-run-{scoped.topic_prefix}log"
    try:
        with pipeline(scoped, log_path) as process:
            visibility = Visibility(scoped, tenants)
            visibility.thread.start()
            producer = LedgerProducer(scoped, producer_settings=ProducerSettings(linger_ms=1))
            heads = open_accounts(producer, tenants, time.time_ns() // 1000)
            visibility.wait_for(dict(heads), READY_TIMEOUT_S)
            for repetition in range(repetitions):
                for rate in rates:
                    visibility.latencies_ms.clear()
                    offered(
                        producer, visibility, heads, rate=rate, duration_s=duration_s,
                        tag=f"r{repetition}-{rate}",
                    )  # fmt: skip
                    visibility.wait_for(dict(heads), 120)
                    measured = list(visibility.latencies_ms)
                    assert process.poll() is None, log_path.read_text()[-2000:]
                    for name, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                        run.add("latency", f"end-to-end {name} at {rate}/s", "ms",
                                percentile(measured, fraction))  # fmt: skip
            record_pipeline_rss(run, scoped)
            visibility.stop.set()
            visibility.thread.join(10)
    finally:
        delete_topics(scoped)


def record_pipeline_rss(run: BenchRun, settings: Settings) -> None:
    state_path = settings.home / "run" / f"{settings.topic_prefix}pipeline.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return
    for child in state.get("children", []):
        pid = child.get("pid")
        if pid:
            run.add("memory", f"peak RSS: {child.get('role', 'child')} under streamledger run",
                    "MiB", peak_rss_bytes(int(pid)) / 2**20)  # fmt: skip
