"""Multi-leg figures (issue 16 §5): postings/s of 10-posting transactions beside the two-account
transfers/s of the same run, on the same accounts, processor and settings.

    python -m bench.multileg_suite [--size small|full] [--repetitions 3]

Two workloads, the same seed-built opening phase (every tenant's accounts), then ``count``
commands each:

* ``multi-leg transfers``: posted ``Transfer`` commands, each between two random accounts;
* ``multi-leg transactions``: posted ``PostTransaction`` commands of ``POSTINGS_PER_TRANSACTION``
  postings, each posting between two random accounts of the tenant (up to 20 accounts touched).

Each repetition processes one then the other on fresh topics, timed like the standard mix
(``processor_suite.run_workload``: steady state by the group's committed offsets, from its first
committed transaction — which holds the opening phase — to the last; the first repetition's
output is checked against the core's fold). Figures: transfers/s, postings/s (transactions/s
times postings per transaction), and their per-repetition ratio (target ≥ 3: one transaction
amortises the per-command cost — decode, idempotency, hash-chain link, event, outcome, reply —
over ten postings).

On its own (``python -m``) it runs against whatever stack the ``STREAMLEDGER_*`` settings point
at, with unique topic prefixes deleted at the end; ``make bench`` runs it on the bench stack.

``--in-process`` measures the same two workloads without Kafka, in CPU time (so the machine's
load adds little): ``IN_PROCESS_COMMANDS`` commands each after their tenants' openings
(``IN_PROCESS_TENANTS`` tenants), folded like the processor does (``bench.bench_core.run_full``:
decode, ``ledger.step``, outcome/reply/state encoding, batches of ``IN_PROCESS_BATCH``), under
the processor's garbage-collector thresholds (``processors.loop.tune_garbage_collection``, as
``streamledger process`` and ``bench.bench_processor`` set them; ``--default-gc``: CPython's
defaults, what this measure used before decision 0139), the least CPU time of ``--rounds``
rounds, transfers and transactions alternating; it prints µs per command (openings counted in
both) and postings per CPU-second over transfers per CPU-second. ``--profile`` adds a cProfile
of the transactions' fold (pure Python is the one that shows the core's functions:
``STREAMLEDGER_PURE_PYTHON=1``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from collections.abc import Callable, Iterator
from typing import Final

from bench import processor_suite
from bench.bench_core import run_full
from bench.results import BenchRun
from bench.workloads import Workload, encode, recent_start_us
from processors.loop import tune_garbage_collection
from schemas.model import Command, OpenAccount, Posting, PostTransaction, Transfer
from streamledger.settings import Settings, load_settings

POSTINGS_PER_TRANSACTION: Final = 10
ACCOUNTS_PER_TENANT: Final = 20
AMOUNT_MAX: Final = 10_000
CURRENCY: Final = "USD"
STEP_US: Final = 1_000
TRANSFERS: Final = "multi-leg transfers"
TRANSACTIONS: Final = "multi-leg transactions"
GROUP: Final = "multi-leg"
TRANSFERS_FIGURE: Final = "transfers/s (two-account transfers)"
POSTINGS_FIGURE: Final = f"postings/s ({POSTINGS_PER_TRANSACTION}-posting transactions)"
RATIO_FIGURE: Final = "postings/s / transfers/s (target >= 3)"
# per workload, after the opening; several processor batches (batch_records_max 5,000) each
COMMANDS_BY_SIZE: Final = {"small": 20_000, "full": 100_000}
TENANTS_BY_SIZE: Final = {"small": 50, "full": 200}
SEED: Final = 46
PARTITIONS: Final = 4
IN_PROCESS_COMMANDS: Final = 4_000  # per workload, after the openings
IN_PROCESS_TENANTS: Final = 20
IN_PROCESS_BATCH: Final = 500
PROFILE_LINES: Final = 30


def account_ids() -> list[str]:
    return [f"acct-{number:04d}" for number in range(ACCOUNTS_PER_TENANT)]


def opening(tenants: list[str], start_us: int) -> list[Command]:
    """Every tenant's accounts, unrestricted (every command after them is accepted)."""
    return [
        OpenAccount(
            tenant_id=tenant,
            idempotency_key=f"open-{account}",
            submitted_at_us=start_us + index * STEP_US,
            account_id=account,
            currency=CURRENCY,
            asset_scale=2,
        )
        for index, (tenant, account) in enumerate(
            (tenant, account) for tenant in tenants for account in account_ids()
        )
    ]


def random_pair(chooser: random.Random) -> tuple[str, str]:
    debit, credit = chooser.sample(account_ids(), 2)
    return debit, credit


def transfers(
    tenants: list[str],
    count: int,
    start_us: int,
    seed: int,
    pair: Callable[[random.Random], tuple[str, str]] = random_pair,
) -> Iterator[Command]:
    """Posted transfers between the accounts ``pair`` draws (by default two random ones)."""
    chooser = random.Random(seed)  # a reproducible workload
    for number in range(count):
        debit, credit = pair(chooser)
        key = f"tr-{number:08d}"
        yield Transfer(
            tenant_id=chooser.choice(tenants),
            idempotency_key=key,
            submitted_at_us=start_us + number * STEP_US,
            transfer_id=key,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=chooser.randint(1, AMOUNT_MAX),
            currency=CURRENCY,
        )


def transactions(tenants: list[str], count: int, start_us: int, seed: int) -> Iterator[Command]:
    chooser = random.Random(seed)  # a reproducible workload
    for number in range(count):
        postings = []
        for _ in range(POSTINGS_PER_TRANSACTION):
            debit, credit = random_pair(chooser)
            amount = chooser.randint(1, AMOUNT_MAX)
            postings.append(
                Posting(
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=amount,
                    currency=CURRENCY,
                )
            )
        key = f"tx-{number:08d}"
        yield PostTransaction(
            tenant_id=chooser.choice(tenants),
            idempotency_key=key,
            submitted_at_us=start_us + number * STEP_US,
            transaction_id=key,
            postings=tuple(postings),
        )


def build_workloads(
    count: int, tenant_count: int, seed: int, partitions: int = PARTITIONS
) -> tuple[Workload, Workload]:
    """The transfers and the transactions workload, on the same opening phase."""
    tenants = [f"tenant-{index:04d}" for index in range(tenant_count)]
    start_us = recent_start_us(count + tenant_count * ACCOUNTS_PER_TENANT)
    opened = opening(tenants, start_us)
    after_us = start_us + len(opened) * STEP_US
    built = []
    for name, commands in (
        (TRANSFERS, transfers(tenants, count, after_us, seed)),
        (TRANSACTIONS, transactions(tenants, count, after_us, seed)),
    ):
        records = encode([*opened, *commands], partitions)
        built.append(Workload(name, records, seed=seed))
    return built[0], built[1]


def run_multileg(
    run: BenchRun, settings: Settings, *, size: str, repetitions: int, partitions: int = PARTITIONS
) -> None:
    """Transfers then transactions, back to back per repetition; the derived figures."""
    count, tenants = COMMANDS_BY_SIZE[size], TENANTS_BY_SIZE[size]
    transfer_workload, transaction_workload = build_workloads(count, tenants, SEED, partitions)
    run.sizes.update(multileg_commands=count, multileg_postings=POSTINGS_PER_TRANSACTION)
    for repetition in range(repetitions):
        for workload in (transfer_workload, transaction_workload):
            processor_suite.run_workload(
                run, settings, workload, repetitions=1, partitions=partitions,
                check=repetition == 0, passthrough=False, restore=False,
            )  # fmt: skip
        transfers_per_s = _last(run, TRANSFERS)
        postings_per_s = _last(run, TRANSACTIONS) * POSTINGS_PER_TRANSACTION
        run.add(GROUP, TRANSFERS_FIGURE, "transfers/s", transfers_per_s)
        run.add(GROUP, POSTINGS_FIGURE, "postings/s", postings_per_s)
        run.add("ratio", RATIO_FIGURE, "x", postings_per_s / transfers_per_s)
    for name, workload_name in ((TRANSFERS_FIGURE, TRANSFERS), (POSTINGS_FIGURE, TRANSACTIONS)):
        figure = run.find(GROUP, name)
        checked = run.find("processor", f"StreamLedger EOS ({workload_name})")
        if figure is not None and checked is not None:
            figure.correct = checked.correct


def _last(run: BenchRun, workload_name: str) -> float:
    return run.last("processor", f"StreamLedger EOS ({workload_name})")


def in_process(rounds: int, *, profile: bool, default_gc: bool = False) -> None:
    """µs of CPU per command of each workload folded in this process, and the ratio."""
    if not default_gc:
        tune_garbage_collection()  # as `streamledger process` does
    workloads = build_workloads(IN_PROCESS_COMMANDS, IN_PROCESS_TENANTS, SEED)
    records = [[(r.value, r.timestamp_ms * 1000) for r in w.records] for w in workloads]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for index, workload_records in enumerate(records):
            started = time.process_time()
            run_full(workload_records, IN_PROCESS_BATCH)
            best[index] = min(best[index], time.process_time() - started)
    per_command_us = [cpu_s / len(r) * 1e6 for cpu_s, r in zip(best, records, strict=True)]
    for workload, microseconds in zip(workloads, per_command_us, strict=True):
        print(f"{workload.name}: {microseconds:.1f} µs CPU per command ({len(workload.records)})")
    ratio = POSTINGS_PER_TRANSACTION * per_command_us[0] / per_command_us[1]
    print(f"a transaction costs {per_command_us[1] / per_command_us[0]:.2f} transfers; ", end="")
    print(f"postings per CPU-second over transfers per CPU-second: {ratio:.2f}")
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_full, records[1], IN_PROCESS_BATCH)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(PROFILE_LINES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.multileg_suite",
        description="postings/s of 10-posting transactions vs transfers/s, same run",
    )
    parser.add_argument("--size", choices=tuple(COMMANDS_BY_SIZE), default="small")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="CPU time, no Kafka")
    parser.add_argument("--rounds", type=int, default=5, help="with --in-process")
    parser.add_argument("--profile", action="store_true", help="with --in-process")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="with --in-process: CPython's collector thresholds, not the processor's",
    )
    arguments = parser.parse_args(argv)
    if arguments.in_process:
        in_process(arguments.rounds, profile=arguments.profile, default_gc=arguments.default_gc)
        return 0
    run = BenchRun(size=arguments.size, seed=SEED, repetitions=arguments.repetitions)
    run_multileg(run, load_settings(), size=arguments.size, repetitions=arguments.repetitions)
    run.report(RATIO_FIGURE, "postings/s over transfers/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
