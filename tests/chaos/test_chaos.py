"""Chaos: a seeded loadgen workload through ``streamledger run`` while processes die.

Per seed: ``streamledger run`` (2 processors, 1 projection) on fresh topics and a fresh database;
a feeder thread sends ``producers.loadgen``'s workload (duplicates, key reuse, overdrafts,
unknown accounts, reversals, pending transfers posted and voided, fee splits, payouts and FX
transactions) plus poison records; meanwhile the chaos driver ``kill -9``s random processor
and projection processes at random times and restarts the (shared, session-wide) test broker
once. Then, after catch-up, an independent
reference fold (``tests/system/ledger_reference.py``) must equal everything:

- every command has exactly one outcome, as the fold decides it;
- events are gapless per tenant with an intact hash chain, none duplicated, none missing;
- ``ledger.balances`` and PostgreSQL hold the fold's balances; ``verify`` is clean;
- the DLQ holds exactly the poison records;
- ``streamledger run`` stops cleanly on SIGTERM (every child exits 0).

Sizes: ``STREAMLEDGER_CHAOS_COMMANDS`` (default 1500 per seed; CI size) and
``STREAMLEDGER_CHAOS_KILLS`` (default 4); ``STREAMLEDGER_CHAOS_SEEDS=7,8`` replays given seeds.
The API that ``streamledger run`` starts listens on ``STREAMLEDGER_TEST_API_PORT`` (8080).
This is the CI-sized run; ``make chaos`` (``tests/chaos/rounds.py``) is the big one.
Pending expiry is left out: when a short timeout passes depends on wall-clock record
timestamps, which a fold of the commands cannot know.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from pipeline.demo import projected_heads
from pipeline.supervisor import state_path
from pipeline.topic_reader import committed_offsets, end_offsets, lag
from processors.processor_settings import GROUP_ID_SUFFIX
from producers.loadgen import LoadPlan, generate, poison_records
from producers.sdk import LedgerProducer
from projections.verify import verify
from schemas.codec import encode_command
from schemas.model import Command
from streamledger.settings import Settings, replace
from tests.chaos.chaos_driver import ChaosDriver, ChaosPlan
from tests.chaos.run_process import RunProcess, stopped_cleanly
from tests.conftest import api_port, run_streamledger
from tests.system.free_ports import free_port_range
from tests.system.kafka_clients import moved_home
from tests.system.ledger_reference import ReferenceLedger
from tests.system.processor_harness import assert_outputs_match, read_topic

pytestmark = [pytest.mark.system, pytest.mark.slow]

DEFAULT_SEEDS = (101, 202, 303)
SEEDS = (
    tuple(int(seed) for seed in os.environ.get("STREAMLEDGER_CHAOS_SEEDS", "").split(",") if seed)
    or DEFAULT_SEEDS
)
COMMANDS = int(os.environ.get("STREAMLEDGER_CHAOS_COMMANDS", "1500"))
KILLS = int(os.environ.get("STREAMLEDGER_CHAOS_KILLS", "4"))
TENANTS = 4
ACCOUNTS_PER_TENANT = 12
POISON = 3
CHUNKS = 20
CHUNK_PAUSE_S = 0.4  # commands keep arriving for about CHUNKS x CHUNK_PAUSE_S
CHAOS_WINDOW_S = 10.0
CATCH_UP_TIMEOUT_S = 180.0
START_TIMEOUT_S = 120.0  # `streamledger run` up with its children: seconds on a loaded machine
POLL_S = 0.5
FEE_SPLIT_SHARE = 0.03  # multi-leg transactions (issue 16, decision 0067)
PAYOUT_SHARE = 0.01
FX_SHARE = 0.03


def workload(seed: int) -> tuple[list[Command], list[tuple[bytes, bytes, str]]]:
    plan = LoadPlan(
        seed=seed,
        tenants=TENANTS,
        accounts_per_tenant=ACCOUNTS_PER_TENANT,
        commands=COMMANDS,
        start_us=1_700_000_000_000_000,
        expiring_share=0.0,  # see the module docstring
        fee_split_share=FEE_SPLIT_SHARE,
        payout_share=PAYOUT_SHARE,
        fx_share=FX_SHARE,
    )
    prefix = f"chaos{seed}-"
    commands = [
        replace_tenant(generated.command, prefix + generated.command.tenant_id)
        for generated in generate(plan)
    ]
    tenants = tuple(sorted({command.tenant_id for command in commands}))
    poison = poison_records(seed, POISON, tenants, encode_command(commands[0]))
    return commands, poison


def replace_tenant(command: Command, tenant_id: str) -> Command:
    return dataclasses.replace(command, tenant_id=tenant_id)


class Feeder:
    """Sends commands in chunks from a thread (poison records among them), like upstream would."""

    def __init__(
        self, settings: Settings, commands: list[Command], poison: list[tuple[bytes, bytes, str]]
    ) -> None:
        size = max(1, len(commands) // CHUNKS)
        self.chunks = [commands[i : i + size] for i in range(0, len(commands), size)]
        self.poison = list(poison)
        self.settings = settings
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._feed, name="feeder", daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        try:
            producer = LedgerProducer(
                self.settings, client_config_overrides={"logger": KAFKA_CLIENT_LOGGER}
            )
            for number, chunk in enumerate(self.chunks):
                for command in chunk:
                    producer.send(command)
                if self.poison and number % 5 == 2:
                    key, value, _ = self.poison.pop()
                    producer.send_raw(key, value)
                producer.poll(0)
                time.sleep(CHUNK_PAUSE_S)
            for key, value, _ in self.poison:
                producer.send_raw(key, value)
            producer.flush(120.0)
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "feeding commands did not finish in time"
        assert not self.errors, self.errors


def wait_until(
    what: str, remaining: Callable[[], int | bool], timeout_s: float, run: RunProcess
) -> None:
    deadline = time.monotonic() + timeout_s
    left = remaining()
    while left:
        assert run.process.poll() is None, f"streamledger run exited:\n{run.log()}"
        assert time.monotonic() < deadline, f"{what}: still {left} left\n{run.log()}"
        time.sleep(POLL_S)
        left = remaining()


def children_log_tails(settings: Settings) -> str:
    tails = []
    for path in sorted((settings.home / "logs").glob("*.log")):
        tails.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}")
    return "\n".join(tails)


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos(
    seed: int, projection_settings: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    print(f"chaos seed {seed}: replay with STREAMLEDGER_CHAOS_SEEDS={seed} pytest tests/chaos")
    settings = replace(moved_home(projection_settings, tmp_path), metrics_port=free_port_range(3))
    commands, poison = workload(seed)
    reference = ReferenceLedger().fold(commands)
    run = RunProcess(settings, tmp_path / "run.log", api_port=api_port())
    driver = ChaosDriver(
        seed, ChaosPlan(KILLS, 1, CHAOS_WINDOW_S), state_path(settings), stack_settings
    )
    try:
        wait_until("state file", lambda: not state_path(settings).exists(), START_TIMEOUT_S, run)
        feeder = Feeder(settings, commands, poison)
        driver.start()
        feeder.join(CATCH_UP_TIMEOUT_S)
        driver.join(CATCH_UP_TIMEOUT_S)
        print("chaos:", "; ".join(driver.actions))
        wait_for_catch_up(settings, reference, run)
    except BaseException:
        print(f"chaos seed {seed} FAILED; actions: {driver.actions}")
        print(children_log_tails(settings))
        raise
    finally:
        code = run.stop()
    assert code == 0, run.log()
    stopped = run.log().split("stopping:")[-1].splitlines()
    children = [line for line in stopped if line.startswith(("processor-", "projection-"))]
    assert len(children) == 3 and all(map(stopped_cleanly, children)), run.log()
    assert "lag commands" in run.log(), "no status line"
    check_against_reference(settings, reference, poison)
    assert driver.broker_restarted == 1
    assert driver.killed.get("processor", 0) >= 1, driver.actions
    assert driver.killed.get("projection", 0) >= 1, driver.actions


def wait_for_catch_up(settings: Settings, reference: ReferenceLedger, run: RunProcess) -> None:
    commands_topic = settings.topic("ledger.commands")
    commands_end = end_offsets(settings, commands_topic)
    group = f"{settings.topic_prefix}{GROUP_ID_SUFFIX}"
    wait_until(
        "processors",
        lambda: lag(committed_offsets(settings, group, commands_topic), commands_end),
        CATCH_UP_TIMEOUT_S,
        run,
    )
    heads = {tenant_id: tenant.sequence for tenant_id, tenant in reference.tenants.items()}

    def events_left() -> int:
        projected = projected_heads(settings, list(heads))
        return sum(max(head - projected.get(t, 0), 0) for t, head in heads.items())

    wait_until("projection", events_left, CATCH_UP_TIMEOUT_S, run)


def check_against_reference(
    settings: Settings, reference: ReferenceLedger, poison: list[tuple[bytes, bytes, str]]
) -> None:
    # Outcomes exactly once each; events gapless, chained, equal to the fold; ledger.balances.
    assert_outputs_match(settings, reference)
    # PostgreSQL = the fold.
    with psycopg.connect(settings.database_dsn) as conn:
        stored = {
            (tenant, account): (dp, cp, dq, cq)
            for tenant, account, dp, cp, dq, cq in conn.execute(
                "SELECT tenant_id, account_id, debits_posted, credits_posted, debits_pending,"
                " credits_pending FROM ledger.balances"
            )
        }
    assert stored == {
        (tenant_id, name): account.counters()
        for tenant_id, tenant in reference.tenants.items()
        for name, account in tenant.accounts.items()
    }
    report = verify(settings, group=f"{settings.topic_prefix}verify")
    assert report.ok, "\n".join(report.lines())
    dead = read_topic(settings, settings.topic("ledger.commands.dlq"))
    assert Counter(record.value for record in dead) == Counter(value for _, value, _ in poison)
    # The downstream subscriber sees exactly the fold's events of a tenant.
    tenant_id = sorted(reference.tenants)[0]
    tail = run_streamledger(
        ["events", "tail", "--tenant", tenant_id, "--from-beginning", "--exit-at-end"], settings
    )
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == reference.tenants[tenant_id].sequence
