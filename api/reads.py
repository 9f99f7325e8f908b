"""Tenant-scoped reads of the projection for the API: an async pool of the API's read role.

The statements and row types are the projection's own (``projections.queries``): the API runs
the same SQL under row-level security, as ``streamledger_api``, whose policies show only the
tenant of the API key the request binds (decision 0024): the read sets
``streamledger.api_key_sha256`` to the digest of the key that authenticated the request, and
PostgreSQL itself maps it to the tenant; a tenant name set by the session does nothing for that
role. (``streamledger.tenant_id`` is set too, for a ``--reader-url`` naming the operator's
``streamledger_reader`` role.) What differs is the I/O: an ``AsyncConnectionPool`` (no thread hop
per request) and one network round trip per read: ``SELECT set_config(…), set_config(…);
SELECT …`` is sent as ONE simple-protocol query (parameters bound client-side by psycopg's
``AsyncClientCursor``, which quotes them). PostgreSQL runs the statements of one simple query
as one implicit transaction, so the ``is_local`` settings cover the read and are gone when it
ends: a pooled connection never carries a tenant or a key into the next request. (Measured on
the local stack: about half the latency of BEGIN / set_config / SELECT / COMMIT as four round
trips; psycopg's pipeline mode was no faster than those four here.)
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Final

import psycopg
from prometheus_client import CollectorRegistry
from psycopg import AsyncClientCursor, abc, generators
from psycopg.adapt import Transformer
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult
from psycopg.rows import tuple_row
from psycopg.waiting import Ready, Wait
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.api_keys import SELECT_TENANT_FOR_KEY, is_token_shaped, token_digest
from api.problems import INVALID_PARAMETER, SERVICE_UNAVAILABLE, ApiProblemError
from api.read_routing import ReadFrom, Route, StandbyReads
from api.settings import ApiSettings
from projections.queries import (
    SELECT_BALANCE,
    SELECT_BALANCE_AS_OF,
    SELECT_HISTORY_AFTER,
    SELECT_HISTORY_FIRST,
    SELECT_MONITORS,
    SELECT_TRANSACTION,
    SELECT_TRANSFER,
    Balance,
    Entry,
    HistoryPage,
    MonitorView,
    QueryError,
    TransactionView,
    TransferView,
    monitor_from_row,
    parse_cursor,
    transaction_from_rows,
)

APPLICATION_NAME: Final = "streamledger-api"
POOL_OPEN_TIMEOUT_S: Final = 30.0
PING: Final = "SELECT 1"
CONNECT_TIMEOUT_S: Final = 5  # libpq's connect_timeout of every connection the API opens
SET_READ_WRITE: Final = "SET TRANSACTION READ WRITE"
CANCEL_TIMEOUT_S: Final = 5.0  # a cancelled read: its cancel request, then its query's end
TRANSFORMERS_MAX: Final = 256  # connections whose row decoder is kept (pool_size_max <= 128)
LOG = logging.getLogger(__name__)
BIND_REQUEST: Final = (
    "SELECT set_config('streamledger.tenant_id', %s, true),"
    " set_config('streamledger.api_key_sha256', %s, true)"
)


# What a hand-quoted literal may hold (``quoted_text``): the entity-id alphabet
# (``schemas.limits``) and hex digits. No quote, no backslash, no byte that could end or escape
# a literal between single quotes, whatever ``standard_conforming_strings`` says.
QUOTE_FREE_TEXT: Final = re.compile(r"[A-Za-z0-9._:@-]*")
PLACEHOLDER: Final = "%s"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def quoted_text(statement: str, parameters: tuple[Any, ...]) -> str | None:
    """``statement`` with each ``%s`` replaced by its parameter as a SQL string literal, or None
    unless every parameter is a ``str`` made of ``QUOTE_FREE_TEXT`` only and ``%s`` is the only
    ``%`` in the statement, one per parameter (then psycopg quotes: ``run_bound``).

    For such values the text is the one psycopg's client cursor makes (``'value'``; pinned by
    tests/unit/test_api_read_literals.py and, against PostgreSQL, by
    tests/system/test_api_reads.py), without a cursor, a transformer and a dumper per
    query: ~30 µs of CPU per balance read (decision 0117). Nothing else is quoted by hand."""
    placeholders = statement.count(PLACEHOLDER)
    if placeholders != len(parameters) or statement.count("%") != placeholders:
        return None
    literals = []
    for value in parameters:
        if type(value) is not str or QUOTE_FREE_TEXT.fullmatch(value) is None:
            return None
        literals.append("'" + value + "'")
    return statement % tuple(literals)


async def run_bound(
    conn: psycopg.AsyncConnection[Any], statement: str, parameters: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """``BIND_REQUEST; statement`` as one simple-protocol query; the statement's rows.

    The text is what psycopg's ``AsyncClientCursor`` sends (its ``mogrify``: the same quoting;
    ``quoted_text`` makes it without a cursor for quote-free strings), but the round trip goes
    through the connection's libpq handle and the rows are decoded by psycopg's own loaders
    (``Transformer``, the same types as a cursor's) with no cursor: a cursor's
    execute/nextset/fetchall machinery was ~55 µs of CPU per balance read, about a third of the
    read (bench/README.md, "API balance read against pgbench"). Errors are the cursor's: the
    server's as ``error_from_result`` (e.g. ``QueryCanceled``), a lost connection as
    ``OperationalError``; a cancelled request cancels the query (``results_of``)."""
    bound = BIND_REQUEST + "; " + statement
    text = quoted_text(bound, parameters)
    if text is None:  # a value outside QUOTE_FREE_TEXT, or not a str: psycopg quotes it
        text = AsyncClientCursor(conn).mogrify(bound, parameters)
    async with conn.lock:
        conn.pgconn.send_query(text.encode(conn.info.encoding))
        results = await results_of(conn)
    for result in results:
        if result.status == ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    assert len(results) >= 2, "the read's result set is missing"  # as the cursor's nextset()
    rows = results[1]
    transformer = transformer_for(conn)
    transformer.set_pgresult(rows)
    return transformer.load_rows(0, rows.ntuples, tuple)


async def results_of(conn: psycopg.AsyncConnection[Any]) -> list[PGresult]:
    """The results of the query just sent: psycopg's ``generators.execute`` driven on the event
    loop, as ``conn.wait`` drives it but without its timer per wait (an interrupt check that an
    event loop does not need; with its closures ~7 µs of CPU per read). A cancelled request
    cancels its query in PostgreSQL and reads the connection back to idle, as ``conn.wait``
    does, so the pool keeps it; a closed socket is an ``OperationalError``. Call it holding
    ``conn.lock``."""
    generator = generators.execute(conn.pgconn)
    loop = asyncio.get_running_loop()
    fileno = conn.pgconn.socket
    try:
        wait = next(generator)
        while True:
            wait = generator.send(await readiness(loop, fileno, wait))
    except StopIteration as done:
        results: list[PGresult] = done.value
        return results
    except asyncio.CancelledError:
        await cancel_query(conn, generator)
        raise
    except OSError as exc:
        raise psycopg.OperationalError("connection socket closed") from exc


async def readiness(loop: asyncio.AbstractEventLoop, fileno: int, wait: Wait) -> Ready:
    """The first readiness of ``fileno`` among those ``wait`` asks for."""
    ready: asyncio.Future[Ready] = loop.create_future()

    def wake(state: Ready) -> None:
        if not ready.done():
            ready.set_result(state)

    if wait & Wait.R:
        loop.add_reader(fileno, wake, Ready.R)
    if wait & Wait.W:
        loop.add_writer(fileno, wake, Ready.W)
    try:
        return await ready
    finally:
        if wait & Wait.R:
            loop.remove_reader(fileno)
        if wait & Wait.W:
            loop.remove_writer(fileno)


async def cancel_query(
    conn: psycopg.AsyncConnection[Any], generator: abc.PQGen[list[PGresult]]
) -> None:
    """A query still running for a cancelled request: cancelled in PostgreSQL, its end read
    (bounded). If that fails the connection is left busy and the pool replaces it."""
    if conn.pgconn.transaction_status != TransactionStatus.ACTIVE:
        return
    try:
        await conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
        await conn.wait(generator, timeout=CANCEL_TIMEOUT_S)
    except (psycopg.Error, OSError) as exc:
        LOG.warning("cancelling a cancelled request's read failed: %s", one_line(exc))


TRANSFORMERS: dict[psycopg.AsyncConnection[Any], abc.Transformer] = {}


def transformer_for(conn: psycopg.AsyncConnection[Any]) -> abc.Transformer:
    """The connection's row decoder (psycopg's loaders), made once per connection as a cursor
    keeps its own across results: ~7 µs of CPU per read less than one per read. Closed
    connections are dropped once ``TRANSFORMERS_MAX`` are kept (the pool replaces broken ones)."""
    transformer = TRANSFORMERS.get(conn)
    if transformer is None:
        if len(TRANSFORMERS) >= TRANSFORMERS_MAX:
            for closed in [kept for kept in TRANSFORMERS if kept.closed]:
                del TRANSFORMERS[closed]
            if len(TRANSFORMERS) >= TRANSFORMERS_MAX:
                TRANSFORMERS.clear()
        transformer = TRANSFORMERS[conn] = Transformer(conn)
    return transformer


class ApiKeyCache:
    """Token digest → tenant for ``ttl_s`` seconds, bounded (oldest first out). Event loop only."""

    def __init__(self, *, ttl_s: float, entries_max: int) -> None:
        self.ttl_s = ttl_s
        self.entries_max = entries_max
        self._entries: OrderedDict[bytes, tuple[str | None, float]] = OrderedDict()

    def get(self, digest: bytes, now_s: float) -> tuple[bool, str | None]:
        """(found, tenant or None for a known-bad key)."""
        entry = self._entries.get(digest)
        if entry is None or entry[1] <= now_s:
            return False, None
        return True, entry[0]

    def put(self, digest: bytes, tenant_id: str | None, now_s: float) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[digest] = (tenant_id, now_s + self.ttl_s)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.entries_max:
            self._entries.popitem(last=False)


class ApiReader:
    """The API's reads: API key → tenant, and the projection's queries as that tenant."""

    def __init__(self, api: ApiSettings, *, registry: CollectorRegistry | None = None) -> None:
        self.api = api
        self.keys = ApiKeyCache(
            ttl_s=api.api_key_cache_ttl_s, entries_max=api.api_key_cache_entries_max
        )
        self._sweep: asyncio.Task[None] | None = None
        # tenant → the digest of the key that last authenticated for it: what a read binds.
        self._bound_digests: OrderedDict[str, bytes] = OrderedDict()
        self._retired: set[asyncio.Task[None]] = set()  # old pools closing in the background
        self.pool = self._new_pool()
        # Reads from the hot standby while it is fresh enough (api/read_routing.py, decision 0037).
        self.standby: StandbyReads | None = None
        if api.read_from != ReadFrom.PRIMARY:
            self.standby = StandbyReads(
                read_from=api.read_from,
                staleness_max_s=api.standby_staleness_max_s,
                primary_dsn=api.reader_dsn,
                standby_dsn=api.standby_reader_dsn,
                pool=self._new_pool(api.standby_reader_dsn),
                registry=registry,
            )

    def _new_pool(
        self, dsn: str | None = None
    ) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        return AsyncConnectionPool(
            dsn or self.api.reader_dsn,
            min_size=min(4, self.api.pool_size_max),
            max_size=self.api.pool_size_max,
            timeout=self.api.pool_timeout_ms / 1000,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": f"-c statement_timeout={self.api.statement_timeout_ms}",
                "application_name": APPLICATION_NAME,
            },
            open=False,
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
        if self.standby is not None:
            await self.standby.open()

    async def close(self) -> None:
        if self._sweep is not None and not self._sweep.done():
            self._sweep.cancel()
        if self.standby is not None:
            await self.standby.close()
        await self.pool.close()
        await asyncio.gather(*self._retired, return_exceptions=True)

    async def _run(
        self, tenant_id: str | None, statement: str, parameters: tuple[Any, ...]
    ) -> list[Any]:
        """One statement, the tenant set first in the same implicit transaction; one round trip.

        ``getconn``/``putconn`` rather than the pool's ``connection()``: that context manager
        adds a generator context and the connection's own ``async with`` (a ``commit()``, which
        takes the connection's lock and does nothing in autocommit), ~15-20 µs of CPU per read;
        ``putconn`` alone checks the connection's state as before (a broken one is replaced)."""
        pool = self._read_pool()
        try:
            conn = await pool.getconn()
        except PoolTimeout as exc:
            raise ApiProblemError(
                SERVICE_UNAVAILABLE, "no database connection free in time"
            ) from exc
        try:
            if tenant_id is None:
                cursor = conn.cursor(row_factory=tuple_row)
                await cursor.execute(statement, parameters)
                return await cursor.fetchall()
            digest = self._digest_for(tenant_id)
            return await run_bound(conn, statement, (tenant_id, digest.hex(), *parameters))
        except psycopg.errors.QueryCanceled as exc:
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the read took too long") from exc
        except psycopg.OperationalError as exc:
            self.sweep()  # the other pooled connections are likely stale too (a restart)
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the database is unreachable") from exc
        finally:
            await pool.putconn(conn)

    def _read_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """The primary's pool, or the standby's while it is fresh enough; 503 when it is not and
        reads may not fall back (``read_from`` = standby)."""
        if self.standby is None:
            return self.pool
        route = self.standby.route()
        if route is Route.STANDBY:
            return self.standby.pool
        if route is Route.UNAVAILABLE:
            view = self.standby.view
            behind = f"{view.staleness_s:.1f} s" if view is not None and view.reachable else "?"
            raise ApiProblemError(
                SERVICE_UNAVAILABLE,
                f"the standby is {behind} behind the primary, more than the"
                f" {self.standby.staleness_max_s:g} s reads may be"
                " [setting standby_staleness_max_ms]",
            )
        return self.pool

    def sweep(self) -> asyncio.Task[None]:
        """Check the pool's idle connections in the background (``AsyncConnectionPool.check``:
        broken ones are discarded and replaced); one sweep at a time."""
        if self._sweep is None or self._sweep.done():
            self._sweep = asyncio.create_task(self.pool.check(), name="api-pool-sweep")
        return self._sweep

    async def ping(self, timeout_s: float) -> str | None:
        """None if PostgreSQL answers now, else why not; each step bounded by ``timeout_s``.

        Through the pool first. If that fails, one direct connection tells whether PostgreSQL
        itself is down (that is the answer) or only the pool is stale: broken connections after
        a restart, or reconnection attempts backing off (psycopg_pool doubles its wait after
        each failure, so after a long outage it may not try again for minutes). Then the pool
        is replaced by a fresh one (the old one closes in the background) and pinged again."""
        problem = await self._ping_once(timeout_s)
        if problem is None:
            return None
        direct = await self._ping_directly(timeout_s)
        if direct is not None:
            return direct
        await self._replace_pool(timeout_s)
        return await self._ping_once(timeout_s)

    async def _ping_once(self, timeout_s: float) -> str | None:
        try:
            async with asyncio.timeout(timeout_s), self.pool.connection(timeout_s) as conn:
                await conn.execute(PING)
        except (TimeoutError, PoolTimeout):
            return f"no answer from the database within {timeout_s:g} s"
        except psycopg.Error as exc:
            return f"the database failed: {one_line(exc)}"
        return None

    async def _ping_directly(self, timeout_s: float) -> str | None:
        try:
            async with asyncio.timeout(timeout_s):
                connection = await psycopg.AsyncConnection.connect(
                    self.api.reader_dsn,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    application_name=APPLICATION_NAME,
                )
                async with connection:
                    await connection.execute(PING)
        except TimeoutError:
            return f"no answer from the database within {timeout_s:g} s"
        except psycopg.Error as exc:
            return f"the database is unreachable: {one_line(exc)}"
        return None

    async def _replace_pool(self, timeout_s: float) -> None:
        fresh = self._new_pool()
        try:
            await fresh.open(wait=True, timeout=timeout_s)
        except PoolTimeout:
            await fresh.close()
            return
        stale, self.pool = self.pool, fresh
        retiring = asyncio.create_task(stale.close(), name="api-pool-retire")
        self._retired.add(retiring)
        retiring.add_done_callback(self._retired.discard)

    def _remember_binding(self, tenant_id: str | None, digest: bytes) -> None:
        if tenant_id is None:
            return
        self._bound_digests[tenant_id] = digest
        self._bound_digests.move_to_end(tenant_id)
        while len(self._bound_digests) > self.api.api_key_cache_entries_max:
            self._bound_digests.popitem(last=False)

    def _digest_for(self, tenant_id: str) -> bytes:
        """The key digest a read of ``tenant_id`` binds: one that authenticated for it, always
        in this same request (bounded; only a flood of other tenants in between evicts it)."""
        digest = self._bound_digests.get(tenant_id)
        if digest is None:
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the request's API key binding was lost")
        return digest

    async def tenant_for_token(self, token: str) -> str | None:
        """The tenant holding this API key, or None (malformed, unknown or revoked)."""
        if not is_token_shaped(token):
            return None
        digest = token_digest(token)
        now_s = time.monotonic()
        found, tenant_id = self.keys.get(digest, now_s)
        if not found:
            rows = await self._run(None, SELECT_TENANT_FOR_KEY, (digest,))
            tenant_id = rows[0][0] if rows else None
            self.keys.put(digest, tenant_id, now_s)
        self._remember_binding(tenant_id, digest)
        return tenant_id

    async def read(self, tenant_id: str, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        """One read-only statement as ``tenant_id`` (the report steps of ``api.reports``)."""
        return await self._run(tenant_id, statement, parameters)

    async def write(self, tenant_id: str, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        """One statement as ``tenant_id`` in a READ WRITE transaction (the role's sessions are
        read-only by default). The role has no write grants: ``statement`` calls one of the
        SECURITY DEFINER functions that take the tenant from the bound key (migration 0007)."""
        digest = self._digest_for(tenant_id)
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(SET_READ_WRITE)
                cursor = AsyncClientCursor(conn, row_factory=tuple_row)
                await cursor.execute(BIND_REQUEST, (tenant_id, digest.hex()))
                await cursor.execute(statement, parameters)
                return await cursor.fetchall()
        except PoolTimeout as exc:
            raise ApiProblemError(
                SERVICE_UNAVAILABLE, "no database connection free in time"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the write took too long") from exc
        except psycopg.OperationalError as exc:
            self.sweep()
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the database is unreachable") from exc

    async def balance(
        self, tenant_id: str, account_id: str, *, as_of: datetime | None
    ) -> Balance | None:
        if as_of is None:
            rows = await self._run(tenant_id, SELECT_BALANCE, (tenant_id, account_id))
        else:
            parameters = (as_of, tenant_id, account_id, as_of)
            rows = await self._run(tenant_id, SELECT_BALANCE_AS_OF, parameters)
        return Balance(tenant_id, *rows[0]) if rows else None

    async def history(
        self, tenant_id: str, account_id: str, *, after: str | None, limit: int
    ) -> HistoryPage:
        if after is None:
            rows = await self._run(tenant_id, SELECT_HISTORY_FIRST, (tenant_id, account_id, limit))
        else:
            try:
                sequence, kind, transfer_id = parse_cursor(after)
            except QueryError as exc:
                raise ApiProblemError(INVALID_PARAMETER, str(exc), field="after") from exc
            parameters = (tenant_id, account_id, sequence, kind, transfer_id, limit)
            rows = await self._run(tenant_id, SELECT_HISTORY_AFTER, parameters)
        entries = tuple(Entry(*row) for row in rows)
        return HistoryPage(entries, entries[-1].cursor if len(entries) == limit else None)

    async def transfer(self, tenant_id: str, transfer_id: str) -> TransferView | None:
        rows = await self._run(tenant_id, SELECT_TRANSFER, (tenant_id, transfer_id))
        return TransferView(tenant_id, *rows[0]) if rows else None

    async def monitors(self, tenant_id: str) -> tuple[MonitorView, ...]:
        """The tenant's live balance monitors, in creation order (at most
        ``monitors_per_tenant_max``: no paging)."""
        rows = await self._run(tenant_id, SELECT_MONITORS, (tenant_id,))
        return tuple(monitor_from_row(row) for row in rows)

    async def transaction(self, tenant_id: str, transaction_id: str) -> TransactionView | None:
        rows = await self._run(tenant_id, SELECT_TRANSACTION, (tenant_id, transaction_id))
        return transaction_from_rows(tenant_id, rows)
