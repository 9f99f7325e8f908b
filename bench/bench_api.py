"""HTTP API benchmark: balance reads over HTTP beside the same query straight on PostgreSQL, and
submit latency with wait-for-outcome.

    .venv/bin/python -m bench.bench_api [--seconds 5] [--ingest-rate 0] [--submits 300]

Uses the stack the settings point at (``STREAMLEDGER_*``; e.g. the test stack with
``STREAMLEDGER_HOME=.streamledger-test STREAMLEDGER_KAFKA_PORT=29092
STREAMLEDGER_POSTGRES_PORT=25432``), fresh topics and a fresh database, and runs the real
processor, projection and ``streamledger api`` (uvicorn, uvloop, httptools) as child processes,
exactly like ``tests/system/test_api.py``.

1. open accounts for a few tenants over HTTP, then send ``--submits`` transfers one at a time,
   each waiting for its outcome: submit latency p50/p99 (the processor's batch interval is 50 ms
   in this harness, which dominates);
2. optionally ingest ``--ingest-rate`` commands/s through the SDK in the background;
3. for 8 and 32 concurrent clients: ``GET /v1/accounts/{id}/balance`` over HTTP (a small C
   HTTP/1.1 client, ``bench/http_load.c``, one keep-alive connection per client, after a
   ``WARM_UP_S`` run that grows the API's pool to the clients) for ``--seconds``, then the
   same statement the API runs (``set_config`` + the balance SELECT in one round trip, reader
   role, RLS) straight on PostgreSQL with the same concurrency: p50/p95/p99 and requests/s,
   and the CPU per request of each side (this client; the API process and its PostgreSQL
   backends, or the direct run's backends): with closed-loop clients on a small machine the
   latency is mostly queueing for CPU, and this says whose.

The machine may be shared and has few cores: the load generator, the API, PostgreSQL, Kafka, the
processor and the projection all run on it. Compare figures of the same run only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg
from psycopg import AsyncClientCursor
from psycopg.conninfo import make_conninfo

from api.api_keys import token_digest
from api.reads import APPLICATION_NAME, BIND_REQUEST
from api.settings import API_PASSWORD, API_ROLE
from bench.processor_suite import cpu_seconds
from bench.results import BenchRun
from producers.sdk import LedgerProducer
from projections.queries import SELECT_BALANCE, SET_TENANT, reader_dsn
from schemas.model import Transfer
from streamledger.settings import Settings, load_settings
from workloads.api_stack import ApiStack, running_api_stack

TENANTS = ("bench-a", "bench-b", "bench-c", "bench-d")
ACCOUNTS_PER_TENANT = 20
CONCURRENCY = (8, 32)
PGBENCH = "pgbench"
PGBENCH_JOBS = 2  # pgbench threads: one per core of this machine
BENCH_CLIENTS = 8  # issue 17's figure: 8 clients on each side
BENCH_INGEST_RATE = 1_000  # transfers/s through the pipeline while make bench reads
BENCH_SUBMITS = 10
WARM_UP_S = 1.0  # HTTP reads before the measured ones: the API's pool grows to the clients
HTTP_LOAD_SOURCE = Path(__file__).resolve().parent / "http_load.c"
BUILD_DIRECTORY = Path(__file__).resolve().parent.parent / "build"
HTTP_LOAD_BUILD_TIMEOUT_S = 120


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(name: str, latencies_s: list[float], seconds: float) -> str:
    ms = [value * 1000 for value in latencies_s]
    return (
        f"{name:<34} n={len(ms):>7}  p50={percentile(ms, 0.50):6.2f} ms"
        f"  p95={percentile(ms, 0.95):6.2f} ms  p99={percentile(ms, 0.99):6.2f} ms"
        f"  mean={statistics.fmean(ms):6.2f} ms  {len(ms) / seconds:8.0f}/s"
    )


def account_ids() -> list[tuple[str, str]]:
    return [(t, f"acct-{i}") for t in TENANTS for i in range(ACCOUNTS_PER_TENANT)]


def set_up_and_submit(stack: ApiStack, submits: int) -> list[float]:
    """Open the accounts, then time ``submits`` transfers sent one by one with wait."""
    for tenant in TENANTS:
        with stack.client(tenant) as client:
            for _, account in account_ids()[:ACCOUNTS_PER_TENANT]:
                body = {"account_id": account, "currency": "USD", "asset_scale": 2}
                response = client.post(
                    "/v1/accounts", json=body, headers={"Idempotency-Key": f"open-{account}"}
                )
                assert response.status_code == 201, response.text
    rng = random.Random(7)
    latencies: list[float] = []
    clients = {tenant: stack.client(tenant) for tenant in TENANTS}
    try:
        for number in range(submits):
            tenant = rng.choice(TENANTS)
            debit, credit = rng.sample(range(ACCOUNTS_PER_TENANT), 2)
            body = {
                "transfer_id": f"s-{number}",
                "debit_account_id": f"acct-{debit}",
                "credit_account_id": f"acct-{credit}",
                "amount": rng.randint(1, 1000),
                "currency": "USD",
            }
            started = time.perf_counter()
            response = clients[tenant].post(
                "/v1/transfers", json=body, headers={"Idempotency-Key": f"s-{number}"}
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
    finally:
        for client in clients.values():
            client.close()
    return latencies


def ingest(settings: Settings, rate: int, stop: threading.Event) -> int:
    """Send ``rate`` transfers/s through the SDK until ``stop``; returns how many were sent."""
    rng = random.Random(11)
    sent = 0
    started = time.monotonic()
    with LedgerProducer(settings) as producer:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            for _ in range(due - sent):
                tenant = rng.choice(TENANTS)
                debit, credit = rng.sample(range(ACCOUNTS_PER_TENANT), 2)
                producer.send(
                    Transfer(
                        tenant_id=tenant,
                        idempotency_key=f"ingest-{sent}",
                        submitted_at_us=time.time_ns() // 1000,
                        transfer_id=f"i-{sent}",
                        debit_account_id=f"acct-{debit}",
                        credit_account_id=f"acct-{credit}",
                        amount=1,
                        currency="USD",
                    )
                )
                sent += 1
            producer.poll(0.005)
    return sent


def http_load_binary() -> Path:
    """``bench/http_load.c`` compiled with the machine's C compiler (``$CC``, else ``cc``) into
    ``build/http_load``, again whenever the source is newer than the binary (decision 0108)."""
    binary = BUILD_DIRECTORY / "http_load"
    if not binary.exists() or binary.stat().st_mtime < HTTP_LOAD_SOURCE.stat().st_mtime:
        BUILD_DIRECTORY.mkdir(exist_ok=True)
        compiler = os.environ.get("CC", "cc")
        command = [compiler, "-O2", "-pthread", "-o", str(binary), str(HTTP_LOAD_SOURCE)]
        subprocess.run(command, check=True, capture_output=True, timeout=HTTP_LOAD_BUILD_TIMEOUT_S)
    return binary


def http_reads(stack: ApiStack, clients: int, seconds: float) -> list[float]:
    """``GET /v1/accounts/{id}/balance`` by ``clients`` closed-loop HTTP/1.1 clients, one
    kept-alive connection each, for ``seconds``: ``bench/http_load.c`` (C, like pgbench on the
    other side; decision 0108), a random account per request. Each response's latency from the
    client's own log; every response must be a 200."""
    host, port = stack.base_url.removeprefix("http://").split(":")
    requests = b"".join(
        (
            f"GET /v1/accounts/{account}/balance HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {stack.keys[tenant]}\r\n\r\n"
        ).encode()
        for tenant, account in account_ids()
    )
    with tempfile.NamedTemporaryFile(prefix="bench-http-", suffix=".requests") as file:
        file.write(requests)
        file.flush()
        command = [str(http_load_binary()), host, port, str(clients), str(seconds), file.name]
        done = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=seconds + 60
        )
    latencies: list[float] = []
    for line in done.stdout.splitlines():
        status, microseconds = line.split()
        assert status == "200", line
        latencies.append(int(microseconds) / 1e6)
    return latencies


async def database_reads(
    dsn: str, clients: int, seconds: float, backend_cpu_s: list[float] | None = None
) -> list[float]:
    """The API's read statement straight on PostgreSQL; ``backend_cpu_s`` gets the CPU time
    the run's backends used (the server side of these reads)."""
    keys = account_ids()
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    statement = SET_TENANT + "; " + SELECT_BALANCE

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            pid = conn.info.backend_pid
            before = cpu_seconds(pid)
            while (started := time.perf_counter()) < deadline:
                tenant, account = rng.choice(keys)
                cursor = AsyncClientCursor(conn)
                await cursor.execute(statement, (tenant, tenant, account))
                cursor.nextset()
                rows = await cursor.fetchall()
                latencies.append(time.perf_counter() - started)
                assert rows, (tenant, account)
            if backend_cpu_s is not None:
                backend_cpu_s.append(cpu_seconds(pid) - before)

    await asyncio.gather(*(worker(seed) for seed in range(clients)))
    return latencies


def api_role_dsn(settings: Settings) -> str:
    """What the API connects as by default (``api.settings``: the API role's login)."""
    return make_conninfo(settings.database_dsn, user=API_ROLE, password=API_PASSWORD)


def pgbench_scripts(stack: ApiStack, directory: Path) -> list[Path]:
    """One pgbench script per account: the exact text the API sends for a balance read (its
    role, its key binding, its statement, parameters bound as literals by psycopg's client
    cursor, one simple-protocol query: pgbench's ``\\;`` keeps the two statements in one)."""
    scripts = []
    with psycopg.connect(api_role_dsn(stack.settings), autocommit=True) as conn:
        cursor = psycopg.ClientCursor(conn)
        for number, (tenant, account) in enumerate(account_ids()):
            digest = token_digest(stack.keys[tenant]).hex()
            bind = cursor.mogrify(BIND_REQUEST, (tenant, digest))
            select = cursor.mogrify(SELECT_BALANCE, (tenant, account))
            if number == 0:  # the statement sees the row as the API role with this binding
                cursor.execute(f"{bind}; {select}")
                assert cursor.nextset() and cursor.fetchall(), (tenant, account)
            script = directory / f"balance-{number}.sql"
            script.write_text(f"{bind} \\; {select};\n")
            scripts.append(script)
    return scripts


def pgbench_reads(stack: ApiStack, clients: int, seconds: float) -> list[float]:
    """The API's balance read run by pgbench (C, libpq, simple protocol, ``clients``
    connections) for ``seconds``: each transaction's latency from pgbench's own log."""
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as scratch:
        directory = Path(scratch)
        scripts = pgbench_scripts(stack, directory)
        command = [
            PGBENCH, "--no-vacuum", "--protocol=simple", f"--client={clients}",
            f"--jobs={PGBENCH_JOBS}", f"--time={max(1, round(seconds))}", "--log",
            f"--log-prefix={directory / 'latency'}",
            *(f"--file={script}" for script in scripts), api_role_dsn(stack.settings),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)
        return [
            int(line.split()[2]) / 1e6
            for log in directory.glob("latency.*")
            for line in log.read_text().splitlines()
        ]


def postgres_backends(dsn: str, application_name: str) -> list[int]:
    """Pids of the PostgreSQL backends serving ``application_name`` in this database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (application_name,),
        ).fetchall()
    return [pid for (pid,) in rows]


def own_cpu_s() -> float:
    """This process's CPU and its waited-for children's (the C HTTP client)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def measured(
    name: str,
    run: Callable[[], list[float]],
    seconds: float,
    server_pids: Callable[[], list[int]],
    *,
    extra_server_cpu_s: list[float] | None = None,
) -> list[float]:
    """Run one measurement; print its latencies and the CPU per request of each side: this
    client, and the server (``server_pids()``: the API and its PostgreSQL backends, asked
    before and after since the pool may grow; plus what the run put into
    ``extra_server_cpu_s``)."""
    client_before = own_cpu_s()
    servers_before = {pid: cpu_seconds(pid) for pid in server_pids()}
    latencies = run()
    requests = max(len(latencies), 1)
    client_us = (own_cpu_s() - client_before) / requests * 1e6
    servers_s = sum(cpu_seconds(pid) - servers_before.get(pid, 0.0) for pid in server_pids())
    servers_us = (servers_s + sum(extra_server_cpu_s or [])) / requests * 1e6
    print(describe(name, latencies, seconds))
    print(f"{'':<34} CPU per request: client {client_us:5.0f} µs, server {servers_us:5.0f} µs")
    return latencies


def run_api(run: BenchRun, settings: Settings, *, repetitions: int, seconds: float) -> None:
    """``make bench``'s API figures: the balance read by 8 clients over HTTP, then the same
    statement by pgbench with 8 clients, back to back in each repetition, while
    ``BENCH_INGEST_RATE`` transfers/s go through the whole pipeline; their p99s and the ratio
    (issue 17's target: HTTP p99 <= 2x pgbench's)."""
    logs = Path(tempfile.mkdtemp(prefix="bench-api-"))
    flags = ["--wait-timeout-ms=20000", f"--pool-size-max={max(CONCURRENCY)}"]
    with running_api_stack(settings, logs, TENANTS, flags) as stack:
        set_up_and_submit(stack, BENCH_SUBMITS)
        stop = threading.Event()
        feeder = threading.Thread(target=ingest, args=(stack.settings, BENCH_INGEST_RATE, stop))
        feeder.start()
        try:
            time.sleep(1.0)  # the accounts reach the projection; the ingest reaches its rate
            http_reads(stack, BENCH_CLIENTS, WARM_UP_S)
            for _ in range(repetitions):
                over_http = http_reads(stack, BENCH_CLIENTS, seconds)
                by_pgbench = pgbench_reads(stack, BENCH_CLIENTS, seconds)
                http_p99 = percentile(over_http, 0.99) * 1000
                pgbench_p99 = percentile(by_pgbench, 0.99) * 1000
                name = f"balance read, {BENCH_CLIENTS} clients, during ingest"
                run.add("api", f"{name}: HTTP p99", "ms", http_p99)
                run.add("api", f"{name}: pgbench p99", "ms", pgbench_p99)
                run.add("api", f"{name}: HTTP reads/s", "reads/s", len(over_http) / seconds)
                run.add("api", f"{name}: pgbench reads/s", "reads/s", len(by_pgbench) / seconds)
                run.add("ratio", "API HTTP p99 / pgbench p99 (target <= 2)", "x",
                        http_p99 / pgbench_p99)  # fmt: skip
        finally:
            stop.set()
            feeder.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per read measurement")
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--ingest-rate", type=int, default=0, help="background commands/s")
    arguments = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-api-"))
    flags = ["--wait-timeout-ms=20000", "--pool-size-max=32"]
    with running_api_stack(load_settings(), logs, TENANTS, flags) as stack:
        print(f"stack up: topics {stack.settings.topic_prefix}*, logs in {logs}")
        submit = set_up_and_submit(stack, arguments.submits)
        print(describe("submit + wait for outcome (HTTP)", submit, sum(submit)))
        stop = threading.Event()
        ingested: list[int] = []
        feeder = threading.Thread(
            target=lambda: ingested.append(ingest(stack.settings, arguments.ingest_rate, stop))
        )
        if arguments.ingest_rate:
            feeder.start()
            print(f"ingesting {arguments.ingest_rate} commands/s in the background")
        time.sleep(1.0)  # let the last accounts reach the projection
        dsn = reader_dsn(stack.settings)
        api_pid = stack.children[-1].process.pid
        seconds = arguments.seconds
        try:
            for clients in CONCURRENCY:
                http_reads(stack, clients, WARM_UP_S)
                over_http = measured(
                    f"balance over HTTP, {clients} clients",
                    partial(http_reads, stack, clients, seconds),
                    seconds,
                    lambda: [api_pid, *postgres_backends(dsn, APPLICATION_NAME)],
                )
                by_pgbench = pgbench_reads(stack, clients, seconds)
                print(describe(f"balance by pgbench, {clients} clients", by_pgbench, seconds))
                ratio = percentile(over_http, 0.99) / percentile(by_pgbench, 0.99)
                print(f"{'':<34} HTTP p99 / pgbench p99 = {ratio:.2f} (target <= 2)")
                backend_cpu_s: list[float] = []
                measured(
                    f"balance on PostgreSQL, {clients} clients",
                    partial(asyncio.run, database_reads(dsn, clients, seconds, backend_cpu_s)),
                    seconds,
                    list,
                    extra_server_cpu_s=backend_cpu_s,
                )
        finally:
            stop.set()
            if feeder.is_alive():
                feeder.join()
        if ingested:
            print(f"ingested {ingested[0]} commands in the background")


if __name__ == "__main__":
    main()
