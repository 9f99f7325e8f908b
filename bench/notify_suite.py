"""Webhook delivery: ``streamledger notify`` to one local receiver (issue 18's benchmark).

Against a fresh topic prefix and a fresh, migrated scratch database on the stack the settings
point at, one tenant, one endpoint subscribed to every event type, one receiver
(``bench.webhook_receiver`` in a process of its own, answering 204 at once, on 127.0.0.1 in
``PORT_FIRST..PORT_LAST``). Events are built by the pure core and produced straight into
``ledger.events`` (no processor: the dispatcher is what is measured).

- **latency**: at each of ``rates`` (1,000/s, the issue's target, and a lower rate where a
  loaded machine still keeps up), events produced open-loop for ``duration_s`` (event ``i`` is sent
  when due, late or not) by a producer with ``acks=all`` and no linger; an event counts as
  committed when its delivery report arrives (the broker has it: a read_committed reader can
  see it). Its latency is the receiver's arrival instant minus that instant, one clock (this
  process). The first ``WARMUP_S`` are not counted. p50/p99, and whether every event arrived.
- **saturation**: the dispatcher is stopped, a backlog of ``backlog`` events is produced, the
  dispatcher started again; deliveries/s = backlog / (last arrival - first arrival). Twice: with
  the default in-memory queue (1,000 per endpoint: most of a backlog spills to PostgreSQL and is
  read back, the path a real backlog takes) and with a queue that holds the whole backlog.
- **baseline**, same run: the receiver's raw rate from one connection of the dispatcher's own
  client (``notifications.transport.EndpointConnection``) posting a delivery's body one request
  at a time, from a process of its own like the dispatcher: the ceiling of one endpoint's
  in-order delivery on this machine, with no Kafka and no PostgreSQL. Ratio = saturation /
  baseline. For reference, the same with one ``httpx.AsyncClient`` connection (the
  dispatcher's client before decision 0066), over half as many requests.
- **CPU per delivery** of the dispatcher process at saturation (user + system, first arrival to
  last): the figure a shared, loaded machine distorts least.

Standalone, against whatever stack the ``STREAMLEDGER_*`` settings point at::

    python -m bench.notify_suite [--rates 250,1000] [--duration-s 8] [--backlog 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Producer

from bench.bench_projection import backend_cpu_s, build_events
from bench.processor_suite import REPO_ROOT, stop_process
from bench.results import BenchRun
from bench.webhook_receiver import ARRIVALS_PATH
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from notifications.payloads import event_body
from notifications.signing import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    new_secret,
    signature_header,
)
from notifications.transport import EndpointConnection
from schemas.codec import encode_event
from schemas.keys import command_key, event_key, partition_for
from schemas.model import Event
from schemas.topics import EVENTS_TOPIC
from streamledger.settings import Settings, child_environment, load_settings
from workloads.api_stack import drop_fresh, fresh_settings
from workloads.projection_events import produce_events

PORT_FIRST = 21_700  # this suite's receivers (helper I's range)
PORT_LAST = 21_799
ENDPOINT_ID = "we_00000000000be4c7"
WARMUP_S = 1.0
ARRIVAL_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 120.0
BASELINE_REQUESTS = 2_000
# the httpx.AsyncClient reference (no ratio uses it) at ~590 req/s: 2,000 requests took 3.4 s a
# repetition for a figure whose spread was 1 %; 1,000 are still a steady per-request cost
REFERENCE_REQUESTS = 1_000
ARRIVALS_POLL_S = 0.05
CONTROL_TIMEOUT_S = 10.0
PRODUCE_POLL_S = 0.0005
DEFAULT_RATES = (250, 1_000)
DEFAULT_DURATION_S = 8.0
DEFAULT_BACKLOG = 10_000
DISPATCHER_FLAGS = ("--no-metrics", "--commit-interval-ms=200", "--endpoints-refresh-ms=500")


@dataclass(frozen=True, slots=True)
class Shape:
    rates: tuple[int, ...]
    duration_s: float
    backlog: int


SIZES = {
    "small": Shape(rates=DEFAULT_RATES, duration_s=5.0, backlog=5_000),
    "full": Shape(rates=DEFAULT_RATES, duration_s=12.0, backlog=20_000),
}
INSERT_ENDPOINT = """
INSERT INTO streamledger_notify.webhook_endpoints
    (tenant_id, endpoint_id, url, event_types, secret, starts_after)
VALUES (%s, %s, %s, ARRAY['*'], %s, 0)
"""
PERCENTILES = (("p50", 0.50), ("p99", 0.99))


@dataclass
class Arrivals:
    """What the receiver got, mirrored from its process (``bench.webhook_receiver``): the first
    arrival instant (``time.time()``) per delivery id, and the counters."""

    secret: str
    control_url: str = ""
    first_at: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    bad_signatures: int = 0

    def refresh(self) -> None:
        """Take the arrivals the receiver noted since the last refresh."""
        query = f"{self.control_url}?from={len(self.first_at)}"
        with urllib.request.urlopen(query, timeout=CONTROL_TIMEOUT_S) as answer:
            state = json.load(answer)
        self.first_at.update((delivery_id, at) for delivery_id, at in state["arrivals"])
        self.requests = state["requests"]
        self.bad_signatures = state["bad_signatures"]

    def wait_for(self, delivery_ids: Sequence[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            self.refresh()
            if all(delivery_id in self.first_at for delivery_id in delivery_ids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(ARRIVALS_POLL_S)


@contextmanager
def running_receiver(arrivals: Arrivals) -> Iterator[str]:
    """``bench.webhook_receiver`` in a child process on a free port of the range; yields the
    URL the endpoint posts to (and points ``arrivals`` at its control path)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver", f"--port-first={PORT_FIRST}",
         f"--port-last={PORT_LAST}", f"--secret={arrivals.secret}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the webhook receiver did not start (exit {process.wait()})")
        base = url.rsplit("/", 1)[0]
        arrivals.control_url = f"{base}{ARRIVALS_PATH}"
        yield url
    finally:
        stop_process(process)


@dataclass
class Dispatcher:
    """``streamledger notify`` as a child process, started and stopped by the suite."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *flags: str) -> None:
        environment = child_environment(self.settings)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamledger.cli", "notify", *DISPATCHER_FLAGS, *flags],
                env=environment, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


class OpenLoopProducer:
    """Sends events when due; notes when each one's delivery report (committed) arrived."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(EVENTS_TOPIC)
        self.partitions = settings.partitions
        self.committed_at: dict[str, float] = {}
        self.producer = Producer(
            {**client_config(settings, ADMIN_PRINCIPAL), "acks": "all", "linger.ms": 0,
             "enable.idempotence": True}
        )  # fmt: skip

    def send(self, event: Event) -> None:
        delivery_id = event.event_id

        def on_delivery(error: object, _message: object) -> None:
            if error is None:
                self.committed_at[delivery_id] = time.time()

        self.producer.produce(
            self.topic,
            key=event_key(event.tenant_id, event.sequence),
            value=encode_event(event),
            partition=partition_for(command_key(event.tenant_id), self.partitions),
            on_delivery=on_delivery,
        )
        self.producer.poll(0)

    def run(self, events: Sequence[Event], rate: float) -> None:
        started = time.monotonic()
        for index, event in enumerate(events):
            due = started + index / rate
            while (wait_s := due - time.monotonic()) > 0:
                self.producer.poll(min(wait_s, PRODUCE_POLL_S))
            self.send(event)
        self.producer.flush(30)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def raw_rate(url: str, body: bytes, secret: str, requests: int, client: str) -> float:
    """Requests/s of one connection, one request at a time: the dispatcher's own client
    (``EndpointConnection``) or, for reference, ``httpx.AsyncClient`` (its client before
    decision 0066)."""
    if client == "httpx":
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=5.0) as pool:
            started = time.perf_counter()
            for index in range(requests):
                headers = {SIGNATURE_HEADER: signature_header(secret, int(time.time()), body),
                           DELIVERY_ID_HEADER: f"baseline:{index}"}  # fmt: skip
                async with pool.stream("POST", url, content=body, headers=headers) as response:
                    assert response.status_code == 204, response.status_code
            return requests / (time.perf_counter() - started)
    connection = EndpointConnection(url, connect_timeout_s=5.0, timeout_s=5.0, user_agent="bench")
    started = time.perf_counter()
    for index in range(requests):
        headers = ((SIGNATURE_HEADER, signature_header(secret, int(time.time()), body)),
                   (DELIVERY_ID_HEADER, f"baseline:{index}"))  # fmt: skip
        answer = await connection.post(body, headers)
        assert answer.status == 204, answer
    connection.close()
    return requests / (time.perf_counter() - started)


@dataclass
class Session:
    """One fresh stack scope: settings, the receiver's arrivals, the dispatcher, the events."""

    settings: Settings
    arrivals: Arrivals
    dispatcher: Dispatcher
    events: list[Event]
    cursor: int = 0
    producer: OpenLoopProducer | None = None  # made and warmed by the probe, then timed

    def take(self, count: int) -> list[Event]:
        taken = self.events[self.cursor : self.cursor + count]
        assert len(taken) == count, "the suite built too few events"
        self.cursor += count
        return taken

    def start_and_wait(self, *flags: str) -> None:
        """Start the dispatcher and wait until a probe event went through it."""
        self.dispatcher.start(*flags)
        probe = self.take(1)
        # The timed runs use this producer: its first send pays for the metadata and the
        # idempotent producer id (hundreds of ms), which a new producer would spend inside the
        # open loop, sending the first second's events in one burst.
        self.producer = OpenLoopProducer(self.settings)
        self.producer.run(probe, 1.0)
        if not self.arrivals.wait_for([probe[0].event_id], READY_TIMEOUT_S):
            raise RuntimeError(f"the dispatcher delivered nothing; see {self.dispatcher.log_path}")


def measure_latency(session: Session, rate: int, duration_s: float) -> tuple[list[float], int]:
    """Latencies (ms) of the counted events, and how many events never arrived."""
    events = session.take(int(rate * duration_s))
    producer = session.producer
    assert producer is not None, "start_and_wait makes the producer"
    producer.run(events, rate)
    delivery_ids = [event.event_id for event in events]
    session.arrivals.wait_for(delivery_ids, ARRIVAL_TIMEOUT_S)
    first_at = session.arrivals.first_at
    missing = sum(1 for delivery_id in delivery_ids if delivery_id not in first_at)
    counted = delivery_ids[int(rate * WARMUP_S) :]
    latencies_ms = [
        (first_at[delivery_id] - producer.committed_at[delivery_id]) * 1000
        for delivery_id in counted
        if delivery_id in first_at and delivery_id in producer.committed_at
    ]
    return latencies_ms, missing


@dataclass(frozen=True, slots=True)
class Saturation:
    deliveries_per_s: float
    cpu_ms_per_delivery: float  # the dispatcher process's user + system CPU, first → last
    missing: int


def measure_saturation(session: Session, backlog: int, flags: Sequence[str]) -> Saturation:
    """Deliveries/s through a restarted dispatcher over a backlog, its CPU per delivery, and
    how many never arrived."""
    session.dispatcher.stop()
    events = session.take(backlog)
    produce_events(session.settings, events, transactional_id=f"bench-notify-{time.time_ns()}")
    session.dispatcher.start(*flags)
    delivery_ids = [event.event_id for event in events]
    process = session.dispatcher.process
    assert process is not None
    session.arrivals.wait_for(delivery_ids[:1], READY_TIMEOUT_S)
    cpu_first_s = backend_cpu_s(process.pid)
    session.arrivals.wait_for(delivery_ids, ARRIVAL_TIMEOUT_S + backlog / 50)
    cpu_last_s = backend_cpu_s(process.pid)
    arrived = [session.arrivals.first_at.get(delivery_id) for delivery_id in delivery_ids]
    instants = [instant for instant in arrived if instant is not None]
    session.dispatcher.stop()
    if len(instants) < 2:
        return Saturation(0.0, float("nan"), backlog - len(instants))
    return Saturation(
        (len(instants) - 1) / (max(instants) - min(instants)),
        (cpu_last_s - cpu_first_s) * 1000 / (len(instants) - 1),
        backlog - len(instants),
    )


def raw_rate_in_child(url: str, secret: str, client: str) -> float:
    """``raw_rate`` from a process of its own, as the dispatcher is (not this one's GIL)."""
    finished = subprocess.run(
        [sys.executable, "-m", "bench.notify_suite", f"--baseline-url={url}",
         f"--baseline-secret={secret}", f"--baseline-client={client}"],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=ARRIVAL_TIMEOUT_S,
    )  # fmt: skip
    return float(finished.stdout.split()[-1])


def run_notify(
    run: BenchRun,
    settings: Settings,
    *,
    rates: Sequence[int] = DEFAULT_RATES,
    duration_s: float = DEFAULT_DURATION_S,
    backlog: int = DEFAULT_BACKLOG,
    repetitions: int = 1,
) -> None:
    """The suite's figures into ``run`` (group ``notify``); see the module docstring."""
    scoped = fresh_settings(settings)
    per_repetition = int(sum(rates) * duration_s) + 2 * backlog + 2
    events = build_events(per_repetition * repetitions + 8, tenants=1, accounts=4, seed=7)
    secret = new_secret()
    arrivals = Arrivals(secret)
    log_path = REPO_ROOT / ".bench-logs" / f"notify-{time.strftime('%Y%m%dT%H%M%S')}.log"
    session = Session(scoped, arrivals, Dispatcher(scoped, log_path), events)
    try:
        with running_receiver(arrivals) as url:
            with psycopg.connect(scoped.database_dsn, autocommit=True) as conn:
                conn.execute(INSERT_ENDPOINT, (events[0].tenant_id, ENDPOINT_ID, url, secret))
            for _ in range(repetitions):
                run_repetition(run, session, url, rates=rates, duration_s=duration_s,
                               backlog=backlog)  # fmt: skip
    finally:
        session.dispatcher.stop()
        drop_fresh(scoped)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    run.findings.append(f"notify suite: load average (1, 5, 15 min) at its end: {load}")


def run_repetition(
    run: BenchRun,
    session: Session,
    url: str,
    *,
    rates: Sequence[int],
    duration_s: float,
    backlog: int,
) -> None:
    baseline = raw_rate_in_child(url, session.arrivals.secret, "h11")
    run.add("notify", "receiver raw rate, one connection (baseline)", "req/s", baseline)
    reference = raw_rate_in_child(url, session.arrivals.secret, "httpx")
    run.add("notify", "receiver raw rate, one httpx.AsyncClient connection", "req/s", reference)
    session.start_and_wait()
    for rate in rates:
        latencies_ms, missing = measure_latency(session, rate, duration_s)
        for label, fraction in PERCENTILES:
            figure = run.add(
                "notify", f"webhook latency {label} at {rate:,}/s (committed → 2xx)", "ms",
                percentile(latencies_ms, fraction) if latencies_ms else float("nan"),
            )  # fmt: skip
            figure.correct = missing == 0 and session.arrivals.bad_signatures == 0
            figure.note = "" if missing == 0 else f"{missing} never arrived"
    queue_flag = f"--queue-deliveries-max={max(backlog, 1_000)}"
    for name, flags in (("default queue: backlog spills", ()), ("queue holds it", (queue_flag,))):
        saturation = measure_saturation(session, backlog, flags)
        correct = saturation.missing == 0
        run.add("notify", f"deliveries/s at saturation ({name})", "deliveries/s",
                saturation.deliveries_per_s).correct = correct  # fmt: skip
        run.add("notify", f"dispatcher CPU per delivery ({name})", "ms",
                saturation.cpu_ms_per_delivery).correct = correct  # fmt: skip
        run.add("ratio", f"saturation ({name}) / receiver raw rate", "x",
                saturation.deliveries_per_s / baseline).correct = correct  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify_suite", description=__doc__)
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)))
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S)
    parser.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--baseline-url", help=argparse.SUPPRESS)  # raw_rate_in_child
    parser.add_argument("--baseline-secret", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-client", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.baseline_url:
        body = event_body(build_events(5, tenants=1, accounts=4, seed=7)[-1])
        secret = arguments.baseline_secret
        client = arguments.baseline_client
        url = arguments.baseline_url
        requests = REFERENCE_REQUESTS if client == "httpx" else BASELINE_REQUESTS
        print(asyncio.run(raw_rate(url, body, secret, requests, client)))
        return 0
    run = BenchRun(size="notify", seed=7, repetitions=arguments.repetitions)
    run_notify(
        run, load_settings(), rates=[int(rate) for rate in arguments.rates.split(",")],
        duration_s=arguments.duration_s,
        backlog=arguments.backlog, repetitions=arguments.repetitions,
    )  # fmt: skip
    print(run.table())
    for finding in run.findings:
        print(f"finding: {finding}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
