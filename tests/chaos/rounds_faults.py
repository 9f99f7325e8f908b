"""The process faults of one ``make chaos`` round, at seeded random moments while commands flow.

Kinds (``rounds_workload.FAULT_KINDS``; the record faults live in the workload):

- ``kill``: ``KILLS_MIN``+ ``kill -9`` of processors and projections (a third projections);
- ``broker``: ``kill -9`` of the round's broker, down ``DOWN_S``, started again;
- ``postgres``: PostgreSQL stopped (fast shutdown), down ``DOWN_S``, started again;
- ``api``: ``kill -9`` of the API child; it must answer ``/healthz`` again within
  ``API_BACK_TIMEOUT_S`` (the supervisor restarts it).

The driver runs in one thread, one fault after the other, so every fault is bounded by its own
timeouts and the whole by the round's. It acts only on processes of the round's own stack and of
the ``streamledger run`` under test (found in its state file), never on anything else.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from infra import kafka_broker, postgres_server
from pipeline.supervisor import API_ROLE, PROCESSOR_ROLE, PROJECTION_ROLE
from streamledger.settings import Settings
from tests.chaos.chaos_driver import kill_live_child

KILLS_MIN: Final = 5
DOWN_S: Final = (1.0, 3.0)
BROKER_EXIT_TIMEOUT_S: Final = 15.0
API_BACK_TIMEOUT_S: Final = 90.0
API_REQUEST_TIMEOUT_S: Final = 2.0
POLL_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class FaultPlan:
    kills: int
    kinds: frozenset[str]
    window_s: float  # faults happen at random moments in [0, window_s)


@dataclass(slots=True)
class FaultDriver:
    """Runs the plan in a thread; ``join`` waits, bounded, and reports what failed in it."""

    seed: int
    plan: FaultPlan
    state_file: Path
    settings: Settings  # the round's stack
    api_port: int
    done: Counter[str] = field(default_factory=Counter)  # fault -> times done
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # faults the pipeline did not survive
    killed_pids: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.problems.append(f"the fault driver did not finish in {timeout_s:g} s")

    def schedule(self) -> list[tuple[float, str]]:
        """(moment, fault) in time order; stack faults in the middle of the window."""
        chance = random.Random(self.seed)  # a reproducible schedule, not secrets
        window = self.plan.window_s
        moments: list[tuple[float, str]] = []
        if "kill" in self.plan.kinds:
            roles = [
                PROJECTION_ROLE if index % 3 == 0 else PROCESSOR_ROLE
                for index in range(self.plan.kills)
            ]
            moments += [(chance.uniform(0.05, 0.95) * window, role) for role in roles]
        for kind, low, high in (("broker", 0.2, 0.4), ("postgres", 0.5, 0.7), ("api", 0.1, 0.9)):
            if kind in self.plan.kinds:
                moments.append((chance.uniform(low, high) * window, kind))
        return sorted(moments)

    def _run(self) -> None:
        chance = random.Random(self.seed + 1)
        started = time.monotonic()
        try:
            for at, fault in self.schedule():
                time.sleep(max(at - (time.monotonic() - started), 0.0))
                self._one(chance, fault)
        except Exception as exc:  # noqa: BLE001 - a fault we could not inject is a finding
            self.problems.append(f"fault driver: {type(exc).__name__}: {exc}")
        finally:
            kafka_broker.start(self.settings)  # whatever happened, leave the stack running
            postgres_server.start(self.settings)

    def _one(self, chance: random.Random, fault: str) -> None:
        if fault in (PROCESSOR_ROLE, PROJECTION_ROLE):
            self._kill(chance, fault)
        elif fault == "broker":
            self._kill_broker(chance)
        elif fault == "postgres":
            self._restart_postgres(chance)
        else:
            self._kill_api()

    def _kill(self, chance: random.Random, role: str) -> None:
        victim = kill_live_child(self.state_file, role, chance, self.killed_pids)
        if victim is None:
            self.problems.append(f"no {role} was running to kill")
            return
        name, pid, killed = victim
        self.done[f"kill {role}"] += killed
        self.actions.append(f"kill -9 {name} (pid {pid})")

    def _kill_broker(self, chance: random.Random) -> None:
        process = kafka_broker.running_process(kafka_broker.KafkaPaths.of(self.settings))
        if process is None:
            self.problems.append("the broker was not running when its kill was due")
            return
        kafka_broker.signal_process(process, signal.SIGKILL)
        if not kafka_broker.wait_for_exit(process, BROKER_EXIT_TIMEOUT_S):
            self.problems.append(f"broker pid {process.pid} survived kill -9")
            return
        down_s = chance.uniform(*DOWN_S)
        time.sleep(down_s)
        began = time.monotonic()
        kafka_broker.start(self.settings)
        self.done["broker kill -9"] += 1
        self.actions.append(
            f"broker kill -9 (pid {process.pid}), down {down_s:.1f} s,"
            f" started in {time.monotonic() - began:.1f} s"
        )

    def _restart_postgres(self, chance: random.Random) -> None:
        postgres_server.stop(self.settings)
        down_s = chance.uniform(*DOWN_S)
        time.sleep(down_s)
        postgres_server.start(self.settings)
        self.done["postgres restart"] += 1
        self.actions.append(f"postgres stopped, down {down_s:.1f} s, started")

    def _kill_api(self) -> None:
        victim = kill_live_child(self.state_file, API_ROLE, random.Random(0), self.killed_pids)
        if victim is None:
            self.problems.append("the API was not running when its kill was due")
            return
        name, pid, killed = victim
        self.done["api kill -9"] += killed
        back_s = wait_for_api(self.api_port, API_BACK_TIMEOUT_S)
        if back_s is None:
            self.problems.append(
                f"the API did not answer /healthz {API_BACK_TIMEOUT_S:g} s after kill -9"
            )
            return
        self.actions.append(f"kill -9 {name} (pid {pid}), /healthz again after {back_s:.1f} s")


def wait_for_api(port: int, timeout_s: float) -> float | None:
    """Seconds until ``GET /healthz`` on 127.0.0.1:``port`` answers 200; None after timeout_s."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            with urllib.request.urlopen(  # always http://127.0.0.1
                f"http://127.0.0.1:{port}/healthz", timeout=API_REQUEST_TIMEOUT_S
            ) as response:
                if response.status == 200:
                    return time.monotonic() - began
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(POLL_S)
    return None
