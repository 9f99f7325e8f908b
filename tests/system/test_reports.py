"""Statements and trial balances on the real broker and PostgreSQL, against an independent fold.

Random histories (pending, partial and full posts, voids, expiries, reversals) are produced to
``ledger.events`` and projected; every report read back must equal ``ReferenceLedger`` (a fold of
the events' amounts written for these tests), including the (sequence, hash) of the last event
it covers, at random instants and exactly at event times (an event at ``from`` is in, at ``to``
is out; at ``as_of`` is in).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies
from psycopg.conninfo import make_conninfo

from projections.batch import to_datetime
from projections.queries import LedgerReader, reader_dsn
from projections.reports import (
    AccountStatement,
    TrialBalance,
    run_report,
    statement_steps,
    trial_balance_steps,
)
from streamledger.settings import Settings
from tests.system.projection_checks import project_until_caught_up, projection_for
from tests.system.report_reference import ReferenceLedger
from workloads.projection_events import Workload, generate, produce_events

pytestmark = pytest.mark.system
SEED = 20261206
QUERIES_PER_HISTORY = 12
transactional_ids = itertools.count()


@dataclass
class ProjectedHistories:
    """Histories projected into one database (tenant names are unique per seed)."""

    settings: Settings
    workloads: dict[int, Workload] = field(default_factory=dict)
    events: int = 0

    def project(self, seed: int, commands: int = 250) -> Workload:
        if seed not in self.workloads:
            workload = generate(seed, tenants=2, accounts_per_tenant=4, commands=commands)
            produce_events(
                self.settings,
                workload.events,
                transactional_id=f"reports-{next(transactional_ids)}",
            )
            self.events += len(workload.events)
            project_until_caught_up(self.settings, self.events)
            self.workloads[seed] = workload
        return self.workloads[seed]


@pytest.fixture
def histories(projection_settings: Settings) -> ProjectedHistories:
    return ProjectedHistories(projection_settings)


@pytest.fixture
def reader(projection_settings: Settings) -> Iterator[LedgerReader]:
    projection = projection_for(projection_settings)
    with LedgerReader(reader_dsn(projection_settings), projection) as opened:
        yield opened


def read_statement(
    reader: LedgerReader, tenant: str, account: str, from_us: int, to_us: int
) -> AccountStatement | None:
    steps = statement_steps(tenant, account, to_datetime(from_us), to_datetime(to_us))
    return run_report(steps, lambda sql, parameters: reader.fetch(tenant, sql, parameters))


def read_trial_balance(reader: LedgerReader, tenant: str, at_us: int) -> TrialBalance:
    steps = trial_balance_steps(tenant, to_datetime(at_us))
    return run_report(steps, lambda sql, parameters: reader.fetch(tenant, sql, parameters))


def assert_statement_matches(
    reference: ReferenceLedger, statement: AccountStatement | None, query: tuple[str, str, int, int]
) -> None:
    tenant, account, from_us, to_us = query
    expected_account = reference.accounts[(tenant, account)]
    if expected_account.opened_at_us >= to_us:
        assert statement is None, query
        return
    assert statement is not None, query
    assert statement.currency == expected_account.currency
    assert statement.asset_scale == expected_account.asset_scale
    opening = reference.counters_before(tenant, account, from_us)
    closing = reference.counters_before(tenant, account, to_us)
    assert astuple(statement.opening) == opening, query
    assert astuple(statement.closing) == closing, query
    want = [
        (p.sequence, p.kind, p.side, p.transfer_id, p.amount, p.after)
        for p in reference.period_postings(tenant, account, from_us, to_us)
    ]
    got = [
        (e.sequence, e.kind, e.side, e.transfer_id, e.amount, astuple(e.after))
        for e in statement.entries
    ]
    assert got == want, query
    last = reference.last_event(tenant, before_us=to_us, inclusive=False)
    assert (statement.last_event.sequence, statement.last_event.hash) == last, query
    first = reference.last_event(tenant, before_us=from_us, inclusive=False)
    assert (statement.opening_link.sequence, statement.opening_link.hash) == first, query
    debits = sum(p[4] for p in want if p[2] == "debit" and p[1] == "posted")
    credits = sum(p[4] for p in want if p[2] == "credit" and p[1] == "posted")
    assert (statement.totals.debits_posted, statement.totals.credits_posted) == (debits, credits)


def assert_trial_balance_matches(
    reference: ReferenceLedger, report: TrialBalance, tenant: str, at_us: int
) -> None:
    want = reference.trial_balance(tenant, at_us)
    got = {line.account_id: (line.currency, astuple(line.counters)) for line in report.lines}
    assert got == want, (tenant, at_us)
    last = reference.last_event(tenant, before_us=at_us, inclusive=True)
    assert (report.last_event.sequence, report.last_event.hash) == last, (tenant, at_us)
    currencies = sorted({currency for currency, _ in want.values()})
    assert [total.currency for total in report.totals] == currencies
    for total in report.totals:
        assert total.net_posted == 0 and total.net_pending == 0
        assert total.accounts == sum(1 for c, _ in want.values() if c == total.currency)


def astuple(counters: object) -> tuple[int, int, int, int]:
    return (
        counters.debits_posted,  # type: ignore[attr-defined]
        counters.credits_posted,  # type: ignore[attr-defined]
        counters.debits_pending,  # type: ignore[attr-defined]
        counters.credits_pending,  # type: ignore[attr-defined]
    )


def instant(data: strategies.DataObject, workload: Workload) -> int:
    """An event's exact time (a boundary), a microsecond either side of one, or any time
    around the history."""
    times = [event.effective_at_us for event in workload.events]
    exact = data.draw(strategies.sampled_from(times))
    return data.draw(
        strategies.one_of(
            strategies.just(exact),
            strategies.sampled_from((exact - 1, exact + 1)),
            strategies.integers(workload.first_time_us - 1_000, workload.last_time_us + 1_000),
        )
    )


@settings(
    max_examples=3,
    deadline=None,
    # No shrinking: every seed it would try is another history to produce and project. A
    # failure prints its seed and draws, which reproduce it.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=strategies.integers(0, 2**32), data=strategies.data())
def test_reports_equal_an_independent_fold_of_the_events(
    histories: ProjectedHistories, reader: LedgerReader, seed: int, data: strategies.DataObject
) -> None:
    workload = histories.project(seed)
    reference = ReferenceLedger.fold(workload.events)
    kinds = {type(event).__name__ for event in workload.events}
    assert {"TransferPending", "PendingPosted", "PendingVoided"} <= kinds
    for _ in range(QUERIES_PER_HISTORY):
        tenant = data.draw(strategies.sampled_from(workload.tenants))
        accounts = sorted(a for (t, a) in reference.accounts if t == tenant)
        account = data.draw(strategies.sampled_from(accounts))
        first, second = instant(data, workload), instant(data, workload)
        from_us, to_us = min(first, second), max(first, second) + 1
        statement = read_statement(reader, tenant, account, from_us, to_us)
        assert_statement_matches(reference, statement, (tenant, account, from_us, to_us))
        report = read_trial_balance(reader, tenant, first)
        assert_trial_balance_matches(reference, report, tenant, first)


def test_events_at_the_bounds_and_the_whole_history(
    histories: ProjectedHistories, reader: LedgerReader
) -> None:
    workload = histories.project(SEED, commands=400)
    reference = ReferenceLedger.fold(workload.events)
    kinds = {type(event).__name__ for event in workload.events}
    assert {"PendingExpired", "PendingVoided", "PendingPosted", "TransferPending"} <= kinds
    assert any(getattr(event, "reverses", None) for event in workload.events)
    rng = random.Random(SEED)
    tenant = workload.tenants[0]
    money = [e for e in workload.events if e.tenant_id == tenant and hasattr(e, "amount")]
    for event in rng.sample(money, 10):
        at_us = event.effective_at_us
        account = event.debit_account_id  # type: ignore[attr-defined]
        starting = read_statement(reader, tenant, account, at_us, at_us + 1)
        assert starting is not None
        assert event.sequence in {entry.sequence for entry in starting.entries}
        ending = read_statement(reader, tenant, account, at_us - 10_000_000, at_us)
        assert ending is not None
        assert event.sequence not in {entry.sequence for entry in ending.entries}
        assert ending.last_event.sequence < event.sequence
        assert_statement_matches(reference, starting, (tenant, account, at_us, at_us + 1))
        assert_statement_matches(reference, ending, (tenant, account, at_us - 10_000_000, at_us))
        at = read_trial_balance(reader, tenant, at_us)
        assert at.last_event.sequence >= event.sequence
        assert_trial_balance_matches(reference, at, tenant, at_us)
        before = read_trial_balance(reader, tenant, at_us - 1)
        assert before.last_event.sequence < event.sequence
    whole = (workload.first_time_us - 1, workload.last_time_us + 1)
    for account in sorted(a for (t, a) in reference.accounts if t == tenant):
        statement = read_statement(reader, tenant, account, *whole)
        assert_statement_matches(reference, statement, (tenant, account, *whole))
    last_sequence, last_hash = reference.chains[tenant][-1][0], reference.chains[tenant][-1][2]
    final = read_trial_balance(reader, tenant, workload.last_time_us + 1)
    assert (final.last_event.sequence, final.last_event.hash) == (last_sequence, last_hash)


def test_another_tenant_sees_nothing_of_the_chain(
    histories: ProjectedHistories, reader: LedgerReader
) -> None:
    workload = histories.project(SEED + 1, commands=50)
    owner, other = workload.tenants
    end_us = workload.last_time_us + 1
    assert read_statement(reader, other, "acct-0", 0, end_us) is not None
    foreign = read_trial_balance(reader, "nobody-here", end_us)
    assert foreign.lines == () and foreign.totals == () and foreign.last_event.sequence == 0
    dsn = make_conninfo(reader_dsn(histories.settings))
    with psycopg.connect(dsn, autocommit=True) as connection, connection.transaction():
        connection.execute("SELECT set_config('streamledger.tenant_id', %s, true)", (owner,))
        tenants = connection.execute("SELECT DISTINCT tenant_id FROM ledger.event_chain").fetchall()
    assert tenants == [(owner,)]
