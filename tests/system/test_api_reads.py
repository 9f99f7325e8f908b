"""The API's tenant-scoped read path against PostgreSQL.

``api.reads.run_bound`` with hostile strings: the same rows as the parameterised query (values
bound by the server), and where it quotes by hand (``quoted_text``, decision 0117) exactly the
text psycopg's client cursor makes. ``ApiReader``'s reads on a one-connection pool: a statement
timeout, a cancelled request and a lost connection each end as before (503 problem, or the
cancellation) and give the connection back, so the next read is served.

Uses the shared ``stack_settings`` fixture (tests/conftest.py): its PostgreSQL only.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import AsyncClientCursor

from api import reads
from api.problems import SERVICE_UNAVAILABLE, ApiProblemError
from api.reads import BIND_REQUEST, ApiReader, quoted_text, run_bound, transformer_for
from api.settings import build_api_settings
from streamledger.settings import Settings

# The bound settings and two values, read back: every parameter of run_bound is in the rows.
ECHO = (
    "SELECT current_setting('streamledger.tenant_id'),"
    " current_setting('streamledger.api_key_sha256'), %s::text, %s::text"
)
REFERENCE = "SELECT %s::text, %s::text, %s::text, %s::text"
HOSTILE = st.sampled_from(
    ["'", "''", "\\", "\\'", "'; SELECT 1; --", "%s", "%%", "$$", "E'\\''", "é", " ", "a\nb"]
)
TEXT = st.text(  # PostgreSQL text holds no NUL; surrogates are not UTF-8
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
QUOTE_FREE = st.text(alphabet="abcXYZ019._:@-", max_size=30)
VALUE = st.one_of(HOSTILE, TEXT, QUOTE_FREE)


async def both_ways(dsn: str, parameters: tuple[str, str, str, str]) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        bound = BIND_REQUEST + "; " + ECHO
        by_hand = quoted_text(bound, parameters)
        assert by_hand is None or by_hand == AsyncClientCursor(conn).mogrify(bound, parameters)
        read = await run_bound(conn, ECHO, parameters)
        reference = await (await conn.execute(REFERENCE, parameters)).fetchall()
        assert read == reference == [parameters]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(VALUE, VALUE, VALUE, VALUE))
@example(("acme", "00ff", "acct-1", "acct-2"))  # quoted by hand
@example(("acme", "00ff", "acct-1", "'; SELECT pg_sleep(10); --"))
@example(("acme", "00ff", "acct-1", "\\'; --"))
def test_run_bound_reads_hostile_strings_as_the_parameterised_query(
    stack_settings: Settings, parameters: tuple[str, str, str, str]
) -> None:
    asyncio.run(both_ways(stack_settings.database_dsn, parameters))


TENANT = "acme"
DIGEST = bytes(32)
SLOW = "SELECT pg_sleep(30)"
SETTINGS_READ = "SELECT current_setting('streamledger.tenant_id')"
STATEMENT_TIMEOUT_MS = 200
BACKEND_WAIT_TIMEOUT_S = 10.0
POOL_TIMEOUT_MS = 10_000
ACTIVE_BACKEND = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'"


def one_connection_reader(stack_settings: Settings) -> ApiReader:
    limits = {
        "pool_size_max": 1,
        "statement_timeout_ms": STATEMENT_TIMEOUT_MS,
        "pool_timeout_ms": POOL_TIMEOUT_MS,  # a replaced connection comes in time under load
    }
    api = build_api_settings(stack_settings, reader_url=stack_settings.database_dsn, limits=limits)
    reader = ApiReader(api)
    reader._remember_binding(TENANT, DIGEST)
    return reader


async def refused(reader: ApiReader, statement: str) -> str:
    with pytest.raises(ApiProblemError) as caught:
        await reader.read(TENANT, statement, ())
    assert caught.value.kind is SERVICE_UNAVAILABLE
    return str(caught.value)


async def backend_pid(reader: ApiReader) -> int:
    rows = await reader.read(TENANT, "SELECT pg_backend_pid()", ())
    pid: int = rows[0][0]
    return pid


async def running(dsn: str, pid: int) -> None:
    """Waits (bounded) until the backend ``pid`` runs a query."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        async with asyncio.timeout(BACKEND_WAIT_TIMEOUT_S):
            while await (await admin.execute(ACTIVE_BACKEND, (pid,))).fetchone() is None:
                await asyncio.sleep(0.01)


async def terminate(dsn: str, pid: int) -> None:
    """Ends the backend and waits (bounded) until PostgreSQL no longer lists it."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        async with asyncio.timeout(BACKEND_WAIT_TIMEOUT_S):
            while await (
                await admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            ).fetchone():
                await asyncio.sleep(0.05)


async def reads_end_and_give_the_connection_back(dsn: str, reader: ApiReader) -> None:
    await reader.open()
    try:
        pid = await backend_pid(reader)
        assert "took too long" in await refused(reader, SLOW)
        assert await reader.read(TENANT, SETTINGS_READ, ()) == [(TENANT,)]
        slow = asyncio.create_task(reader.read(TENANT, SLOW, ()))
        await running(dsn, pid)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await reader.read(TENANT, SETTINGS_READ, ()) == [(TENANT,)]
        # The same backend all along: the cancelled query was cancelled in PostgreSQL too, so
        # the connection came back idle and was kept, not replaced.
        assert await backend_pid(reader) == pid
        await terminate(dsn, pid)
        assert "unreachable" in await refused(reader, SETTINGS_READ)
        assert await reader.read(TENANT, SETTINGS_READ, ()) == [(TENANT,)]
    finally:
        await reader.close()


def test_a_failed_or_cancelled_read_gives_its_connection_back(stack_settings: Settings) -> None:
    reader = one_connection_reader(stack_settings)
    asyncio.run(reads_end_and_give_the_connection_back(stack_settings.database_dsn, reader))


async def decoders_kept(dsn: str, kept: dict[object, object]) -> None:
    connections = [await psycopg.AsyncConnection.connect(dsn) for _ in range(4)]
    first, second, third, fourth = connections
    try:
        decoder = transformer_for(first)
        assert transformer_for(first) is decoder  # one per connection, kept
        transformer_for(second)
        await first.close()
        transformer_for(third)  # two kept already: the closed one goes
        assert set(kept) == {second, third}
        transformer_for(fourth)  # two kept, both open: all go (only a flood of connections)
        assert set(kept) == {fourth}
    finally:
        for connection in connections:
            await connection.close()


def test_a_connection_keeps_one_row_decoder_until_it_is_closed(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: dict[object, object] = {}
    monkeypatch.setattr(reads, "TRANSFORMERS", kept)
    monkeypatch.setattr(reads, "TRANSFORMERS_MAX", 2)
    asyncio.run(decoders_kept(stack_settings.database_dsn, kept))
