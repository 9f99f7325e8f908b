"""Webhook endpoints and deliveries in PostgreSQL (schema ``streamledger_notify``, migrations
0007 and 0011: a delivery is keyed by its delivery id, its ``source`` is an event or a
balance-monitor notification, decision 0068).

Two sides, two roles:

- the dispatcher (the app role) reads every endpoint with its secret, stores deliveries
  (delivered, pending = spilled or replayed, dead), reads pending ones back in sequence order and
  disables an endpoint: ``DeliveryStore``;
- the HTTP API (``streamledger_api``, bound to the request's API key, decision 0024) lists its
  tenant's endpoints and dead letters, and writes only through the SECURITY DEFINER functions
  (create, delete, replay), which take the tenant from the bound key: the statements below named
  ``API_*``.

Errors: psycopg's leave this module as ``InfraError`` (the dispatcher retries the store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from streamledger.errors import InfraError

APPLICATION_NAME: Final = "streamledger-notify"
CONNECT_TIMEOUT_S: Final = 5
POOL_OPEN_TIMEOUT_S: Final = 30.0
STATEMENT_TIMEOUT_MS: Final = 10_000
ENDPOINTS_PER_TENANT_MAX: Final = 16  # webhook endpoints one tenant may have (the API's check)
ERROR_TEXT_MAX: Final = 500

STATUS_PENDING: Final = "pending"
STATUS_DELIVERED: Final = "delivered"
STATUS_DEAD: Final = "dead"

SOURCE_EVENT: Final = "event"  # a record of ledger.events
SOURCE_NOTIFICATION: Final = "notification"  # a record of ledger.notifications (monitors)

# ------------------------------------------------------------------ the dispatcher (app role)

SELECT_ENDPOINTS: Final = """
SELECT e.tenant_id, e.endpoint_id, e.url, e.event_types, e.secret, e.enabled,
       GREATEST(e.starts_after, COALESCE((
           SELECT max(d.sequence) FROM streamledger_notify.webhook_deliveries AS d
           WHERE d.tenant_id = e.tenant_id AND d.endpoint_id = e.endpoint_id
             AND d.source = 'event'), 0)),
       GREATEST(e.starts_after, COALESCE(n.sequence, 0)),
       CASE WHEN n.sequence > e.starts_after THEN (
           SELECT array_agg(d.delivery_id) FROM streamledger_notify.webhook_deliveries AS d
           WHERE d.tenant_id = e.tenant_id AND d.endpoint_id = e.endpoint_id
             AND d.source = 'notification' AND d.sequence = n.sequence) END,
       EXISTS (
           SELECT FROM streamledger_notify.webhook_deliveries AS d
           WHERE d.tenant_id = e.tenant_id AND d.endpoint_id = e.endpoint_id
             AND d.status = 'pending')
FROM streamledger_notify.webhook_endpoints AS e
CROSS JOIN LATERAL (
    SELECT max(d.sequence) AS sequence FROM streamledger_notify.webhook_deliveries AS d
    WHERE d.tenant_id = e.tenant_id AND d.endpoint_id = e.endpoint_id
      AND d.source = 'notification') AS n
ORDER BY e.tenant_id, e.endpoint_id
LIMIT %s
"""
SELECT_CHANGES_VERSION: Final = (
    "SELECT version FROM streamledger_notify.endpoint_changes WHERE singleton"
)
# A batch of deliveries in one statement (array parameters, one row per element). Rows of an
# endpoint deleted meanwhile are left out by the join (its deliveries were deleted with it);
# a key appears once per batch (``batch_columns``), as ON CONFLICT DO UPDATE requires.
UPSERT_DELIVERIES: Final = """
INSERT INTO streamledger_notify.webhook_deliveries
    (tenant_id, endpoint_id, sequence, delivery_id, event_type, status, body, event_committed_at,
     signed_at_s, signature, attempts, last_error, source)
SELECT r.tenant_id, r.endpoint_id, r.sequence, r.delivery_id, r.event_type, r.status, r.body,
       r.event_committed_at, r.signed_at_s, r.signature, r.attempts, r.last_error, r.source
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[],
            %s::bytea[], %s::timestamptz[], %s::bigint[], %s::text[], %s::integer[], %s::text[],
            %s::text[])
    AS r (tenant_id, endpoint_id, sequence, delivery_id, event_type, status, body,
          event_committed_at, signed_at_s, signature, attempts, last_error, source)
JOIN streamledger_notify.webhook_endpoints AS e
    ON e.tenant_id = r.tenant_id AND e.endpoint_id = r.endpoint_id
ORDER BY r.tenant_id, r.endpoint_id, r.sequence, r.delivery_id COLLATE "C"
ON CONFLICT (tenant_id, endpoint_id, delivery_id) DO UPDATE SET
    status = EXCLUDED.status, signed_at_s = EXCLUDED.signed_at_s,
    signature = EXCLUDED.signature, attempts = EXCLUDED.attempts,
    last_error = EXCLUDED.last_error, updated_at = pg_catalog.now()
"""
SELECT_PENDING: Final = """
SELECT sequence, delivery_id, event_type, body, event_committed_at, source
FROM streamledger_notify.webhook_deliveries
WHERE tenant_id = %s AND endpoint_id = %s AND status = 'pending'
  AND NOT (delivery_id = ANY (%s::text[]))
ORDER BY sequence, delivery_id COLLATE "C"
LIMIT %s
"""
DISABLE_ENDPOINT: Final = """
UPDATE streamledger_notify.webhook_endpoints
SET enabled = false, disabled_reason = %s, updated_at = pg_catalog.now()
WHERE tenant_id = %s AND endpoint_id = %s
"""
ADVANCE_START: Final = """
UPDATE streamledger_notify.webhook_endpoints
SET starts_after = GREATEST(starts_after, %s), updated_at = pg_catalog.now()
WHERE tenant_id = %s AND endpoint_id = %s
"""
KILL_PENDING: Final = """
UPDATE streamledger_notify.webhook_deliveries SET status = 'dead', updated_at = pg_catalog.now()
WHERE tenant_id = %s AND endpoint_id = %s AND status = 'pending'
"""
SELECT_STORED_DELIVERY: Final = """
SELECT d.body, d.signature, d.status, e.secret
FROM streamledger_notify.webhook_deliveries AS d
JOIN streamledger_notify.webhook_endpoints AS e USING (tenant_id, endpoint_id)
WHERE d.tenant_id = %s AND d.endpoint_id = %s AND d.delivery_id = %s
"""

# ------------------------------------------------------------------ the API (streamledger_api)

API_SELECT_ENDPOINTS: Final = """
SELECT endpoint_id, url, event_types, enabled, disabled_reason, starts_after, created_at
FROM streamledger_notify.webhook_endpoints
WHERE tenant_id = %s
ORDER BY created_at, endpoint_id
"""
API_SELECT_DEAD_LETTERS: Final = """
SELECT sequence, delivery_id, event_type, status, attempts, last_error, updated_at
FROM streamledger_notify.webhook_deliveries
WHERE tenant_id = %s AND endpoint_id = %s AND status IN ('dead', 'pending') AND sequence > %s
ORDER BY sequence
LIMIT %s
"""
API_SELECT_HEAD: Final = "SELECT last_sequence FROM ledger.tenant_heads WHERE tenant_id = %s"
API_CREATE_ENDPOINT: Final = (
    "SELECT streamledger_notify.create_webhook_endpoint(%s, %s, %s, %s, %s, %s)"
)
API_DELETE_ENDPOINT: Final = "SELECT streamledger_notify.delete_webhook_endpoint(%s)"
API_REPLAY_DEAD_LETTERS: Final = "SELECT streamledger_notify.replay_webhook_dead_letters(%s)"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as the dispatcher sees it."""

    tenant_id: str
    endpoint_id: str
    url: str
    event_types: tuple[str, ...]
    secret: str
    enabled: bool
    routed_through: int  # the highest event sequence already stored for it (or its start)
    notified_through: int  # the highest notification sequence stored for it (or its start)
    # The notifications stored at ``notified_through`` (several monitors may fire on one
    # event); None: all of them (``notified_through`` is the endpoint's start).
    notified_ids: frozenset[str] | None
    has_pending: bool  # stored deliveries wait (spilled, or dead letters being replayed)

    @property
    def key(self) -> tuple[str, str]:
        return self.tenant_id, self.endpoint_id


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one endpoint. ``partition``/``offset`` say where it was read (None when it
    was read back from PostgreSQL): the dispatcher commits past it only once it is done."""

    tenant_id: str
    endpoint_id: str
    sequence: int
    delivery_id: str
    event_type: str
    body: bytes
    committed_at_us: int  # the event record's Kafka timestamp: latency is measured from it
    partition: int | None = None
    offset: int | None = None
    source: str = SOURCE_EVENT  # or SOURCE_NOTIFICATION: the topic it was read from


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened to a delivery, stored with it."""

    status: str
    signed_at_s: int | None = None
    signature: str | None = None
    attempts: int = 0
    last_error: str | None = None


def delivery_row(delivery: Delivery, attempt: Attempt) -> tuple[Any, ...]:
    committed_at = datetime.fromtimestamp(delivery.committed_at_us / 1_000_000, tz=UTC)
    error = None if attempt.last_error is None else attempt.last_error[:ERROR_TEXT_MAX]
    return (
        delivery.tenant_id, delivery.endpoint_id, delivery.sequence, delivery.delivery_id,
        delivery.event_type, attempt.status, delivery.body, committed_at, attempt.signed_at_s,
        attempt.signature, attempt.attempts, error, delivery.source,
    )  # fmt: skip


def batch_columns(rows: Sequence[tuple[Delivery, Attempt]]) -> tuple[list[Any], ...]:
    """``UPSERT_DELIVERIES``'s parameters: one list per column, a key once (the last row for
    it wins, as consecutive upserts would)."""
    latest = {(d.tenant_id, d.endpoint_id, d.delivery_id): (d, a) for d, a in rows}
    table = [delivery_row(delivery, attempt) for delivery, attempt in latest.values()]
    return tuple(list(column) for column in zip(*table, strict=True))


def to_microseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class DeliveryStore:
    """The dispatcher's statements over an async pool of the app role."""

    def __init__(self, dsn: str, *, pool_size_max: int) -> None:
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size_max,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                "application_name": APPLICATION_NAME,
            },
            open=False,
        )

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
        except Exception as exc:
            raise InfraError(f"the dispatcher cannot reach PostgreSQL: {exc}") from exc

    async def close(self) -> None:
        await self.pool.close()

    async def _execute(self, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        try:
            async with self.pool.connection() as conn:
                cursor = conn.cursor(row_factory=tuple_row)
                await cursor.execute(statement, parameters)
                return await cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise InfraError(f"the webhook store failed: {' '.join(str(exc).split())}") from exc

    async def changes_version(self) -> int:
        """Bumped by every change the API makes to endpoints (migration 0007)."""
        rows = await self._execute(SELECT_CHANGES_VERSION, ())
        return int(rows[0][0]) if rows else 0

    async def endpoints(self, limit: int) -> list[Endpoint]:
        rows = await self._execute(SELECT_ENDPOINTS, (limit,))
        return [
            Endpoint(
                row[0], row[1], row[2], tuple(row[3]), row[4], row[5], row[6], row[7],
                None if row[8] is None else frozenset(row[8]), row[9],
            )
            for row in rows
        ]  # fmt: skip

    async def store(self, rows: Sequence[tuple[Delivery, Attempt]]) -> None:
        """Upsert deliveries in one statement, one transaction: a batch of delivered rows
        (``notifications.recording``), of spilled or of dead ones."""
        if not rows:
            return
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(UPSERT_DELIVERIES, batch_columns(rows))
        except psycopg.Error as exc:
            raise InfraError(f"storing deliveries failed: {' '.join(str(exc).split())}") from exc

    async def pending(
        self, endpoint: Endpoint, in_flight: Sequence[str], limit: int
    ) -> list[Delivery]:
        """Stored pending deliveries of ``endpoint`` in order (sequence, then delivery id: an
        event before its notifications), but for ``in_flight``: the delivery ids answered 2xx
        whose delivered rows are not written yet."""
        rows = await self._execute(
            SELECT_PENDING, (endpoint.tenant_id, endpoint.endpoint_id, list(in_flight), limit)
        )
        return [
            Delivery(
                endpoint.tenant_id, endpoint.endpoint_id, row[0], row[1], row[2], bytes(row[3]),
                to_microseconds(row[4]), source=row[5],
            )
            for row in rows
        ]  # fmt: skip

    async def advance_start(self, endpoint: Endpoint, sequence: int) -> None:
        """The endpoint starts after ``sequence``: the dispatcher had read the tenant that far
        when it first saw the endpoint (a restart must not deliver older events to it)."""
        await self._execute(ADVANCE_START, (sequence, endpoint.tenant_id, endpoint.endpoint_id))

    async def disable(self, endpoint: Endpoint, reason: str) -> None:
        """Disable the endpoint and turn its stored pending deliveries into dead letters."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    DISABLE_ENDPOINT,
                    (reason[:ERROR_TEXT_MAX], endpoint.tenant_id, endpoint.endpoint_id),
                )
                await conn.execute(KILL_PENDING, (endpoint.tenant_id, endpoint.endpoint_id))
        except psycopg.Error as exc:
            raise InfraError(f"disabling an endpoint failed: {exc}") from exc
