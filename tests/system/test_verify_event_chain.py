"""``streamledger verify`` checks PostgreSQL's ``event_chain`` against the log (decision 0057).

Every report names its last event by ``(sequence, hash)`` from ``event_chain``; a link that
differs from the log would make a statement name a hash the log never had. After a clean
projection verify passes; then a changed hash, a changed effective time, a missing link and a
link the log does not have are each named, for their tenant only.
"""

from __future__ import annotations

import psycopg
import pytest

from projections.verify import verify
from streamledger.settings import Settings
from tests.system.projection_checks import project_until_caught_up
from workloads.projection_events import generate, produce_events

pytestmark = pytest.mark.system
SEED = 2026_1206_0057


def test_verify_names_every_difference_of_event_chain(projection_settings: Settings) -> None:
    workload = generate(SEED, tenants=3, accounts_per_tenant=4, commands=120)
    produce_events(projection_settings, workload.events, transactional_id="verify-chain")
    project_until_caught_up(projection_settings, len(workload.events))
    group = f"{projection_settings.topic_prefix}verify"
    clean = verify(projection_settings, group=f"{group}-clean")
    assert clean.ok, list(clean.lines())

    changed, missing, untouched = workload.tenants
    with psycopg.connect(projection_settings.database_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE ledger.event_chain SET hash = sha256(hash) WHERE tenant_id = %s"
            " AND sequence = 3",
            (changed,),
        )
        conn.execute(
            "UPDATE ledger.event_chain SET effective_at = effective_at + interval '1 microsecond'"
            " WHERE tenant_id = %s AND sequence = 4",
            (changed,),
        )
        conn.execute(
            "INSERT INTO ledger.event_chain (tenant_id, sequence, hash, effective_at)"
            " SELECT tenant_id, 9999, hash, effective_at FROM ledger.event_chain"
            " WHERE tenant_id = %s AND sequence = 1",
            (changed,),
        )
        conn.execute(
            "DELETE FROM ledger.event_chain WHERE tenant_id = %s AND sequence = 5", (missing,)
        )
    report = verify(projection_settings, group=f"{group}-tampered")
    assert not report.ok
    problems = report.audits[changed].problems
    assert any(p.startswith("PostgreSQL event_chain sequence 3 holds hash") for p in problems)
    assert any(p.startswith("PostgreSQL event_chain sequence 4 holds hash") for p in problems)
    assert any("holds sequence 9999, the log's chain has no such event" in p for p in problems)
    assert len(problems) == 3, problems
    assert report.audits[missing].problems == ["PostgreSQL event_chain lacks 1 of the log's links"]
    assert report.audits[untouched].problems == []
