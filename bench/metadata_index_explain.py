"""EXPLAIN ANALYZE of metadata search over a few 100k transfers, per index variant (decision 0056).

    .venv/bin/python -m bench.metadata_index_explain [--rows 300000] [--keep] [--api-only]

Makes a scratch database on the PostgreSQL the settings point at (``STREAMLEDGER_*``),
migrates it, fills ``ledger.transfers`` with ``--rows`` transfers of one tenant plus a quarter as
many of another (metadata: a unique-ish ``order_id`` on 70 %, ``channel`` of 3 values on 50 %,
an ``external_ref`` on 20 %, nothing on the rest — like a ledger whose clients tag most
payments), then for each index variant runs the API's statements as the read role (row-level
security applies) and prints execution time (median of 5 warm runs) and the plan's top node:

- ``none``:            no JSONB index (the creation-order btree only);
- ``gin_ops``:         GIN ``jsonb_ops`` over every row;
- ``gin_path_partial``: GIN ``jsonb_path_ops``, partial ``WHERE metadata <> '{}'``;
- ``expression``:      btree on ``(tenant_id, (metadata->>'order_id'))``: one key only.

Each variant runs the JSONB statement (``metadata @> $m`` on ``transfers``, with and without
the ``WITH ... MATERIALIZED`` that finds matches before ordering), as the read role and as the
table owner (no row-level security), and the statement the API runs
(``projections.search.transfer_statement``: the ``transfer_metadata`` btree of migration 0009).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from infra import postgres_server
from projections.migrations import apply_migrations
from projections.search import TRANSFER_COLUMNS, TransferSearch, transfer_statement
from schemas.event_time import to_datetime
from streamledger.settings import Settings, load_settings, replace

TENANT = "acme"
OTHER = "globex"
T0_US = 1_800_000_000_000_000
RUNS = 5
DROP_METADATA_INDEX = "DROP INDEX IF EXISTS ledger.transfers_metadata_idx"
VARIANTS = {
    "none": None,
    "gin_ops": "CREATE INDEX transfers_metadata_idx ON ledger.transfers USING gin (metadata)",
    "gin_path_partial": (
        "CREATE INDEX transfers_metadata_idx ON ledger.transfers USING gin"
        " (metadata jsonb_path_ops) WHERE metadata <> '{}'::jsonb"
    ),
    "expression": (
        "CREATE INDEX transfers_metadata_idx ON ledger.transfers"
        " (tenant_id, (metadata->>'order_id'))"
    ),
}
# The rows: metadata from the row number alone, so every run makes the same table.
FILL = (
    "INSERT INTO ledger.transfers (tenant_id, transfer_id, debit_account_id, credit_account_id,"
    " currency, amount, pending, status, amount_posted, created_sequence, last_sequence,"
    " created_at, updated_at, metadata)"
    " SELECT %s, 't-' || n, 'a-' || (n %% 97), 'b-' || (n %% 89), 'USD', 100, false, 'posted',"
    " 100, n, n, to_timestamp((%s + n::bigint * 1000000) / 1e6),"
    " to_timestamp((%s + n::bigint * 1000000) / 1e6),"
    " jsonb_strip_nulls(jsonb_build_object("
    "   'order_id', CASE WHEN n %% 10 < 7 THEN 'O-' || (n / 2) END,"
    "   'channel', CASE WHEN n %% 2 = 0 THEN (ARRAY['web','app','pos'])[1 + n %% 3] END,"
    "   'external_ref', CASE WHEN n %% 5 = 0 THEN 'psp-' || n END))"
    " FROM generate_series(1, %s) AS n"
)
# What the projection writes to the search index for those rows (projections.batch).
FILL_METADATA_INDEX = (
    "INSERT INTO ledger.transfer_metadata (tenant_id, key, value, created_sequence, transfer_id)"
    " SELECT t.tenant_id, e.key, e.value, t.created_sequence, t.transfer_id"
    " FROM ledger.transfers AS t, jsonb_each_text(t.metadata) AS e"
)


def queries(rows: int) -> dict[str, TransferSearch]:
    middle = to_datetime(T0_US + rows // 2 * 1_000_000)
    order = (("order_id", f"O-{rows // 3}"),)
    return {
        "order_id (1-2 rows)": TransferSearch(metadata=order),
        "order_id + to (point in time)": TransferSearch(metadata=order, created_to=middle),
        "channel=web (1/6 of rows), page of 100": TransferSearch(metadata=(("channel", "web"),)),
        "no metadata filter, page of 100": TransferSearch(),
    }


def jsonb_statement(search: TransferSearch, *, materialized: bool) -> tuple[str, tuple[Any, ...]]:
    """The JSONB-only statement: containment on ``transfers.metadata``, newest first."""
    where = "tenant_id = %s"
    parameters: list[Any] = [TENANT]
    if search.metadata:
        where += " AND metadata @> %s::jsonb AND metadata <> '{}'::jsonb"
        parameters.append(json.dumps(dict(search.metadata)))
    if search.created_to is not None:
        where += " AND created_at < %s"
        parameters.append(search.created_to)
    select = f"SELECT {TRANSFER_COLUMNS} FROM ledger.transfers WHERE {where}"
    if materialized and search.metadata:
        select = f"WITH matched AS MATERIALIZED ({select}) SELECT * FROM matched"
    order = " ORDER BY created_sequence DESC, transfer_id DESC LIMIT 100"
    return select + order, tuple(parameters)


def fill(settings: Settings, rows: int) -> None:
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        conn.execute(FILL, (TENANT, T0_US, T0_US, rows))
        conn.execute(FILL, (OTHER, T0_US, T0_US, rows // 4))
        conn.execute(FILL_METADATA_INDEX)
        conn.execute("VACUUM ANALYZE ledger.transfers")
        conn.execute("VACUUM ANALYZE ledger.transfer_metadata")


def measure(dsn: str, statement: str, parameters: tuple[Any, ...]) -> tuple[float, str]:
    """Median execution time (ms) of ``RUNS`` warm runs, and the first scan node of the plan."""
    times, plan = [], ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(RUNS + 1):
            with conn.transaction():
                conn.execute("SELECT set_config('streamledger.tenant_id', %s, true)", (TENANT,))
                lines = [row[0] for row in conn.execute("EXPLAIN ANALYZE " + statement, parameters)]
            times.append(float(lines[-1].split()[2]))
            plan = next(line.strip() for line in lines if "Scan" in line)
    return statistics.median(times[1:]), plan.split("  (")[0]


def index_size(settings: Settings, index: str) -> str:
    with psycopg.connect(settings.database_dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(pg_size_pretty(pg_relation_size(to_regclass(%s))), '-')", (index,)
        ).fetchone()
    return str(row[0]) if row else "-"


def report(*columns: str | float) -> None:
    """label, index size, role, milliseconds, query, plan: one line."""
    label, size, role, milliseconds, name, plan = columns
    print(f"{label:<24} {size:>8} {role:<15} {milliseconds:9.3f} ms  {name:<40} {plan}")


def run(settings: Settings, rows: int, *, api_only: bool) -> None:
    fill(settings, rows)
    reader = make_conninfo(
        settings.database_dsn,
        user=postgres_server.READER_ROLE,
        password=postgres_server.READER_PASSWORD,
    )
    roles = {"reader (RLS)": reader, "owner (no RLS)": settings.database_dsn}
    size = index_size(settings, "ledger.transfer_metadata_pkey")
    for name, search in queries(rows).items():
        milliseconds, plan = measure(reader, *transfer_statement(TENANT, search))
        report("api: transfer_metadata", size, "reader (RLS)", milliseconds, name, plan)
    if api_only:
        return
    for variant, create in VARIANTS.items():
        with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
            conn.execute(DROP_METADATA_INDEX)
            if create is not None:
                conn.execute(create)
            conn.execute("ANALYZE ledger.transfers")
        size = index_size(settings, "ledger.transfers_metadata_idx")
        for (role, dsn), materialized in itertools.product(roles.items(), (False, True)):
            label = f"{variant}{' +cte' if materialized else ''}"
            for name, search in queries(rows).items():
                if not search.metadata and (materialized or variant != "none"):
                    continue
                statement = jsonb_statement(search, materialized=materialized)
                milliseconds, plan = measure(dsn, *statement)
                report(label, size, role, milliseconds, name, plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--keep", action="store_true", help="do not drop the scratch database")
    parser.add_argument("--api-only", action="store_true", help="only the API's statement")
    arguments = parser.parse_args()
    stack = load_settings()  # the stack the settings point at (STREAMLEDGER_*), like bench_reports
    database = f"sl_bench_{uuid.uuid4().hex[:12]}"
    postgres_server.create_scratch_database(stack, database)
    url = (
        f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
        f"@127.0.0.1:{stack.postgres_port}/{database}"
    )
    settings = replace(stack, database_url=url)
    try:
        apply_migrations(settings)
        run(settings, arguments.rows, api_only=arguments.api_only)
    finally:
        if not arguments.keep:
            postgres_server.drop_scratch_database(stack, database)


if __name__ == "__main__":
    main()
