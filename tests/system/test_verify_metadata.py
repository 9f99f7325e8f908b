"""``streamledger verify`` checks the metadata search indexes against the log (decision 0078).

A search answers from ``account_metadata``, ``transfer_metadata`` and ``transaction_metadata``
alone, so a row the log does not justify is a search result no event supports, and a missing one
a movement no search finds. Two tenants' seeded histories with metadata (accounts, transfers,
multi-leg transactions and their postings) are projected; verify passes; then a changed value, a
row moved to another sequence, an extra row and a missing row are each named, in their table,
for their tenant only.
"""

from __future__ import annotations

import psycopg
import pytest

from projections.verify import verify
from streamledger.settings import Settings
from tests.system.projection_checks import project_until_caught_up
from tests.system.test_metadata_search import run_history
from workloads.projection_events import produce_events

pytestmark = pytest.mark.system
SEED = 2026_1206_0078
TENANTS = ("acme-verify-meta", "globex-verify-meta")


def first_row(conn: psycopg.Connection[tuple[object, ...]], statement: str, tenant: str) -> str:
    row = conn.execute(statement, (tenant,)).fetchone()
    assert row is not None, statement
    return str(row[0])


def test_verify_names_every_difference_of_the_metadata_indexes(
    projection_settings: Settings,
) -> None:
    events = [
        event
        for offset, tenant in enumerate(TENANTS)
        for event in run_history(tenant, SEED + offset, commands=120).events
    ]
    produce_events(projection_settings, events, transactional_id="verify-metadata")
    project_until_caught_up(projection_settings, len(events))
    group = f"{projection_settings.topic_prefix}verify"
    clean = verify(projection_settings, group=f"{group}-clean")
    assert clean.ok, list(clean.lines())

    tampered, untouched = TENANTS
    with psycopg.connect(projection_settings.database_dsn, autocommit=True) as conn:
        changed = first_row(
            conn,
            "SELECT transfer_id FROM ledger.transfer_metadata WHERE tenant_id = %s"
            " AND key = 'order_id' AND transfer_id NOT LIKE '%%/%%' ORDER BY transfer_id LIMIT 1",
            tampered,
        )
        conn.execute(
            "UPDATE ledger.transfer_metadata SET value = 'O-forged' WHERE tenant_id = %s"
            " AND transfer_id = %s AND key = 'order_id'",
            (tampered, changed),
        )
        moved = first_row(
            conn,
            "SELECT account_id FROM ledger.account_metadata WHERE tenant_id = %s"
            " ORDER BY account_id LIMIT 1",
            tampered,
        )
        conn.execute(
            "UPDATE ledger.account_metadata SET opened_sequence = opened_sequence + 1000"
            " WHERE tenant_id = %s AND account_id = %s",
            (tampered, moved),
        )
        conn.execute(
            "INSERT INTO ledger.transaction_metadata"
            " VALUES (%s, 'order_id', 'O-1', 9999, 'x-none')",
            (tampered,),
        )
        missing = first_row(
            conn,
            "SELECT transaction_id FROM ledger.transaction_metadata WHERE tenant_id = %s"
            " AND transaction_id <> 'x-none' ORDER BY transaction_id LIMIT 1",
            tampered,
        )
        conn.execute(
            "DELETE FROM ledger.transaction_metadata WHERE tenant_id = %s AND transaction_id = %s",
            (tampered, missing),
        )
    report = verify(projection_settings, group=f"{group}-tampered")
    assert not report.ok
    problems = report.audits[tampered].problems
    assert len(problems) == 4, problems
    transfer = [p for p in problems if p.startswith("PostgreSQL transfer_metadata holds ")]
    assert len(transfer) == 1 and f"'order_id': 'O-forged'}} of {changed!r}" in transfer[0]
    account = [p for p in problems if p.startswith("PostgreSQL account_metadata holds ")]
    assert len(account) == 1 and f"of {moved!r} at sequence" in account[0]
    assert (
        "PostgreSQL transaction_metadata holds {'order_id': 'O-1'} of 'x-none' at sequence 9999,"
        " the log creates it with no metadata or not at all"
    ) in problems
    assert (
        f"PostgreSQL transaction_metadata lacks the rows of 1 the log gives metadata: {missing!r}"
    ) in problems
    assert report.audits[untouched].problems == []
