"""Balance history on the real broker and PostgreSQL, against an independent fold (decision 0057).

A seeded history spread over a few days (posted, pending, partial and full posts, voids and
expiries; a fifth of the commands exactly on a whole hour, so events sit on bucket boundaries)
is produced to ``ledger.events`` and projected. Every bucket of every account's hourly and daily
history must equal ``ReferenceLedger`` (a fold of the events' amounts written for the report
tests): the counters after every event effective before the bucket's end (an event exactly at
the end belongs to the next bucket) and the tenant's last event before it, ``(sequence, hash)``.
Another tenant sees no such account.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

import ledger
from processors.partition_ledger import WIRE_FORMAT
from projections.balance_history import (
    BUCKETS_MAX,
    BalanceHistory,
    balance_history_steps,
    check_period,
)
from projections.queries import LedgerReader, QueryError, reader_dsn
from projections.report_formats import decimal_text
from projections.reports import run_report
from schemas.event_time import to_microseconds
from schemas.model import (
    Command,
    Event,
    OpenAccount,
    PostPending,
    RejectReason,
    Transfer,
    VoidPending,
)
from streamledger.settings import Settings
from tests.conftest import run_streamledger
from tests.system.projection_checks import project_until_caught_up, projection_for
from tests.system.report_reference import ReferenceLedger
from workloads.projection_events import produce_events

pytestmark = pytest.mark.system
SEED = 20_261_206_57
T0 = datetime(2026, 3, 28, tzinfo=UTC)  # spans the European DST change: days stay 24 h
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MINUTE_US = 60_000_000
TENANTS = ("acme-history", "globex-history")
ACCOUNTS = tuple(f"acct-{index}" for index in range(4))
transactional_ids = itertools.count()


def run_history(tenant: str, rng: random.Random, commands: int) -> list[Event]:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
    events: list[Event] = []
    keys = itertools.count()
    now_us = to_microseconds(T0) + 20 * 60 * MINUTE_US + rng.randrange(MINUTE_US)
    pending: list[str] = []

    def step(command: Command) -> None:
        nonlocal now_us
        now_us += rng.randrange(1, 40) * MINUTE_US
        if rng.random() < 0.2:  # exactly on the next whole hour: a bucket boundary
            now_us += -now_us % (60 * MINUTE_US)
        decision = ledger.step(state, command, now_us)
        if not isinstance(decision, ledger.Accepted):
            assert decision.outcome.reason is RejectReason.PENDING_EXPIRED, decision.outcome
        events.extend(decision.events)

    def header() -> dict[str, object]:
        return {"tenant_id": tenant, "idempotency_key": f"k-{next(keys)}", "submitted_at_us": 0}

    for account_id in ACCOUNTS[:2]:
        step(OpenAccount(**header(), account_id=account_id, currency="USD", asset_scale=2))  # type: ignore[arg-type]
    for number in range(commands):
        if number == commands // 3:  # an account opened midway: zero before, buckets after
            for account_id in ACCOUNTS[2:]:
                step(OpenAccount(**header(), account_id=account_id, currency="USD", asset_scale=2))  # type: ignore[arg-type]
        opened = ACCOUNTS if number > commands // 3 else ACCOUNTS[:2]
        debit, credit = rng.sample(opened, 2)
        choice = rng.random()
        if choice < 0.5 or not pending:
            is_pending = choice > 0.35
            transfer_id = f"t-{number}"
            step(
                Transfer(
                    **header(),  # type: ignore[arg-type]
                    transfer_id=transfer_id,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=rng.randrange(1, 10_000),
                    currency="USD",
                    pending=is_pending,
                    pending_timeout_s=rng.choice((None, 1800, 7200)) if is_pending else None,
                )
            )
            if is_pending:
                pending.append(transfer_id)
        else:
            target = pending.pop(rng.randrange(len(pending)))
            if rng.random() < 0.5:
                step(PostPending(**header(), transfer_id=target, amount=None))  # type: ignore[arg-type]
            else:
                step(VoidPending(**header(), transfer_id=target))  # type: ignore[arg-type]
    return events


def read_history(
    reader: LedgerReader,
    tenant: str,
    account: str,
    period: tuple[datetime, datetime],
    interval: str,
) -> BalanceHistory | None:
    steps = balance_history_steps(tenant, account, period, interval)
    return run_report(steps, lambda sql, parameters: reader.fetch(tenant, sql, parameters))


def assert_matches_fold(history: BalanceHistory, reference: ReferenceLedger) -> None:
    tenant, account = history.tenant_id, history.account_id
    for bucket in history.buckets:
        end_us = to_microseconds(bucket.end)
        closing = bucket.closing
        counters = (
            closing.debits_posted,
            closing.credits_posted,
            closing.debits_pending,
            closing.credits_pending,
        )
        assert counters == reference.counters_before(tenant, account, end_us), bucket.end
        sequence, link = reference.last_event(tenant, before_us=end_us, inclusive=False)
        assert (bucket.last_event.sequence, bucket.last_event.hash) == (sequence, link)


def test_every_bucket_equals_an_independent_fold(projection_settings: Settings) -> None:
    rng = random.Random(SEED)
    events = [event for tenant in TENANTS for event in run_history(tenant, rng, commands=160)]
    produce_events(
        projection_settings, events, transactional_id=f"history-{next(transactional_ids)}"
    )
    project_until_caught_up(projection_settings, len(events))
    reference = ReferenceLedger.fold(events)
    last_us = max(event.effective_at_us for event in events)
    period_to = T0 + DAY * (
        1 + (last_us - to_microseconds(T0)) // (DAY // timedelta(microseconds=1))
    )
    on_boundaries = sum(1 for event in events if event.effective_at_us % (60 * MINUTE_US) == 0)
    assert on_boundaries > 10, "events exactly at bucket ends"
    with LedgerReader(
        reader_dsn(projection_settings), projection_for(projection_settings)
    ) as reader:
        for tenant, account in itertools.product(TENANTS, ACCOUNTS):
            for interval, start in (("1h", T0 + HOUR * 19), ("1d", T0 - DAY)):
                history = read_history(reader, tenant, account, (start, period_to), interval)
                assert history is not None
                assert len(history.buckets) == (period_to - start) // (
                    HOUR if interval == "1h" else DAY
                )
                assert all(
                    bucket.end - bucket.start == (HOUR if interval == "1h" else DAY)
                    for bucket in history.buckets
                )
                assert_matches_fold(history, reference)
        # another tenant's key sees no such account; an account not open before `to` is None
        first, second = TENANTS
        steps = balance_history_steps(first, ACCOUNTS[0], (T0, period_to), "1d")
        assert (
            run_report(steps, lambda sql, parameters: reader.fetch(second, sql, parameters)) is None
        )
        assert read_history(reader, first, ACCOUNTS[3], (T0 - DAY, T0), "1d") is None
        assert read_history(reader, first, "nobody", (T0, period_to), "1d") is None
        daily = read_history(reader, first, ACCOUNTS[0], (T0, period_to), "1d")
    assert daily is not None
    check_the_command_line(projection_settings, daily)


def check_the_command_line(settings: Settings, daily: BalanceHistory) -> None:
    """``streamledger balance-history`` prints the same buckets as CSV; bad flags are one line."""
    tenant, account = daily.tenant_id, daily.account_id
    period = ["--from", daily.period_from.isoformat(), "--to", daily.period_to.isoformat()]
    result = run_streamledger(
        ["balance-history", tenant, account, *period, "--interval", "1d", "--format", "csv"],
        settings,
    )
    assert result.returncode == 0, result.stderr
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert header[:4] == ["bucket_start", "bucket_end", "currency", "posted"]
    assert len(rows) == len(daily.buckets)
    for row, bucket in zip(rows, daily.buckets, strict=True):
        assert row[3] == decimal_text(bucket.closing.posted(daily.normal_side), 2)
        assert (int(row[11]), row[12]) == (bucket.last_event.sequence, bucket.last_event.hash.hex())
    misaligned = ["--from", (daily.period_from + HOUR).isoformat(), "--to", period[3]]
    for arguments, named in (
        (["balance-history", tenant, account, *period, "--interval", "2h"], "--interval"),
        (["balance-history", tenant, account, *misaligned, "--interval", "1d"], "--from"),
        (["balance-history", tenant, account, "--to", period[3], "--interval", "1d"], "--from"),
    ):
        failed = run_streamledger(arguments, settings)
        assert failed.returncode != 0, arguments
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], (arguments, failed.stderr)


@pytest.mark.parametrize(
    ("period", "interval", "says"),
    [
        ((T0, T0 + DAY), "2h", "interval: '2h' is not one of 1h, 1d"),
        ((T0 + timedelta(minutes=5), T0 + DAY), "1h", "from: must be a whole hour"),
        ((T0, T0 + DAY + HOUR), "1d", "to: must be a whole day"),
        ((T0 + DAY, T0), "1d", "from: "),
        ((T0, T0 + HOUR * (BUCKETS_MAX + 1)), "1h", f"to: {BUCKETS_MAX + 1} buckets"),
    ],
)
def test_bad_periods_name_the_parameter(
    period: tuple[datetime, datetime], interval: str, says: str
) -> None:
    with pytest.raises(QueryError) as raised:
        check_period(*period, interval)
    assert str(raised.value).startswith(says)
