"""Monitor figures (issue 18, benchmark): the processor's commands/s with 1,000 balance monitors
on the hot accounts against none, the same transfers in the same run.

    python -m bench.monitor_suite [--size small|full] [--repetitions 3] [--transfers N]

Both workloads open the same accounts (``TENANTS`` tenants x ``ACCOUNTS_PER_TENANT``), then carry
the same posted transfers: each debits one of its tenant's ``HOT_ACCOUNTS_PER_TENANT`` hot
accounts and credits another of the tenant's accounts, so every transfer touches at least one
watched account. The ``with monitors`` workload creates ``MONITORS`` monitors after the openings,
spread evenly over the hot accounts (15 or 16 each, under ``monitors_per_account_max``): every field
and operator of the contract, one in ``NEAR_EVERY`` with a threshold the random walk of the
balances crosses (so edges are decided and ``ledger.notifications`` gets records), the others
with thresholds no balance of this workload reaches (the common case: a low-balance alarm that
does not fire). The monitors are evaluated on every event that touches their account — the cost
this figure measures.

Each repetition processes both on fresh topics (alternating which goes first), timed like the
standard mix (``processor_suite.run_workload``); the first repetition's output is checked against
the core's fold. The ratio (target ≥ 0.9) is per repetition; beside it, per repetition, the
same ratio in CPU time through the per-command path in this process (no Kafka, so the load of a
shared machine hardly moves it).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from typing import Final

from bench import bench_core, multileg_suite, processor_suite
from bench.results import BenchRun
from bench.workloads import Workload, encode, recent_start_us
from schemas.limits import MONITOR_FIELDS, MONITOR_OPERATORS, MONITORS_PER_ACCOUNT_MAX
from schemas.model import Command, CreateMonitor
from streamledger.settings import Settings, load_settings

TENANTS: Final = 8
ACCOUNTS_PER_TENANT: Final = multileg_suite.ACCOUNTS_PER_TENANT
HOT_ACCOUNTS_PER_TENANT: Final = 8
MONITORS: Final = 1_000
NEAR_EVERY: Final = 10  # one monitor in ten has a threshold the balances cross
AMOUNT_MAX: Final = 10_000
NEAR_THRESHOLD_MAX: Final = 5 * AMOUNT_MAX  # |threshold| of a crossing monitor
FAR_THRESHOLD: Final = 10**15  # beyond any balance of this workload
CURRENCY: Final = "USD"
STEP_US: Final = 1_000
SEED: Final = 47
PARTITIONS: Final = 4
WITHOUT: Final = "monitors: none"
WITH: Final = f"monitors: {MONITORS:,} on hot accounts"
RATIO_FIGURE: Final = "commands/s with monitors / without (target >= 0.9)"
# several processor batches (batch_records_max 5,000) per partition: fewer make the steady-state
# window a batch or two and the wall-clock ratio noise. At full 100,000 (5 batches per partition),
# not 200,000: the ratio is a per-command cost, its spread is the machine's at both counts (runs
# of both alternating, and the quiet ones at 200,000), in about half the suite's ~4 min
# (decision 0141)
COMMANDS_BY_SIZE: Final = {"small": 40_000, "full": 100_000}
CPU_BATCH: Final = 5_000
CPU_ROUNDS: Final = 2  # per workload and repetition for the in-process ratio (the better one)
CPU_RATIO_FIGURE: Final = "in-process CPU: commands/s with monitors / without"

assert MONITORS <= TENANTS * HOT_ACCOUNTS_PER_TENANT * MONITORS_PER_ACCOUNT_MAX


def tenant_ids() -> list[str]:
    return [f"tenant-{index:04d}" for index in range(TENANTS)]


def account_ids() -> list[str]:
    return multileg_suite.account_ids()  # the same 20 accounts per tenant, opened the same way


def opening(start_us: int) -> list[Command]:
    return multileg_suite.opening(tenant_ids(), start_us)


def monitors(start_us: int, seed: int) -> list[Command]:
    """``MONITORS`` monitors round-robin over every tenant's hot accounts."""
    chooser = random.Random(seed)
    hot = [(tenant, account) for tenant in tenant_ids()
           for account in account_ids()[:HOT_ACCOUNTS_PER_TENANT]]  # fmt: skip
    created: list[Command] = []
    for number in range(MONITORS):
        tenant, account = hot[number % len(hot)]
        operator = MONITOR_OPERATORS[number % len(MONITOR_OPERATORS)]
        key = f"monitor-{number:05d}"
        created.append(
            CreateMonitor(
                tenant_id=tenant,
                idempotency_key=key,
                submitted_at_us=start_us + number * STEP_US,
                monitor_id=key,
                account_id=account,
                field=MONITOR_FIELDS[number % len(MONITOR_FIELDS)],
                operator=operator,
                threshold=_threshold(chooser, operator, near=number % NEAR_EVERY == 0),
            )
        )
    return created


def _threshold(chooser: random.Random, operator: str, *, near: bool) -> int:
    if near:
        return chooser.randint(-NEAR_THRESHOLD_MAX, NEAR_THRESHOLD_MAX)
    # never true: below any balance for "<"/"<=", above any for the others
    return -FAR_THRESHOLD if operator in ("<", "<=") else FAR_THRESHOLD


def hot_pair(chooser: random.Random) -> tuple[str, str]:
    """A hot account to debit and another of the tenant's accounts to credit."""
    accounts = account_ids()
    debit = chooser.choice(accounts[:HOT_ACCOUNTS_PER_TENANT])
    return debit, chooser.choice([account for account in accounts if account != debit])


def transfers(count: int, start_us: int, seed: int) -> Iterator[Command]:
    return multileg_suite.transfers(tenant_ids(), count, start_us, seed, pair=hot_pair)


def build_workloads(count: int, seed: int, partitions: int = PARTITIONS) -> tuple[Workload, ...]:
    """Without and with monitors: the same openings and transfers."""
    start_us = recent_start_us(count + TENANTS * ACCOUNTS_PER_TENANT + MONITORS)
    opened = opening(start_us)
    watched = monitors(start_us + len(opened) * STEP_US, seed)
    after_us = start_us + (len(opened) + len(watched)) * STEP_US
    moved = list(transfers(count, after_us, seed))
    return (
        Workload(WITHOUT, encode([*opened, *moved], partitions), seed=seed),
        Workload(WITH, encode([*opened, *watched, *moved], partitions), seed=seed),
    )


def run_monitors(
    run: BenchRun,
    settings: Settings,
    *,
    size: str,
    repetitions: int,
    partitions: int = PARTITIONS,
    transfers: int | None = None,
) -> None:
    """Both workloads per repetition, alternating which goes first; the ratio per repetition.
    ``transfers``: the size's (``COMMANDS_BY_SIZE``) unless given."""
    count = COMMANDS_BY_SIZE[size] if transfers is None else transfers
    without, watched = build_workloads(count, SEED, partitions)
    run.sizes.update(monitor_transfers=count, monitors=MONITORS)
    for repetition in range(repetitions):
        order = (without, watched) if repetition % 2 == 0 else (watched, without)
        for workload in order:
            processor_suite.run_workload(
                run, settings, workload, repetitions=1, partitions=partitions,
                check=repetition == 0, passthrough=False, restore=False,
            )  # fmt: skip
        run.add("ratio", RATIO_FIGURE, "x", _last(run, WITH) / _last(run, WITHOUT))
        run.add("ratio", CPU_RATIO_FIGURE, "x", cpu_ratio(without, watched, repetition))


def cpu_ratio(without: Workload, watched: Workload, repetition: int = 0) -> float:
    """The same two workloads through the processor's per-command path in this process
    (``bench_core.run_full``: decode, decide, encode; no Kafka), commands per CPU-second: the
    monitors' cost without the machine's load in it. The better of ``CPU_ROUNDS`` runs each,
    interleaved, and which goes first alternates by repetition as the Kafka runs do (one run of
    each, always without first, moved by ±15 % on a loaded machine: decision 0138)."""
    order = (without, watched) if repetition % 2 == 0 else (watched, without)
    records = {
        workload.name: [(record.value, record.timestamp_ms * 1_000) for record in workload.records]
        for workload in order
    }
    seconds: dict[str, float] = {}
    for _ in range(CPU_ROUNDS):
        for name, folded in records.items():
            taken = bench_core.best_of(1, lambda r=folded: bench_core.run_full(r, CPU_BATCH))  # type: ignore[misc]
            seconds[name] = min(seconds.get(name, taken), taken)
    return (len(watched.records) / seconds[watched.name]) / (
        len(without.records) / seconds[without.name]
    )


def _last(run: BenchRun, workload_name: str) -> float:
    return run.last("processor", f"StreamLedger EOS ({workload_name})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.monitor_suite",
        description="processor commands/s with 1,000 monitors on hot accounts vs none, same run",
    )
    parser.add_argument("--size", choices=tuple(COMMANDS_BY_SIZE), default="small")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument(
        "--transfers",
        type=int,
        help="transfers of each workload (default: the size's, "
        + ", ".join(f"{size} {count:,}" for size, count in COMMANDS_BY_SIZE.items())
        + ")",
    )
    arguments = parser.parse_args(argv)
    run = BenchRun(size=arguments.size, seed=SEED, repetitions=arguments.repetitions)
    run_monitors(run, load_settings(), size=arguments.size, repetitions=arguments.repetitions,
                 transfers=arguments.transfers)  # fmt: skip
    print(f"monitor transfers: {run.sizes['monitor_transfers']:,} per workload")
    run.report(RATIO_FIGURE, "with monitors over without")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
