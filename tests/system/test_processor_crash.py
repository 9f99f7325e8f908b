"""Crash tests: ``kill -9`` (and SIGSTOP, a zombie) of real processor processes mid-run.

Commands keep arriving while processors die at seeded random moments and are restarted. At the
end the topics must equal the reference fold: every command exactly one outcome, no event
duplicated or missing, gapless per-tenant sequences and hash chains, balances equal to the fold.
Set STREAMLEDGER_CRASH_SEED to replay a run; the seed is printed either way.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from schemas.model import Command
from streamledger.settings import Settings
from tests.system.ledger_reference import ReferenceLedger
from tests.system.ledger_workload import workload
from tests.system.processor_harness import (
    ProcessorProcess,
    assert_outputs_match,
    produce_commands,
    wait_until_consumed,
)

pytestmark = [pytest.mark.system, pytest.mark.slow]
CHUNKS = 30
CHUNK_PAUSE_S = 0.2  # commands keep arriving for about CHUNKS x CHUNK_PAUSE_S
FEED_JOIN_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 90.0
# A paused instance must stay away longer than the session timeout (6 s in the harness) so the
# group moves its partitions, and its open transaction must outlive the transaction timeout.
ZOMBIE_PAUSE_S = 12.0
STARTUP_TIMEOUT_S = 60.0  # a processor child starting, restoring: seconds on a loaded machine
RESTORED = "restored partition"


def crash_seed() -> int:
    seed = int(os.environ.get("STREAMLEDGER_CRASH_SEED") or random.SystemRandom().randrange(10**6))
    print(f"crash seed: {seed} (replay with STREAMLEDGER_CRASH_SEED={seed})")
    return seed


class Feeder:
    """Writes the commands in chunks from a thread, so processors die while work arrives."""

    def __init__(self, settings: Settings, commands: list[Command]) -> None:
        size = max(1, len(commands) // CHUNKS)
        chunks = [commands[i : i + size] for i in range(0, len(commands), size)]
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._feed, args=(settings, chunks), daemon=True)
        self.thread.start()

    def _feed(self, settings: Settings, chunks: list[list[Command]]) -> None:
        try:
            for chunk in chunks:
                produce_commands(settings, chunk)
                time.sleep(CHUNK_PAUSE_S)
        except Exception as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)

    def join(self) -> None:
        self.thread.join(FEED_JOIN_TIMEOUT_S)
        assert not self.thread.is_alive(), "feeding commands did not finish in time"
        assert not self.errors, self.errors


def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    seed = crash_seed()
    chance = random.Random(seed)
    commands = workload(seed=seed, tenants=6, commands_per_tenant=400)
    feeder = Feeder(ledger_settings, commands)
    processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    for _ in range(4):
        processor.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        time.sleep(chance.uniform(0.05, 1.0))
        processor.kill()
        processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    # the last one too: when the one before had committed everything, the wait below returned
    # at once and stop() met a process still importing, without its SIGTERM handler (-15)
    processor.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
    feeder.join()
    try:
        wait_until_consumed(ledger_settings, FINISH_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()
    assert_outputs_match(ledger_settings, ReferenceLedger().fold(commands))


def test_two_instances_a_zombie_and_a_kill_9(ledger_settings: Settings, tmp_path: Path) -> None:
    """Instance a pauses (SIGSTOP) long enough to lose its partitions, then wakes up as a
    zombie that must be fenced; later instance b is killed mid-run and a takes over."""
    seed = crash_seed()
    chance = random.Random(seed)
    commands = workload(seed=seed, tenants=8, commands_per_tenant=250)
    feeder = Feeder(ledger_settings, commands)
    first = ProcessorProcess(ledger_settings, "a", tmp_path)
    second = ProcessorProcess(ledger_settings, "b", tmp_path)
    try:
        first.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        second.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        time.sleep(chance.uniform(0.2, 1.0))
        first.process.send_signal(signal.SIGSTOP)
        time.sleep(ZOMBIE_PAUSE_S)
        first.process.send_signal(signal.SIGCONT)
        first.wait_for_log("lost partitions", STARTUP_TIMEOUT_S)  # the zombie noticed
        time.sleep(chance.uniform(0.5, 2.0))
        second.kill()
        feeder.join()
        second = ProcessorProcess(ledger_settings, "b", tmp_path)
        second.wait_for_log("starting", STARTUP_TIMEOUT_S)  # signal handlers are in place
        wait_until_consumed(ledger_settings, FINISH_TIMEOUT_S, [first, second])
    finally:
        first.process.send_signal(signal.SIGCONT)
        codes = (first.stop(), second.stop())
    assert codes == (0, 0), first.log() + second.log()
    assert_outputs_match(ledger_settings, ReferenceLedger().fold(commands))
