"""The chaos driver: ``kill -9`` of random pipeline processes at random times, one broker restart.

It finds the processes in the state file ``streamledger run`` writes (``pipeline.supervisor``),
so it kills exactly the children of the supervisor under test and nothing else. Every choice
comes from one ``random.Random(seed)``; what it did is kept in ``actions`` for the report.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra import kafka_broker
from pipeline.supervisor import PROCESSOR_ROLE, PROJECTION_ROLE, read_state
from streamledger.settings import Settings

BROKER_DOWN_S = (1.0, 3.0)  # how long the broker stays stopped
VICTIM_WAIT_S = 20.0  # all children of a role restarting (backoff): wait this long for one


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    kills: int  # kill -9 of a processor or projection process (a third of them projections)
    broker_restarts: int  # 0 or 1: stop + start of the shared test broker
    window_s: float  # actions happen at random times in [0, window_s)


@dataclass(slots=True)
class ChaosDriver:
    """Runs ``plan`` in a thread; ``join`` waits and re-raises what went wrong in it."""

    seed: int
    plan: ChaosPlan
    state_file: Path
    broker_settings: Settings
    actions: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    killed: dict[str, int] = field(default_factory=dict)  # role -> kills
    killed_pids: list[int] = field(default_factory=list)  # never "kill" a reaped-late pid twice
    broker_restarted: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the chaos driver did not finish in time"
        assert not self.errors, self.errors

    def _schedule(self) -> list[tuple[float, str]]:
        """(time, action): kills alternate projection/processor in a seeded order, so every
        run kills both kinds (processors twice as often: there are two of them)."""
        chance = random.Random(self.seed)
        roles = [
            PROJECTION_ROLE if index % 3 == 0 else PROCESSOR_ROLE
            for index in range(self.plan.kills)
        ]
        chance.shuffle(roles)
        moments = [(chance.uniform(0, self.plan.window_s), role) for role in roles]
        moments += [
            (chance.uniform(0.2, 0.7) * self.plan.window_s, "broker")
            for _ in range(self.plan.broker_restarts)
        ]
        return sorted(moments)

    def _run(self) -> None:
        chance = random.Random(self.seed + 1)
        started = time.monotonic()
        try:
            for at, action in self._schedule():
                time.sleep(max(at - (time.monotonic() - started), 0.0))
                if action == "broker":
                    self._restart_broker(chance)
                else:
                    self._kill_one(chance, action)
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self.errors.append(exc)
        finally:
            kafka_broker.start(self.broker_settings)  # whatever happened, leave it running

    def _kill_one(self, chance: random.Random, role: str) -> None:
        victim = kill_live_child(self.state_file, role, chance, self.killed_pids)
        if victim is None:
            self.actions.append(f"kill: no {role} came back within {VICTIM_WAIT_S:g} s")
            return
        name, pid, killed = victim
        if killed:
            self.killed[role] = self.killed.get(role, 0) + 1
        self.actions.append(f"kill -9 {name} (pid {pid})")

    def _restart_broker(self, chance: random.Random) -> None:
        kafka_broker.stop(self.broker_settings)
        down_s = chance.uniform(*BROKER_DOWN_S)
        time.sleep(down_s)
        kafka_broker.start(self.broker_settings)
        self.broker_restarted += 1
        self.actions.append(f"broker restarted (down {down_s:.1f} s)")


def kill_live_child(
    state_file: Path, role: str, chance: random.Random, spared_pids: list[int]
) -> tuple[str, int, bool] | None:
    """``kill -9`` a live child of ``role`` of the supervisor that writes ``state_file``.

    Waits (at most ``VICTIM_WAIT_S``) while all of them are restarting; ``None`` if none came
    back. Returns (name, pid, killed): ``killed`` is False if it died on its own meanwhile.
    The victim's pid joins ``spared_pids`` so a pid reaped late is never "killed" twice.
    """
    deadline = time.monotonic() + VICTIM_WAIT_S
    while True:
        children = [
            child
            for child in read_state(state_file)["children"]  # type: ignore[attr-defined]
            if child["role"] == role and child["pid"] not in (None, *spared_pids)
        ]
        if children:
            break
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
    victim = chance.choice(children)
    spared_pids.append(victim["pid"])
    try:
        os.kill(victim["pid"], signal.SIGKILL)
    except ProcessLookupError:  # it died on its own meanwhile
        return victim["name"], victim["pid"], False
    return victim["name"], victim["pid"], True
