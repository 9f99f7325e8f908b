"""The projection under faults and attacks, on the real broker and database: kill -9 and restart,
row-level security, a rebuild while readers read, and ``verify`` catching tampering and gaps."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from projections.queries import LedgerReader, reader_dsn
from projections.rebuild import rebuild
from projections.verify import verify
from schemas.codec import event_canonical_bytes
from schemas.model import TransferPosted
from streamledger.settings import Settings, environment_for
from tests.system.projection_checks import (
    assert_matches_model,
    event_count,
    project_until_caught_up,
    projection_for,
)
from workloads.projection_events import generate, produce_events

pytestmark = pytest.mark.system
SEED = 77_001
REPO_ROOT = Path(__file__).resolve().parents[2]
CATCH_UP_TIMEOUT_S = 180.0


def start_projection(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, **environment_for(settings)}
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "projections.query_cli",
                "project",
                "--no-metrics",
                "--batch-records-max",
                "300",
                "--batch-interval-ms",
                "50",
                "--consumer-group",
                f"{settings.topic_prefix}streamledger-projection-faults",  # the principal's groups
            ],
            cwd=REPO_ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def assignments(log: Path) -> int:
    """How many times a projection in ``log`` was assigned its partitions."""
    return log.read_text().count("streamledger.projection assigned")


@pytest.mark.slow
def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    projection_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    workload = generate(SEED, tenants=6, commands=6_000)
    size = 1_500
    chunks = [
        workload.events[start : start + size] for start in range(0, len(workload.events), size)
    ]
    log = tmp_path / "projection.log"
    for round_number, chunk in enumerate(chunks):
        produce_events(projection_settings, chunk, transactional_id=f"kill-test-{round_number}")
        before = event_count(projection_settings)
        process = start_projection(projection_settings, log)
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while event_count(projection_settings) == before:  # kill it while it is writing
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the projection made no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        assert process.poll() is None, log.read_text()[-3000:]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    joined_before = assignments(log)
    process = start_projection(projection_settings, log)
    try:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        # The last killed round may already have written everything; the restarted projection
        # must still have joined (and installed its SIGTERM handler) before it is stopped.
        while (
            event_count(projection_settings) < len(workload.events)
            or assignments(log) == joined_before
        ):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the restarted projection did not catch up"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert_matches_model(projection_settings, workload.expected)


def test_a_tenant_session_sees_no_other_tenants_rows(projection_settings: Settings) -> None:
    workload = generate(SEED + 1, tenants=2, commands=300)
    produce_events(projection_settings, workload.events, transactional_id="rls-test")
    project_until_caught_up(projection_settings, len(workload.events))
    mine, theirs = workload.tenants
    crafted = [
        "SELECT count(*) FROM ledger.{table} WHERE tenant_id = %(theirs)s",
        "SELECT count(*) FROM ledger.{table} WHERE tenant_id <> %(mine)s OR true",
        "SELECT count(*) FROM ledger.{table} t WHERE EXISTS"
        " (SELECT 1 FROM ledger.{table} u WHERE u.tenant_id = %(theirs)s)",
    ]
    tables = ("accounts", "balances", "entries", "transfers", "tenant_heads")
    with psycopg.connect(reader_dsn(projection_settings), autocommit=True) as conn:
        for table in tables:
            with conn.transaction():
                conn.execute("SELECT set_config('streamledger.tenant_id', %s, true)", (mine,))
                own = conn.execute(f"SELECT count(*) FROM ledger.{table}").fetchone()
                assert own is not None and own[0] > 0, table
                for statement in crafted:
                    row = conn.execute(
                        statement.format(table=table), {"mine": mine, "theirs": theirs}
                    ).fetchone()
                    assert row is not None
                    assert row[0] in (0, own[0]), (table, statement)
                    rows = conn.execute(f"SELECT DISTINCT tenant_id FROM ledger.{table}").fetchall()
                    assert rows == [(mine,)], (table, rows)
            with conn.transaction():  # no tenant set: nothing at all
                row = conn.execute(f"SELECT count(*) FROM ledger.{table}").fetchone()
                assert row == (0,), table
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SELECT * FROM ledger.projection_offsets")
        with pytest.raises(psycopg.Error), conn.transaction():
            conn.execute("SET LOCAL row_security = off")
            conn.execute("SELECT count(*) FROM ledger.balances").fetchone()
        with pytest.raises(psycopg.Error), conn.transaction():
            conn.execute("SELECT set_config('streamledger.tenant_id', %s, true)", (mine,))
            conn.execute("DELETE FROM ledger.balances WHERE tenant_id = %s", (mine,))


def test_rebuild_swaps_in_while_readers_keep_reading(projection_settings: Settings) -> None:
    workload = generate(SEED + 2, tenants=3, commands=3_000)
    produce_events(projection_settings, workload.events, transactional_id="rebuild-test")
    project_until_caught_up(projection_settings, len(workload.events))
    expected = {key: account.counters() for key, account in workload.expected.accounts.items()}
    keys = sorted(expected)
    stop = threading.Event()
    failures: list[str] = []
    reads = [0]

    def read_continuously() -> None:
        projection = projection_for(projection_settings, pool_size_max=2)
        with LedgerReader(reader_dsn(projection_settings), projection) as reader:
            rng = random.Random(SEED)
            while not stop.is_set():
                tenant, account = rng.choice(keys)
                try:
                    balance = reader.balance(tenant, account)
                except Exception as exc:  # noqa: BLE001 - any failure fails the test
                    failures.append(f"read failed: {exc!r}")
                    return
                if balance is None or balance.counters() != expected[(tenant, account)]:
                    failures.append(f"{tenant}/{account}: {balance}")
                reads[0] += 1

    readers = [threading.Thread(target=read_continuously) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        time.sleep(0.5)
        before = reads[0]
        report = rebuild(projection_settings, projection_for(projection_settings))
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert not failures, failures[:5]
    assert report.events == len(workload.events)
    assert reads[0] > before
    assert_matches_model(projection_settings, workload.expected)
    with psycopg.connect(projection_settings.database_dsn) as conn:
        schemas = {
            name
            for (name,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ledger%%'"
            )
        }
    assert schemas == {"ledger"}


def run_verify_command(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "projections.query_cli", "verify"],
        cwd=REPO_ROOT,
        env={**os.environ, **environment_for(settings)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_verify_passes_then_names_a_tampered_row_event_and_gap(
    projection_settings: Settings,
) -> None:
    workload = generate(SEED + 3, tenants=2, commands=400)
    produce_events(projection_settings, workload.events, transactional_id="verify-test")
    project_until_caught_up(projection_settings, len(workload.events))
    clean = run_verify_command(projection_settings)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "verify: ok" in clean.stdout

    # 1. a tampered row in PostgreSQL
    tenant = workload.tenants[0]
    with psycopg.connect(projection_settings.database_dsn) as conn:
        conn.execute(
            "UPDATE ledger.balances SET credits_posted = credits_posted + 1"
            " WHERE tenant_id = %s AND account_id = 'acct-1'",
            (tenant,),
        )
    tampered_row = run_verify_command(projection_settings)
    assert tampered_row.returncode == 1
    assert "PostgreSQL balance of 'acct-1'" in tampered_row.stdout

    # 2. a tampered event: re-produced with a changed amount (and a recomputed own hash)
    other = workload.tenants[1]
    original = next(
        e for e in workload.events if e.tenant_id == other and isinstance(e, TransferPosted)
    )
    changed = dataclasses.replace(original, amount=original.amount + 1)
    own_hash = hashlib.sha256(changed.prev_hash + event_canonical_bytes(changed)).digest()
    rehashed = dataclasses.replace(changed, hash=own_hash)
    produce_events(projection_settings, [rehashed], transactional_id="verify-tamper")
    report = verify(projection_settings, group=f"{projection_settings.topic_prefix}verify-2")
    problems = "\n".join(report.audits[other].problems)
    assert f"sequence repeat: {original.sequence}" in problems
    assert f"balances after sequence {original.sequence}" in problems

    # 3. a gap: a tenant whose sequence 3 never arrives
    gap_workload = generate(SEED + 4, tenants=1, commands=5)
    gap_tenant = gap_workload.tenants[0]
    produce_events(
        projection_settings,
        [e for e in gap_workload.events if e.sequence != 3],
        transactional_id="verify-gap",
    )
    gapped = run_verify_command(projection_settings)
    assert gapped.returncode == 1
    assert f"tenant {gap_tenant}" in gapped.stdout
    assert "sequence gap: 4 after 2" in gapped.stdout
