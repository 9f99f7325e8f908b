"""The projection's two ways to ``COPY`` rows give the same data (review finding, issue 17).

``projections.store.copy_rows`` sends rows through ``cursor.copy``; ``binary_copy_data`` formats
them into bytes on the preparing thread (``format_rows``, decision 0111), which ``copy_data``
sends later. Two checks, on the real PostgreSQL and the writer connection's adapters
(``prepare_session``):

- the bytes, parsed here as the PGCOPY format (signature, flags, header extension; per tuple an
  int16 field count, per field an int32 length, -1 for NULL, and its bytes; the trailer -1) and
  each field read back with PostgreSQL's binary loader of its column type, are exactly the rows;
- both paths, loaded into two temporary tables of the same column types, leave equal tables.

For every ``*_TYPES`` column list in ``projections.store`` (arbitrary rows of those types), and
for ``format_rows`` of a planned workload against the rows ``write_rows`` would ``copy_rows``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.abc import Loader
from psycopg.pq import Format

from projections import store
from projections.batch import fold_transfers, plan_batch
from streamledger.settings import Settings
from workloads.projection_events import generate

pytestmark = pytest.mark.system

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
TRAILER = -1
NULL_LENGTH = -1
HEADER = struct.Struct("!ii")  # flags, header extension length
FIELD_COUNT = struct.Struct("!h")
FIELD_LENGTH = struct.Struct("!i")

COLUMN_TYPES = {
    name: getattr(store, name) for name in sorted(dir(store)) if name.endswith("_TYPES")
}
ROWS_MAX = 6
EXAMPLES_PER_TYPES = 25

texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
VALUES: dict[str, st.SearchStrategy[object]] = {
    "text": texts,
    "int2": st.integers(-(2**15), 2**15 - 1),
    "int4": st.integers(-(2**31), 2**31 - 1),
    "int8": st.integers(-(2**63), 2**63 - 1),
    "bool": st.booleans(),
    "bytea": st.binary(max_size=40),
    "timestamptz": st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    "jsonb": st.dictionaries(texts, texts, max_size=4),
    "text[]": st.lists(texts, max_size=4),
}


def rows_of(types: Sequence[str]) -> st.SearchStrategy[list[tuple[object, ...]]]:
    row = st.tuples(*(st.none() | VALUES[name] for name in types))
    return st.lists(row, min_size=1, max_size=ROWS_MAX)


@pytest.fixture(scope="module")
def connection(stack_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection set up as the projection's writer (its ``jsonb`` dumper, staging tables)."""
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as conn:
        store.prepare_session(conn)
        yield conn


def parse_copy_data(data: bytes) -> list[list[bytes | None]]:
    """Each tuple's fields of binary ``COPY`` data, as bytes (``None``: NULL)."""
    assert data.startswith(SIGNATURE), data[: len(SIGNATURE)]
    flags, extension_length = HEADER.unpack_from(data, len(SIGNATURE))
    assert flags == 0 and extension_length >= 0
    position = len(SIGNATURE) + HEADER.size + extension_length
    tuples: list[list[bytes | None]] = []
    while True:
        (count,) = FIELD_COUNT.unpack_from(data, position)
        position += FIELD_COUNT.size
        if count == TRAILER:
            assert position == len(data), "bytes after the trailer"
            return tuples
        fields: list[bytes | None] = []
        for _ in range(count):
            (length,) = FIELD_LENGTH.unpack_from(data, position)
            position += FIELD_LENGTH.size
            if length == NULL_LENGTH:
                fields.append(None)
                continue
            assert length >= 0 and position + length <= len(data)
            fields.append(data[position : position + length])
            position += length
        tuples.append(fields)


def decoded_rows(
    cursor: psycopg.Cursor[Any], types: Sequence[str], data: bytes
) -> list[tuple[object, ...]]:
    """The rows ``data`` holds, each field read with the binary loader of its column type."""
    loaders: list[Loader] = []
    for name in types:
        oid = cursor.adapters.types.get_oid(name)
        loader_class = cursor.adapters.get_loader(oid, Format.BINARY)
        assert loader_class is not None, name
        loaders.append(loader_class(oid, cursor))
    rows: list[tuple[object, ...]] = []
    for fields in parse_copy_data(data):
        assert len(fields) == len(types)
        rows.append(
            tuple(
                None if field is None else loader.load(field)
                for loader, field in zip(loaders, fields, strict=True)
            )
        )
    return rows


COPIED_ROWS, COPIED_DATA = "copied_rows", "copied_data"  # what each path loaded
# STAGED_PARTS' plain inserts, in their order (the balances' upsert is the write path's tests')
COPIED_TYPES = (store.ENTRY_TYPES, store.CHAIN_TYPES, store.TRANSFER_TYPES)
DIFFERENT_ROWS = (
    "SELECT count(*) FROM ((TABLE pg_temp.copied_rows EXCEPT ALL TABLE pg_temp.copied_data)"
    " UNION ALL (TABLE pg_temp.copied_data EXCEPT ALL TABLE pg_temp.copied_rows)) AS d"
)


class LoadedTables:
    """Two session-local tables of the same column types, one per ``COPY`` path."""

    def __init__(self, conn: psycopg.Connection[Any], types: Sequence[str]) -> None:
        self.conn, self.types = conn, types
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(f"c{index}"), sql.SQL(name_of_type))
            for index, name_of_type in enumerate(types)
        )
        self.copy: dict[str, sql.Composed] = {}
        for name in (COPIED_ROWS, COPIED_DATA):
            table = sql.Identifier(name)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(table))
            conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} ({})").format(table, columns))
            self.copy[name] = sql.SQL("COPY pg_temp.{} FROM STDIN (FORMAT BINARY)").format(table)

    def check(self, rows: Sequence[Sequence[object]]) -> bytes:
        """``rows``' binary ``COPY`` data, after checking it decodes to ``rows`` and loads the
        same table as ``copy_rows`` of ``rows``."""
        conn, types = self.conn, self.types
        with conn.cursor() as cursor:
            data = store.binary_copy_data(cursor, types, rows)
            assert decoded_rows(cursor, types, data) == [tuple(row) for row in rows]
        with conn.transaction():
            conn.execute("DELETE FROM pg_temp.copied_rows; DELETE FROM pg_temp.copied_data")
            store.copy_rows(conn, self.copy[COPIED_ROWS], types, rows)
            store.copy_data(conn, self.copy[COPIED_DATA], data)
            loaded = conn.execute("SELECT count(*) FROM pg_temp.copied_data").fetchone()
            assert loaded == (len(rows),)
            assert conn.execute(DIFFERENT_ROWS).fetchone() == (0,)
        return data


@pytest.mark.parametrize("types_name", sorted(COLUMN_TYPES))
def test_binary_copy_data_is_the_rows_copy_rows_writes(
    connection: psycopg.Connection[Any], types_name: str
) -> None:
    types = COLUMN_TYPES[types_name]
    tables = LoadedTables(connection, types)

    @settings(
        max_examples=EXAMPLES_PER_TYPES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rows=rows_of(types))
    def check(rows: list[tuple[object, ...]]) -> None:
        tables.check(rows)

    check()


def test_no_rows_format_no_bytes(connection: psycopg.Connection[Any]) -> None:
    with connection.cursor() as cursor:
        assert store.binary_copy_data(cursor, store.ENTRY_TYPES, []) == b""


@pytest.mark.parametrize("seed", [5, 17])
def test_format_rows_is_the_rows_write_rows_would_copy(
    connection: psycopg.Connection[Any], seed: int
) -> None:
    """A batch of more than ``staged_rows_max`` rows (the default 0: any batch): one ``COPY``
    per table (decision 0127)."""
    events = generate(seed, tenants=3, commands=120).events
    plan = plan_batch(events)
    with connection.cursor() as cursor:
        formatted = store.format_rows(cursor, plan, staged_rows_max=0)
    assert formatted.plan is plan and not plan.existing_transfer_keys()
    assert formatted.staged == b"" and formatted.staged_rows == ()
    transfers = fold_transfers({}, plan.transfer_events)
    assert formatted.transfers == transfers
    created = [row for key, row in transfers.items() if key in plan.created_transfers]
    assert len(created) == len(transfers) > 0
    for types, rows, data in (
        (store.ENTRY_TYPES, plan.entries, formatted.entries),
        (store.CHAIN_TYPES, plan.chain, formatted.chain),
        (store.TRANSFER_TYPES, created, formatted.created_transfers),
    ):
        assert rows and LoadedTables(connection, types).check(rows) == data
    # A batch that changes transfers created before it: the writer folds and formats those.
    later = plan_batch(events[len(events) // 2 :])
    assert later.existing_transfer_keys()
    with connection.cursor() as cursor:
        formatted_later = store.format_rows(cursor, later, staged_rows_max=0)
    assert formatted_later.transfers is None and formatted_later.created_transfers == b""
    entries = LoadedTables(connection, store.ENTRY_TYPES).check(later.entries)
    assert entries == formatted_later.entries


@pytest.mark.parametrize("seed", [5, 17])
def test_a_small_batch_is_formatted_as_one_staged_copy(
    connection: psycopg.Connection[Any], seed: int
) -> None:
    """At most ``staged_rows_max`` rows: the journal, chain, created transfers and balances in one
    ``COPY`` of ``rows_staging``, each row its table's columns where ``INSERT_STAGED`` reads
    them."""
    events = generate(seed, tenants=3, commands=120).events
    plan = plan_batch(events)
    transfers = fold_transfers({}, plan.transfer_events)
    created = [row for key, row in transfers.items() if key in plan.created_transfers]
    parts = (
        (store.STAGED_ENTRY, plan.entries),
        (store.STAGED_CHAIN, plan.chain),
        (store.STAGED_TRANSFER, created),
        (store.STAGED_BALANCE, list(plan.balances.values())),
    )
    row_count = sum(len(rows) for _, rows in parts)
    assert row_count > 0
    with connection.cursor() as cursor:
        assert store.format_rows(cursor, plan, staged_rows_max=row_count - 1).staged == b""
        formatted = store.format_rows(cursor, plan, staged_rows_max=row_count)
    assert formatted.transfers == transfers
    assert (formatted.entries, formatted.chain, formatted.created_transfers) == (b"", b"", b"")
    assert formatted.staged_rows == tuple((kind, len(rows)) for kind, rows in parts)
    staged = list(store.staged_rows(parts))
    assert LoadedTables(connection, store.STAGED_TYPES).check(staged) == formatted.staged
    start = 1
    for (kind, rows), part in zip(parts, store.STAGED_PARTS, strict=True):
        width = len(part[3])
        of_kind = [row for row in staged if row[0] == kind]
        assert [row[start : start + width] for row in of_kind] == [tuple(row) for row in rows]
        assert all(
            field is None for row in of_kind for field in row[1:start] + row[start + width :]
        )
        start += width
    # The same rows through rows_staging and INSERT_STAGED land as COPY would put them.
    with connection.transaction():
        store.copy_data(connection, store.COPY_ROWS_STAGING, formatted.staged)
        for (kind, rows), types in zip(parts[: len(COPIED_TYPES)], COPIED_TYPES, strict=True):
            tables = LoadedTables(connection, types)
            store.copy_rows(connection, tables.copy[COPIED_ROWS], types, rows)
            select = store.INSERT_STAGED[kind].as_string(connection).split(" SELECT ", 1)[1]
            connection.execute(f"INSERT INTO pg_temp.copied_data SELECT {select}")
            assert connection.execute(DIFFERENT_ROWS).fetchone() == (0,)
