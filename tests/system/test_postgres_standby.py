"""The PostgreSQL hot standby and its promotion (issue 22 §2, decision 0037), on a cluster pair of
this test's own (own home, free ports): never the shared test stack.

The projection keeps its Kafka offsets in the same transaction as its rows; what it reads back at
start (``projections.store.read_offsets``) after a promotion, through the DSN that names both
servers, is where it resumes. The full pipeline under a kill -9 of the primary is ``make
chaos-ha``; this is the runbook step itself: stream, kill -9 the primary, ``promote``, and the
offsets written before the kill are read and moved on through the same DSN, while the old primary
is fenced and never started again.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from api.read_routing import STANDBY_CHECK_INTERVAL_S, Route, StandbyReads
from api.settings import build_api_settings
from infra import postgres_server, postgres_standby, stack
from infra.postgres_server import ClusterPaths
from projections.migrations import apply_migrations
from projections.store import LIVE_SCHEMA, UPSERT_OFFSETS, BatchTarget, read_offsets
from streamledger.errors import InfraError
from streamledger.settings import Settings
from tests.system.free_ports import free_port_range

pytestmark = pytest.mark.system

TARGET = BatchTarget(schema=LIVE_SCHEMA, projection_name="standby-test", topic="ledger.events")
REPLAY_TIMEOUT_S = 30.0
POLL_S = 0.1


@pytest.fixture
def pair() -> Iterator[Settings]:
    """A primary and a hot standby on free ports; both deleted afterwards. The home is not under
    pytest's shared base directory, which another pytest session on the machine may prune."""
    home = Path(tempfile.mkdtemp(prefix="sl-pg-pair-"))
    base = free_port_range(2)
    settings = Settings(
        home=home,
        postgres_port=base,
        postgres_standby_port=base + 1,
        kafka_port=base + 2,  # not started: distinct from the PostgreSQL ports only
        kafka_controller_port=base + 3,
        metrics_port=base + 4,
        prometheus_port=base + 5,
    )
    try:
        postgres_server.start(settings)
        apply_migrations(settings)
        postgres_standby.start(settings)
        yield settings
    finally:
        postgres_standby.reset(settings)
        postgres_server.reset(settings)
        shutil.rmtree(home, ignore_errors=True)


def store_offsets(settings: Settings, offsets: dict[int, int]) -> None:
    with (
        psycopg.connect(settings.database_dsn, autocommit=True) as connection,
        connection.transaction(),
    ):
        connection.execute(
            TARGET.compose(UPSERT_OFFSETS),
            (TARGET.projection_name, TARGET.topic, list(offsets), list(offsets.values())),
        )


def stored_offsets(settings: Settings) -> dict[int, int]:
    with psycopg.connect(settings.database_dsn, autocommit=True) as connection:
        return read_offsets(connection, TARGET)


def wait_until_replayed(settings: Settings) -> None:
    """Until the standby has replayed everything the primary wrote (the primary's position)."""
    with psycopg.connect(settings.database_dsn, autocommit=True) as primary:
        row = primary.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint").fetchone()
    assert row is not None
    standby_dsn = (
        f"postgresql://streamledger:streamledger@127.0.0.1:{settings.postgres_standby_port}"
        "/streamledger"
    )
    deadline = time.monotonic() + REPLAY_TIMEOUT_S
    with psycopg.connect(standby_dsn, autocommit=True) as standby:
        while True:
            replayed = standby.execute(
                "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"
            ).fetchone()
            if replayed is not None and replayed[0] >= row[0]:
                return
            assert time.monotonic() < deadline, "the standby did not replay in time"
            time.sleep(POLL_S)


def test_the_standby_streams_and_serves_reads_only(pair):
    store_offsets(pair, {0: 7})
    wait_until_replayed(pair)
    state = postgres_standby.state(pair)
    assert state.in_recovery and state.streaming
    status = {report.name: report for report in stack.status(pair).services}
    assert status["pg-standby"].running
    assert "standby" in status["pg-standby"].detail


def test_promotion_after_a_kill_keeps_the_offsets_and_fences_the_old_primary(pair):
    store_offsets(pair, {0: 41, 1: 17})
    wait_until_replayed(pair)
    assert postgres_standby.kill_primary(pair) is not None
    lines = postgres_standby.promote(pair)
    assert "fenced" in lines[0] and "promoted" in lines[1]
    # The projection's next connection (same DSN) reaches the promoted standby and resumes there.
    assert stored_offsets(pair) == {0: 41, 1: 17}
    store_offsets(pair, {0: 42})
    assert stored_offsets(pair) == {0: 42, 1: 17}
    assert not postgres_standby.state(pair).in_recovery
    with pytest.raises(InfraError, match="replaced by the promoted standby"):
        postgres_server.start(pair)
    assert postgres_standby.promote(pair) == ["pg-standby  already promoted: it is the primary"]


def admin(settings: Settings, *, standby: bool) -> psycopg.Connection[Any]:
    paths = postgres_standby.standby_paths(settings) if standby else ClusterPaths.of(settings)
    port = settings.postgres_standby_port if standby else settings.postgres_port
    return postgres_server.connect_admin(paths, port, "postgres")


async def looked(reads: StandbyReads, looks: int = 3) -> Route:
    for _ in range(looks):
        await reads.look()
        await asyncio.sleep(STANDBY_CHECK_INTERVAL_S)
    return reads.route()


def test_api_reads_leave_a_standby_that_falls_behind_and_come_back(pair):
    """Replay paused on the standby while the primary writes: the standby's staleness passes the
    bound, reads answer 503 (``standby``) or go to the primary (``standby-with-fallback``), and
    come back once it has caught up (api/read_routing.py)."""
    api = build_api_settings(pair, read_from="standby", limits={"standby_staleness_max_ms": 1000})

    async def scenario(read_from: str) -> list[Route]:
        reads = StandbyReads(
            read_from=read_from,
            staleness_max_s=api.standby_staleness_max_s,
            primary_dsn=api.reader_dsn,
            standby_dsn=api.standby_reader_dsn,
            pool=AsyncConnectionPool(api.standby_reader_dsn, open=False),
            registry=CollectorRegistry(),
        )
        routes = [await looked(reads)]
        with admin(pair, standby=True) as standby:
            standby.execute("SELECT pg_wal_replay_pause()")
            store_offsets(pair, {0: 1})  # the primary moves on
            await asyncio.sleep(1.5)
            routes.append(await looked(reads))
            standby.execute("SELECT pg_wal_replay_resume()")
        wait_until_replayed(pair)
        routes.append(await looked(reads))
        await reads.close()
        return routes

    assert asyncio.run(scenario("standby")) == [Route.STANDBY, Route.UNAVAILABLE, Route.STANDBY]
    fallback = asyncio.run(scenario("standby-with-fallback"))
    assert fallback == [Route.STANDBY, Route.PRIMARY, Route.STANDBY]
