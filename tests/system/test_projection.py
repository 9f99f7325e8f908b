"""The projection end to end on the real broker and database: a seeded workload's events are
projected into PostgreSQL, which must equal a fold of the commands computed by the test."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from projections.queries import LedgerReader, reader_dsn
from schemas.event_time import to_datetime
from streamledger.settings import Settings
from tests.system.projection_checks import (
    assert_matches_model,
    project_until_caught_up,
    projection_for,
)
from workloads.projection_events import generate, produce_events

pytestmark = pytest.mark.system
SEED = 20240611


# 0: one COPY per table; 2048: a batch of at most 2,048 rows in one COPY through rows_staging
# (decision 0127); batches of 500 events make some of each.
@pytest.mark.parametrize("staged_rows_max", [0, 2048])
def test_projection_equals_the_fold_of_the_commands(
    projection_settings: Settings, staged_rows_max: int
) -> None:
    workload = generate(SEED, tenants=4, commands=1_500)
    produce_events(projection_settings, workload.events, transactional_id="test-events-1")

    projection = projection_for(projection_settings, staged_rows_max=staged_rows_max)
    project_until_caught_up(projection_settings, len(workload.events), projection)

    assert_matches_model(projection_settings, workload.expected)


def test_point_in_time_balances_equal_the_fold(projection_settings: Settings) -> None:
    workload = generate(SEED + 1, tenants=3, commands=800)
    produce_events(projection_settings, workload.events, transactional_id="test-events-2")
    project_until_caught_up(projection_settings, len(workload.events))
    rng = random.Random(SEED)
    keys = sorted(workload.expected.accounts)
    projection = projection_for(projection_settings)
    with LedgerReader(reader_dsn(projection_settings), projection) as reader:
        for _ in range(300):
            tenant, account = rng.choice(keys)
            at_us = rng.randint(workload.first_time_us - 10, workload.last_time_us + 10)
            want = workload.expected.balance_at(tenant, account, at_us)
            got = reader.balance(tenant, account, as_of=to_datetime(at_us))
            if want is None:
                assert got is None, (tenant, account, at_us)
                continue
            assert got is not None, (tenant, account, at_us)
            counters = (
                got.debits_posted,
                got.credits_posted,
                got.debits_pending,
                got.credits_pending,
            )
            assert counters == want, (tenant, account, at_us)
        for tenant, account in keys:
            current = reader.balance(tenant, account)
            assert current is not None
            account_model = workload.expected.accounts[(tenant, account)]
            assert current.stored_available == current.available
            assert current.counters() == account_model.counters()
            later = reader.balance(
                tenant, account, as_of=to_datetime(workload.last_time_us) + timedelta(days=1)
            )
            assert later is not None and later.debits_posted == current.debits_posted


def test_history_pages_cover_the_journal_once(projection_settings: Settings) -> None:
    workload = generate(SEED + 2, tenants=2, commands=400)
    produce_events(projection_settings, workload.events, transactional_id="test-events-3")
    project_until_caught_up(projection_settings, len(workload.events))
    tenant = workload.tenants[0]
    projection = projection_for(projection_settings)
    with LedgerReader(reader_dsn(projection_settings), projection) as reader:
        seen: list[tuple[int, str]] = []
        cursor = None
        for _ in range(1_000):
            page = reader.history(tenant, "acct-0", after=cursor, limit=7)
            seen.extend((entry.sequence, entry.kind) for entry in page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == sorted(seen, reverse=True)
        assert len(seen) == len(set(seen))
        timeline = workload.expected.accounts[(tenant, "acct-0")].timeline
        # one journal row per posting: PendingPosted makes two rows for one balance change
        assert len(seen) >= len(timeline)
        transfer_id = next(key[1] for key in workload.expected.transfers if key[0] == tenant)
        view = reader.transfer(tenant, transfer_id)
        assert view is not None and view.transfer_id == transfer_id
        assert (
            reader.transfer(workload.tenants[1], transfer_id) is None
            or workload.tenants[1] != tenant
        )
