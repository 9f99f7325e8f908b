"""``api.reads.run_bound`` answers as psycopg's cursors do (review finding, issue 17).

``run_bound`` sends ``BIND_REQUEST; statement`` through the connection's libpq handle and
decodes the rows with psycopg's ``Transformer``, without a cursor: psycopg internals
(tests/unit/test_api_run_bound_internals.py checks they exist). Against the real PostgreSQL,
for a range of values, its rows (values and Python types) must equal those of

- a normal ``AsyncCursor`` (server-side parameters) running ``BIND_REQUEST`` then the statement
  in one transaction, and
- an ``AsyncClientCursor`` running the same one simple query (what ``run_bound`` claims to send);

the bound settings must cover the statement only; a server error must raise the cursor's
exception class and leave the connection idle and usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import AsyncClientCursor

from api.reads import BIND_REQUEST, run_bound
from streamledger.settings import Settings

pytestmark = pytest.mark.system

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Rows = list[tuple[Any, ...]]
Session = tuple[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]]

# Entity ids (the API's usual parameters) and any text PostgreSQL stores: quotes, backslashes,
# percent signs, non-ASCII; no NUL (a text value cannot hold one), no lone surrogate.
entity_ids = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-", max_size=24
)
texts = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=24
) | st.sampled_from(["'", "''", "\\", "\\'", "%", "%s", "%%", "$1", "E'x'", "a'; SELECT 1; --"])
values = st.one_of(
    entity_ids,
    texts,
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12)),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))]),
    ),
    st.binary(max_size=16),
)
digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
tenants = entity_ids | texts

SETTINGS_SEEN = (
    "current_setting('streamledger.tenant_id', true),"
    " current_setting('streamledger.api_key_sha256', true)"
)
VALUE_STATEMENT = "SELECT %s, " + SETTINGS_SEEN
ROWS_STATEMENT = (
    "SELECT g, %s::text, %s::text LIKE '%%''%%' FROM generate_series(1, %s::int) AS g ORDER BY g"
)
ROWS_MAX = 3


@pytest.fixture(scope="module")
def session(stack_settings: Settings) -> Iterator[Session]:
    """An event loop and an autocommit connection on it, as the API's pool opens them."""
    loop = asyncio.new_event_loop()
    connect = psycopg.AsyncConnection.connect(stack_settings.database_dsn, autocommit=True)
    conn = loop.run_until_complete(connect)
    try:
        yield loop, conn
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


async def through_cursor(
    conn: psycopg.AsyncConnection[Any], statement: str, parameters: tuple[Any, ...]
) -> Rows:
    """A normal cursor: parameters bound by the server, one statement per round trip."""
    tenant_id, digest, *rest = parameters
    async with conn.transaction(), conn.cursor() as cursor:
        await cursor.execute(BIND_REQUEST, (tenant_id, digest))
        await cursor.execute(statement, rest)
        return await cursor.fetchall()


async def through_client_cursor(
    conn: psycopg.AsyncConnection[Any], statement: str, parameters: tuple[Any, ...]
) -> Rows:
    """psycopg's client cursor sending ``BIND_REQUEST; statement`` as one simple query."""
    async with AsyncClientCursor(conn) as cursor:
        await cursor.execute(BIND_REQUEST + "; " + statement, parameters)
        assert cursor.nextset()
        return await cursor.fetchall()


def typed(rows: Rows) -> list[tuple[tuple[type, Any], ...]]:
    """Rows with each value's type beside it: ``1 == Decimal(1) == True`` must not pass."""
    return [tuple((type(value), value) for value in row) for row in rows]


def answers(session: Session, statement: str, parameters: tuple[Any, ...]) -> list[Rows]:
    loop, conn = session

    async def all_three() -> list[Rows]:
        return [
            await run_bound(conn, statement, parameters),
            await through_cursor(conn, statement, parameters),
            await through_client_cursor(conn, statement, parameters),
        ]

    return loop.run_until_complete(all_three())


@EXAMPLES
@given(tenant_id=tenants, digest=digests, value=values)
def test_run_bound_reads_a_value_as_the_cursors_do(
    session: Session, tenant_id: str, digest: str, value: object
) -> None:
    bound, cursor, client_cursor = answers(session, VALUE_STATEMENT, (tenant_id, digest, value))
    assert typed(bound) == typed(cursor) == typed(client_cursor)
    assert bound == [(value, tenant_id, digest)]


@EXAMPLES
@given(tenant_id=entity_ids, digest=digests, text=texts, count=st.integers(0, ROWS_MAX))
def test_run_bound_reads_no_one_or_several_rows_as_the_cursors_do(
    session: Session, tenant_id: str, digest: str, text: str, count: int
) -> None:
    parameters = (tenant_id, digest, text, text, count)
    bound, cursor, client_cursor = answers(session, ROWS_STATEMENT, parameters)
    assert typed(bound) == typed(cursor) == typed(client_cursor)
    assert bound == [(row, text, "'" in text) for row in range(1, count + 1)]


def test_the_bound_settings_end_with_the_read(session: Session) -> None:
    loop, conn = session
    rows = loop.run_until_complete(
        run_bound(conn, "SELECT " + SETTINGS_SEEN, ("tenant-a", "ab" * 32))
    )
    assert rows == [("tenant-a", "ab" * 32)]
    after = loop.run_until_complete(conn.execute("SELECT " + SETTINGS_SEEN))
    assert loop.run_until_complete(after.fetchall()) in ([("", "")], [(None, None)])


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("SELECT 1 / %s::int", psycopg.errors.DivisionByZero),
        ("SELECT %s::int FROM no_such_table_run_bound", psycopg.errors.UndefinedTable),
        ("SELECT %s::int, pg_sleep(10)", psycopg.errors.QueryCanceled),
    ],
)
def test_run_bound_raises_the_cursors_error_and_leaves_the_connection_usable(
    session: Session, statement: str, error: type[psycopg.Error]
) -> None:
    loop, conn = session
    parameters = ("tenant-a", "ab" * 32, 0)

    async def failing(read: Any) -> type[BaseException]:
        await conn.execute("SET statement_timeout = 50")  # the API's pool sets one too
        try:
            await read(conn, statement, parameters)
        except psycopg.Error as exc:
            return type(exc)
        finally:
            await conn.execute("RESET statement_timeout")
        raise AssertionError(f"{statement!r} did not fail")

    assert loop.run_until_complete(failing(run_bound)) is error
    assert loop.run_until_complete(failing(through_cursor)) is error
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    rows = loop.run_until_complete(run_bound(conn, "SELECT %s::int", ("tenant-a", "ab" * 32, 7)))
    assert rows == [(7,)]
