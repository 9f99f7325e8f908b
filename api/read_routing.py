"""Reads from the PostgreSQL hot standby, bounded by how stale it may be (decision 0037).

``read_from`` (``--read-from``) says where the API's balance, history and report reads go:

- ``primary`` (the default): the primary, as before;
- ``standby``: the standby while it is fresh enough, else 503 with ``Retry-After``;
- ``standby-with-fallback``: the standby while it is fresh enough, else the primary.

Writes (API keys, webhooks) always go to the primary. Freshness is measured, not assumed: a
monitor looks at both servers every ``STANDBY_CHECK_INTERVAL_S`` — the primary's current WAL
position, the standby's replayed position — and keeps the recent primary positions with the time
each was seen. The standby's **staleness** is the time since the primary was last seen at a
position the standby has replayed: 0 while it keeps up, growing while it falls behind, and
growing too when the primary is gone (the standby may then miss its last writes; how much is
unknowable, so its age counts from the last time it was known complete). Only public functions
are used (``pg_current_wal_lsn``, ``pg_last_wal_replay_lsn``); ``pg_stat_wal_receiver`` hides its
status from an unprivileged role. A standby that has been promoted (not in recovery) is the
primary now: reads go through the primary's pool, whose DSN names both servers.

The staleness is exported as ``streamledger_api_standby_staleness_seconds`` and the route as
``streamledger_api_reads_from_standby``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from prometheus_client import CollectorRegistry, Gauge
from psycopg_pool import AsyncConnectionPool

STANDBY_CHECK_INTERVAL_S: Final = 0.5
PRIMARY_POSITIONS_KEPT: Final = 600  # 5 minutes of positions at 2 a second
SELECT_POSITION: Final = (
    "SELECT pg_catalog.pg_is_in_recovery(),"
    " (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()"
    " ELSE pg_catalog.pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint"
)
UNKNOWN_STALENESS_S: Final = float("inf")
LOOK_TIMEOUT_S: Final = 1.0  # one position query, connect included
LOG = logging.getLogger("streamledger.api.read_routing")


class ReadFrom(enum.StrEnum):
    PRIMARY = "primary"
    STANDBY = "standby"
    STANDBY_WITH_FALLBACK = "standby-with-fallback"


def parse_read_from(text: str) -> str:
    try:
        return ReadFrom(text.strip()).value
    except ValueError:
        raise ValueError(f"{text!r}: expected one of {', '.join(ReadFrom)}") from None


class Route(enum.Enum):
    PRIMARY = "primary"
    STANDBY = "standby"
    UNAVAILABLE = "unavailable"  # 503: the standby is too stale and there is no fallback


@dataclass(frozen=True, slots=True)
class StandbyView:
    """What the last look at the standby found."""

    reachable: bool
    in_recovery: bool  # False once promoted
    staleness_s: float  # UNKNOWN_STALENESS_S when never known complete


def choose_route(read_from: str, view: StandbyView | None, staleness_max_s: float) -> Route:
    """Where one read goes. Pure: the monitor's last view and the settings decide."""
    if read_from == ReadFrom.PRIMARY:
        return Route.PRIMARY
    if view is not None and view.reachable and not view.in_recovery:
        return Route.PRIMARY  # promoted: the primary pool reaches it
    fresh = view is not None and view.reachable and view.staleness_s <= staleness_max_s
    if fresh:
        return Route.STANDBY
    return Route.PRIMARY if read_from == ReadFrom.STANDBY_WITH_FALLBACK else Route.UNAVAILABLE


class PrimaryPositions:
    """The primary's WAL positions with the (monotonic) time each was seen, newest last."""

    def __init__(self, kept_max: int = PRIMARY_POSITIONS_KEPT) -> None:
        self._seen: deque[tuple[float, int]] = deque(maxlen=kept_max)
        self._complete_at: float | None = None  # last time the standby was known complete

    def saw_primary(self, at_s: float, position: int) -> None:
        if self._seen and position < self._seen[-1][1]:
            self._seen.clear()  # a new primary (promotion, restore): earlier positions mean nothing
        self._seen.append((at_s, position))

    def staleness_s(self, at_s: float, replayed: int) -> float:
        """Seconds since the primary was last seen at a position ``replayed`` covers."""
        for seen_at_s, position in reversed(self._seen):
            if position <= replayed:
                if self._complete_at is None or seen_at_s > self._complete_at:
                    self._complete_at = seen_at_s
                break
        if self._complete_at is None:
            return UNKNOWN_STALENESS_S
        return max(0.0, at_s - self._complete_at)


class StandbyReads:
    """The standby's pool and the monitor that keeps ``view`` current (event loop only)."""

    def __init__(
        self,
        *,
        read_from: str,
        staleness_max_s: float,
        primary_dsn: str,
        standby_dsn: str,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.read_from = read_from
        self.staleness_max_s = staleness_max_s
        self.primary_dsn = primary_dsn
        self.standby_dsn = standby_dsn
        self.pool = pool
        self.positions = PrimaryPositions()
        self.view: StandbyView | None = None
        self._connections: dict[str, psycopg.AsyncConnection[Any]] = {}
        self._monitor: asyncio.Task[None] | None = None
        self.staleness = Gauge(
            "streamledger_api_standby_staleness_seconds",
            "time since the primary was last seen at a WAL position the standby has replayed"
            " (+Inf: never known complete)",
            registry=registry,
        )
        self.on_standby = Gauge(
            "streamledger_api_reads_from_standby",
            "1 while reads go to the standby, 0 while they go to the primary or get 503",
            registry=registry,
        )

    async def open(self) -> None:
        """Start the monitor; the pool fills in the background (a down standby blocks nothing)."""
        await self.pool.open(wait=False)
        self._monitor = asyncio.create_task(self._watch(), name="standby-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for connection in self._connections.values():
            await connection.close()
        await self.pool.close()

    def route(self) -> Route:
        route = choose_route(self.read_from, self.view, self.staleness_max_s)
        self.on_standby.set(1 if route is Route.STANDBY else 0)
        return route

    async def _watch(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(STANDBY_CHECK_INTERVAL_S)

    async def look(self) -> None:
        """One look at both servers; updates ``view`` and the staleness gauge."""
        primary = await self._position(self.primary_dsn)
        now_s = time.monotonic()
        if primary is not None and not primary[0]:
            self.positions.saw_primary(now_s, primary[1])
        standby = await self._position(self.standby_dsn)
        if standby is None:
            self.view = StandbyView(
                reachable=False, in_recovery=True, staleness_s=UNKNOWN_STALENESS_S
            )
        else:
            in_recovery, replayed = standby
            staleness_s = self.positions.staleness_s(now_s, replayed) if in_recovery else 0.0
            self.view = StandbyView(True, in_recovery, staleness_s)
        self.staleness.set(self.view.staleness_s)

    async def _position(self, dsn: str) -> tuple[bool, int] | None:
        """(in recovery, WAL position) of one server, or None when it does not answer in time."""
        try:
            async with asyncio.timeout(LOOK_TIMEOUT_S):
                connection = self._connections.get(dsn)
                if connection is None or connection.closed:
                    connection = await psycopg.AsyncConnection.connect(
                        dsn, autocommit=True, connect_timeout=max(1, round(LOOK_TIMEOUT_S))
                    )
                    self._connections[dsn] = connection
                cursor = await connection.execute(SELECT_POSITION)
                row = await cursor.fetchone()
        except (psycopg.Error, TimeoutError, OSError) as exc:
            LOG.debug("standby monitor: %s", exc)
            stale = self._connections.pop(dsn, None)
            if stale is not None:
                await stale.close()
            return None
        assert row is not None
        return bool(row[0]), int(row[1])
