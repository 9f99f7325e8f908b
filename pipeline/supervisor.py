"""``streamledger run``'s engine: start the pipeline's processes, keep them up, stop them cleanly.

The supervisor owns a fixed list of children (``ChildSpec``): by default N ``streamledger
process`` instances (stable instance ids ``p0``, ``p1``, … so a restarted instance fences its own
previous incarnation) and M ``streamledger project`` instances sharing one consumer group. Each
child gets its own metrics port, consecutive from ``settings.metrics_port``, and writes its
output to ``{home}/logs/<name>.log``.

One pass of the loop (``supervise_once``), top to bottom:

    reap children that exited → schedule a restart after the child's backoff
    → start children whose restart time has come, once their dependencies answer
    → every stall_check_interval_s: read each processor's loop heartbeat; restart a stalled one
    → write the state file

Stalls (decision 0023, ``pipeline/liveness.py``): a processor whose loop heartbeat has not moved
for ``stall_timeout_s`` gets SIGTERM, then SIGKILL ``stall_kill_after_s`` later; it then restarts
like a crashed child, and is counted in ``streamledger_supervisor_stalls_total``.

Dependencies (decision 0023, ``pipeline/dependencies.py``): the supervisor does not run Kafka or
PostgreSQL. A child is not started while one of its dependencies does not answer; the supervisor
waits (``dependency_wait_s_max``, 0 = forever) and the status line says for what.

Backoff: a child that crashes waits ``backoff_s_min``, doubling per consecutive crash up to
``backoff_s_max``; a child that stayed up ``healthy_after_s`` starts from the minimum again.

Shutdown (``stop``): SIGTERM every child at once, so each finishes its batch and commits or aborts
its open transaction (the processor) or its database transaction (the projection); wait at most
``shutdown_timeout_s``; SIGKILL what is left. Either way the ledger stays exactly-once: a killed
processor's open transaction is aborted by the broker, a killed projection's by PostgreSQL.

The state file ``{home}/run/pipeline.json`` names every child's pid, metrics port and log, so
other tools (the chaos suite, a Prometheus config, an operator) can find them.

Optional children (``RunSettings``): a periodic verifier (``verify --every-s``) on the next
metrics port, ``notifiers`` webhook dispatchers (``streamledger notify``, heartbeat-checked like
the processors and projections) on the ports after the supervisor's own, ``reconcilers``
matchers (``streamledger reconcile``) after them, with one reconciliation projection
(``streamledger reconcile project``, decision 0074) on the next port when there are any, and the
HTTP API
(``streamledger api``) on ``api_port``, which serves its own ``/metrics``. The local Prometheus
is not a child: it is a detached server that ``streamledger run --with-prometheus`` starts
before and stops after the supervisor (``infra/prometheus_server.py``). Only children with ``role``
``processor`` or ``projection`` are scraped for the status line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.dependencies import KAFKA, POSTGRESQL, DependencyWatch
from pipeline.liveness import (
    NOTIFY_HEARTBEAT,
    PROCESSOR_HEARTBEAT,
    PROJECTION_HEARTBEAT,
    Progress,
    is_stalled,
    observe,
    silent_s,
    started,
)
from pipeline.metrics_scrape import scrape
from pipeline.supervisor_metrics import SupervisorMetrics
from reconciliation.metrics import HEARTBEAT_SERIES as RECONCILE_HEARTBEAT
from reconciliation.metrics import PROJECTION_HEARTBEAT_SERIES as RECONCILE_PROJECTION_HEARTBEAT
from streamledger.errors import InfraError, SettingError
from streamledger.setting_fields import check_declared, decimal_limit, limit
from streamledger.settings import Settings, child_environment

LOG = logging.getLogger("streamledger.pipeline")

PROCESSOR_ROLE = "processor"
PROJECTION_ROLE = "projection"
VERIFIER_ROLE = "verifier"
API_ROLE = "api"
NOTIFY_ROLE = "notify"
RECONCILE_ROLE = "reconcile"
RECONCILE_PROJECTION_ROLE = "reconcile-projection"
STATE_FILE_NAME = "pipeline.json"
PROCESSES_MAX = 32  # per role; each is a Python process with its own Kafka clients
AUTO = "auto"


def usable_cores() -> int:
    """``--processors auto``: the cores this process may run on (its CPU affinity, so a
    container's or taskset's limit counts), at most ``PROCESSES_MAX``. One processor per core:
    each is one Python process, busy on one core at a time (decision 0080)."""
    return max(1, min(len(os.sched_getaffinity(0)), PROCESSES_MAX))


PR_SET_PDEATHSIG = 1  # linux/prctl.h
# What each role needs before it can start, and which heartbeat says it makes progress.
ROLE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    PROCESSOR_ROLE: (KAFKA,),
    PROJECTION_ROLE: (KAFKA, POSTGRESQL),
    VERIFIER_ROLE: (KAFKA, POSTGRESQL),
    API_ROLE: (POSTGRESQL,),
    NOTIFY_ROLE: (KAFKA, POSTGRESQL),
    RECONCILE_ROLE: (KAFKA,),
    RECONCILE_PROJECTION_ROLE: (KAFKA, POSTGRESQL),
}
ROLE_HEARTBEATS: dict[str, str] = {
    PROCESSOR_ROLE: PROCESSOR_HEARTBEAT,
    PROJECTION_ROLE: PROJECTION_HEARTBEAT,
    NOTIFY_ROLE: NOTIFY_HEARTBEAT,
    RECONCILE_ROLE: RECONCILE_HEARTBEAT,
    RECONCILE_PROJECTION_ROLE: RECONCILE_PROJECTION_HEARTBEAT,
}

HeartbeatReader = Callable[[str, str], float | None]  # (metrics url, series) -> value or None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    """The supervisor's limits: one frozen object, built once by the command. Each limit is
    declared once on its field: the flag of ``streamledger run``, its help and the check derive
    from it (decision 0035); ``__post_init__`` checks every value, however the object is built."""

    processors: int = field(
        default=2,
        metadata=limit(
            0,
            PROCESSES_MAX,
            "processes",
            "processor processes; auto: one per usable core",
            named_values=((AUTO, usable_cores),),
        ),
    )
    projections: int = field(
        default=1, metadata=limit(0, PROCESSES_MAX, "processes", "projection processes")
    )
    backoff_s_min: float = field(
        default=0.5,
        metadata=decimal_limit(0.01, 3_600.0, "s", "a crashed child's first restart delay"),
    )
    backoff_s_max: float = field(
        default=30.0,
        metadata=decimal_limit(
            0.01, 3_600.0, "s", "the restart delay doubles per crash up to this"
        ),
    )
    healthy_after_s: float = field(
        default=30.0,
        metadata=decimal_limit(
            0.01, 86_400.0, "s", "a child up this long restarts from backoff_s_min again"
        ),
    )
    # The processor itself gives its last batch shutdown_timeout_s (30 s by default).
    shutdown_timeout_s: float = field(
        default=40.0,
        metadata=decimal_limit(0.01, 3_600.0, "s", "after SIGTERM, SIGKILL what is left then"),
    )
    status_interval_s: float = field(
        default=5.0, metadata=decimal_limit(0.01, 3_600.0, "s", "how often the status line prints")
    )
    poll_interval_s: float = field(
        default=0.2,
        metadata=decimal_limit(0.01, 60.0, "s", "how often the supervisor looks at its children"),
    )
    processor_arguments: tuple[str, ...] = ()  # extra flags of `streamledger process`
    projection_arguments: tuple[str, ...] = ()  # extra flags of `streamledger project`
    verifier: bool = False  # `streamledger verify --every-s`, on the port after the projections
    verify_every_s: int = field(
        default=600, metadata=limit(1, 86_400, "s", "the supervised verifier runs this often")
    )
    # `streamledger notify` (webhook dispatchers, one consumer group), on the ports after the
    # supervisor's own, so the port plan of the other jobs (infra/prometheus_server.py) holds.
    notifiers: int = field(
        default=0,
        metadata=limit(0, PROCESSES_MAX, "processes", "webhook dispatcher processes (notify)"),
    )
    # `streamledger reconcile` (reconciliation matchers, one consumer group), after the notifiers
    reconcilers: int = field(
        default=0,
        metadata=limit(0, PROCESSES_MAX, "processes", "reconciliation matchers (reconcile)"),
    )
    api: bool = False  # `streamledger api`, serving (and exporting /metrics) on api_port
    api_port: int = field(
        default=8080, metadata=limit(1, 65_535, "port", "the supervised API's port")
    )
    # Decision 0023: more than the processor's slowest bounded step by its own accounting
    # (restore_timeout_s 120 s + a transaction), less than its own watchdog (300 s).
    stall_timeout_s: float = field(
        default=180.0,
        metadata=decimal_limit(
            1.0, 86_400.0, "s", "restart a processor whose loop heartbeat stood still this long"
        ),
    )
    stall_check_interval_s: float = field(
        default=5.0,
        metadata=decimal_limit(0.01, 600.0, "s", "how often the heartbeats are read"),
    )
    stall_kill_after_s: float = field(
        default=10.0,
        metadata=decimal_limit(0.0, 600.0, "s", "SIGKILL a stalled child this long after SIGTERM"),
    )
    # Decision 0023: 0 = wait for Kafka / PostgreSQL for as long as it takes, with a status line.
    dependency_wait_s_max: float = field(
        default=0.0,
        metadata=decimal_limit(
            0.0,
            86_400.0 * 30,
            "s",
            "give up when Kafka or PostgreSQL stays down this long (0 = wait forever)",
        ),
    )
    dependency_probe_interval_s: float = field(
        default=2.0,
        metadata=decimal_limit(0.01, 600.0, "s", "how often a missing dependency is asked"),
    )

    @property
    def verifiers(self) -> int:
        return 1 if self.verifier else 0

    def __post_init__(self) -> None:
        check_declared(self)
        if self.backoff_s_min > self.backoff_s_max:
            raise SettingError(
                "setting backoff_s_min (--backoff-s-min): must not exceed backoff_s_max"
                f" ({self.backoff_s_min:g} > {self.backoff_s_max:g})"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """One supervised process: how to start it and where it reports."""

    name: str
    role: str
    argv: tuple[str, ...]
    environment: dict[str, str]
    log_path: Path
    metrics_port: int | None = None

    @property
    def metrics_url(self) -> str | None:
        if self.metrics_port is None:
            return None
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@dataclass(slots=True)
class Child:
    """A ``ChildSpec`` and what happened to it so far."""

    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float = 0.0  # monotonic time of the next start while not running
    backoff_s: float = 0.0
    starts: int = 0
    crashes: list[int] = field(default_factory=list)  # exit codes of unexpected exits
    progress: Progress = field(default_factory=lambda: started(0.0))
    stalled_at: float | None = None  # set when the stall was detected and SIGTERM sent
    kill_at: float | None = None  # SIGKILL then, if it is still running
    stalls: int = 0
    waiting_for: tuple[str, ...] = ()  # dependencies that kept it from starting

    @property
    def up(self) -> bool:
        return self.running and self.stalled_at is None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None


def streamledger_argv(*arguments: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "streamledger.cli", *arguments)


def service_environment(settings: Settings, metrics_port: int | None) -> dict[str, str]:
    """A service's environment: ``child_environment`` plus its metrics port, unbuffered output."""
    environment = child_environment(settings)
    if metrics_port is not None:
        environment["STREAMLEDGER_METRICS_PORT"] = str(metrics_port)
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def logs_directory(settings: Settings) -> Path:
    return settings.home / "logs"


def state_path(settings: Settings) -> Path:
    return settings.home / "run" / f"{settings.topic_prefix}{STATE_FILE_NAME}"


def plan_children(settings: Settings, run: RunSettings) -> list[ChildSpec]:
    """The pipeline: processors, projections, then the verifier, on consecutive metrics ports
    (``docs/metrics.md``); the API serves its ``/metrics`` on its own port, ``api_port``."""
    logs = logs_directory(settings)
    port = settings.metrics_port
    planned: list[tuple[str, str, tuple[str, ...], int | None]] = []  # name, role, argv, port
    for index in range(run.processors):
        arguments = (
            "process", f"--instance-id=p{index}", f"--metrics-port={port}",
            *run.processor_arguments,
        )  # fmt: skip
        planned.append((f"processor-{index}", PROCESSOR_ROLE, arguments, port))
        port += 1
    for index in range(run.projections):
        arguments = ("project", *run.projection_arguments)
        planned.append((f"projection-{index}", PROJECTION_ROLE, arguments, port))
        port += 1
    if run.verifier:
        arguments = ("verify", f"--every-s={run.verify_every_s}", f"--metrics-port={port}")
        planned.append(("verifier", VERIFIER_ROLE, arguments, port))
        port += 1
    port += 1  # the supervisor's own /metrics (``supervisor_metrics_port``)
    for index in range(run.notifiers):
        arguments = ("notify",)  # its metrics port comes from STREAMLEDGER_METRICS_PORT
        planned.append((f"notify-{index}", NOTIFY_ROLE, arguments, port))
        port += 1
    for index in range(run.reconcilers):
        arguments = ("reconcile", f"--instance-id=r{index}", f"--metrics-port={port}")
        planned.append((f"reconcile-{index}", RECONCILE_ROLE, arguments, port))
        port += 1
    if run.reconcilers:  # one writer of the reconciliation tables (decision 0074)
        arguments = ("reconcile", "project", f"--metrics-port={port}")
        planned.append(("reconcile-projection", RECONCILE_PROJECTION_ROLE, arguments, port))
        port += 1
    if port - 1 > 65535:
        raise SettingError(f"setting metrics_port: ports up to {port - 1} do not exist")
    specs = [
        ChildSpec(
            name=name,
            role=role,
            argv=streamledger_argv(*arguments),
            environment=service_environment(settings, metrics_port),
            log_path=logs / f"{settings.topic_prefix}{name}.log",
            metrics_port=metrics_port,
        )
        for name, role, arguments, metrics_port in planned
    ]
    if run.api:
        specs.append(
            ChildSpec(
                name="api",
                role=API_ROLE,
                argv=streamledger_argv("api", f"--port={run.api_port}"),
                environment=service_environment(settings, None),
                log_path=logs / f"{settings.topic_prefix}api.log",
                metrics_port=run.api_port,
            )
        )
    return specs


def supervisor_metrics_port(settings: Settings, run: RunSettings) -> int:
    """The supervisor's own ``/metrics``: the port after the last planned child's."""
    return settings.metrics_port + run.processors + run.projections + run.verifiers


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervising thread dies (Linux only).

    A supervisor that is itself ``kill -9``-ed must not leave processors running unsupervised.
    """
    library = ctypes.util.find_library("c")
    if library is None:
        return
    ctypes.CDLL(library, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def read_heartbeat(url: str, series: str) -> float | None:
    """The child's heartbeat gauge, or None if it did not answer or does not export it."""
    samples = scrape(url)
    return None if samples is None else samples.get(series)


class Supervisor:
    """Starts, restarts and stops ``children``. Not thread-safe: one thread drives it.

    ``dependencies`` (None: start children without asking) says whether Kafka and PostgreSQL
    answer; ``heartbeat_reader`` reads a child's heartbeat; ``metrics`` counts what happened."""

    def __init__(
        self,
        settings: Settings,
        run: RunSettings,
        specs: Sequence[ChildSpec],
        *,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_reader: HeartbeatReader = read_heartbeat,
        dependencies: DependencyWatch | None = None,
        metrics: SupervisorMetrics | None = None,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise SettingError(f"child names must be unique: {names}")
        self.settings = settings
        self.run = run
        self.children = [Child(spec) for spec in specs]
        self.clock = clock
        self.heartbeat_reader = heartbeat_reader
        self.dependencies = dependencies
        self.metrics = metrics if metrics is not None else SupervisorMetrics(names)
        self.state_path = state_path(settings)
        self.next_stall_check = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> list[str]:
        """Start every child whose dependencies answer; the others wait (one line each)."""
        logs_directory(self.settings).mkdir(parents=True, exist_ok=True)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        now = self.clock()
        lines = [line for child in self.children if (line := self.start_when_ready(child, now))]
        self.next_stall_check = now + self.run.stall_check_interval_s
        self.write_state()
        return lines

    def spawn(self, child: Child) -> None:
        spec = child.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log:
            log.write(f"--- supervisor: starting {spec.name} ({' '.join(spec.argv)})\n".encode())
            log.flush()
            child.process = subprocess.Popen(
                spec.argv,
                env=spec.environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops them
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, before exec
            )
        child.started_at = self.clock()
        child.progress = started(child.started_at)
        child.stalled_at = child.kill_at = None
        child.starts += 1
        if child.starts > 1:
            self.metrics.restarts.labels(spec.name).inc()
        LOG.info("started %s pid %s", spec.name, child.process.pid)

    def start_when_ready(self, child: Child, now: float) -> str | None:
        """Start ``child`` if its dependencies answer; else note what it waits for. Returns a
        line when something an operator should see happened."""
        needs = ROLE_DEPENDENCIES.get(child.spec.role, ())
        missing = tuple(self.dependencies.missing(needs, now)) if self.dependencies else ()
        if missing:
            news = missing != child.waiting_for
            child.waiting_for = missing
            self.check_wait_bound(now)
            return self.waiting_line(child) if news else None
        waited, child.waiting_for = child.waiting_for, ()
        self.spawn(child)
        if waited:
            return f"started {child.spec.name}: {', '.join(waited)} answers again"
        return f"restarted {child.spec.name} (start #{child.starts})" if child.starts > 1 else None

    def waiting_line(self, child: Child) -> str:
        assert self.dependencies is not None
        down = self.dependencies.down()
        why = "; ".join(
            f"{name}: {down[name].problem}" for name in child.waiting_for if name in down
        )
        return (
            f"waiting for {', '.join(child.waiting_for)} before starting {child.spec.name} ({why})"
        )

    def check_wait_bound(self, now: float) -> None:
        """Give up (``InfraError``) once a dependency stayed down ``dependency_wait_s_max``."""
        if self.dependencies is None or self.run.dependency_wait_s_max <= 0:
            return
        for name, known in self.dependencies.down().items():
            assert known.down_since is not None
            if now - known.down_since >= self.run.dependency_wait_s_max:
                raise InfraError(
                    f"{name} did not answer for {self.run.dependency_wait_s_max:g} s"
                    f" (dependency_wait_s_max): {known.problem}"
                )

    def supervise_once(self) -> list[str]:
        """Reap exits, schedule and perform restarts, restart stalled children; returns one line
        per thing that happened."""
        now = self.clock()
        happened: list[str] = []
        changed = False
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                happened.append(self.schedule_restart(child, process.returncode, now))
                child.process = None
                changed = True
            elif process is None and now >= child.restart_at:
                line = self.start_when_ready(child, now)
                happened.extend([line] if line else [])
                changed = changed or child.process is not None
        stalls = self.check_progress(now)
        happened.extend(stalls)
        self.update_gauges()
        if changed or stalls:
            self.write_state()
        return happened

    def check_progress(self, now: float) -> list[str]:
        """SIGKILL what outlived its stall grace; every ``stall_check_interval_s``, read the
        heartbeat of each running child that has one and restart the stalled ones."""
        lines = [self.kill_stalled(child) for child in self.children if self.kill_due(child, now)]
        if now < self.next_stall_check:
            return lines
        self.next_stall_check = now + self.run.stall_check_interval_s
        for child in self.children:
            series = ROLE_HEARTBEATS.get(child.spec.role)
            url = child.spec.metrics_url
            if series is None or url is None or not child.up:
                continue
            child.progress = observe(child.progress, self.heartbeat_reader(url, series), now)
            if is_stalled(child.progress, self.clock(), self.run.stall_timeout_s):
                lines.append(self.terminate_stalled(child, self.clock()))
        return lines

    def kill_due(self, child: Child, now: float) -> bool:
        return child.kill_at is not None and now >= child.kill_at and child.running

    def terminate_stalled(self, child: Child, now: float) -> str:
        assert child.process is not None
        child.process.send_signal(signal.SIGTERM)
        child.stalled_at = now
        child.kill_at = now + self.run.stall_kill_after_s
        child.stalls += 1
        self.metrics.stalls.labels(child.spec.name).inc()
        return (
            f"{child.spec.name} stalled: no heartbeat for {silent_s(child.progress, now):.0f} s"
            f" (stall_timeout_s {self.run.stall_timeout_s:g}); sent SIGTERM, SIGKILL in"
            f" {self.run.stall_kill_after_s:g} s (stacks, if any, in {child.spec.log_path})"
        )

    def kill_stalled(self, child: Child) -> str:
        assert child.process is not None
        child.process.kill()
        child.kill_at = None
        return f"{child.spec.name} ignored SIGTERM after its stall; sent SIGKILL"

    def schedule_restart(self, child: Child, code: int, now: float) -> str:
        if now - child.started_at >= self.run.healthy_after_s:
            child.backoff_s = 0.0
        child.backoff_s = (
            self.run.backoff_s_min
            if child.backoff_s == 0.0
            else min(child.backoff_s * 2, self.run.backoff_s_max)
        )
        child.restart_at = now + child.backoff_s
        child.crashes.append(code)
        after = " after its stall" if child.stalled_at is not None else ""
        child.stalled_at = child.kill_at = None
        return (
            f"{child.spec.name} exited with {describe_exit(code)}{after};"
            f" restarting in {child.backoff_s:g} s (see {child.spec.log_path})"
        )

    def stop(self) -> list[str]:
        """SIGTERM all, wait at most ``shutdown_timeout_s``, SIGKILL the rest; one line each."""
        running = [child for child in self.children if child.running]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + self.run.shutdown_timeout_s
        lines: list[str] = []
        for child in running:
            assert child.process is not None
            try:
                code = child.process.wait(timeout=max(deadline - self.clock(), 0.0))
                lines.append(f"{child.spec.name} stopped ({describe_exit(code)})")
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
                lines.append(
                    f"{child.spec.name} did not stop within {self.run.shutdown_timeout_s:g} s;"
                    " killed (its open transaction is aborted by the broker or PostgreSQL)"
                )
        for child in self.children:
            child.process = None
        self.state_path.unlink(missing_ok=True)
        return lines

    # ------------------------------------------------------------------ what the status shows

    @property
    def restarts(self) -> int:
        return sum(max(child.starts - 1, 0) for child in self.children)

    @property
    def stalls(self) -> int:
        return sum(child.stalls for child in self.children)

    @property
    def running_count(self) -> int:
        return sum(1 for child in self.children if child.running)

    @property
    def up_count(self) -> int:
        """Running and not stalled: what the status line calls up."""
        return sum(1 for child in self.children if child.up)

    def stalled_names(self) -> list[str]:
        return [child.spec.name for child in self.children if child.stalled_at is not None]

    def waiting(self) -> dict[str, list[str]]:
        """Dependency → the children not started because it does not answer."""
        waiting: dict[str, list[str]] = {}
        for child in self.children:
            if child.process is None:
                for name in child.waiting_for:
                    waiting.setdefault(name, []).append(child.spec.name)
        return waiting

    def update_gauges(self) -> None:
        self.metrics.children_up.set(self.up_count)
        waiting = self.waiting()
        for dependency in (KAFKA, POSTGRESQL):
            self.metrics.waiting.labels(dependency).set(1 if dependency in waiting else 0)

    def child_state(self, child: Child) -> str:
        if child.stalled_at is not None:
            return "stalled"
        if child.running:
            return "up"
        return "waiting" if child.waiting_for else "restarting"

    def write_state(self) -> None:
        """Atomically rewrite the state file (a reader never sees half of it)."""
        state = {
            "supervisor_pid": os.getpid(),
            "children": [
                {
                    "name": child.spec.name,
                    "role": child.spec.role,
                    "pid": child.pid,
                    "state": self.child_state(child),
                    "metrics_port": child.spec.metrics_port,
                    "log": str(child.spec.log_path),
                    "starts": child.starts,
                    "stalls": child.stalls,
                }
                for child in self.children
            ],
        }
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.state_path)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def supervise(
    supervisor: Supervisor,
    stop: threading.Event,
    *,
    on_line: Callable[[str], None],
    on_tick: Callable[[], None] | None = None,
) -> list[str]:
    """Run ``supervisor`` until ``stop`` is set, then stop the children; returns the stop lines.

    ``on_line`` gets each restart, stall and dependency notice; ``on_tick`` runs once per poll
    (the status line). An ``InfraError`` (a dependency down longer than ``dependency_wait_s_max``)
    stops the children, then propagates.
    """
    try:
        for line in supervisor.start():
            on_line(line)
        while not stop.wait(supervisor.run.poll_interval_s):
            for line in supervisor.supervise_once():
                on_line(line)
            if on_tick is not None:
                on_tick()
    finally:
        lines = supervisor.stop()
    return lines


def read_state(path: Path) -> dict[str, object]:
    """The state file as written by ``write_state`` (tools and tests read it)."""
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
