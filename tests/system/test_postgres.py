"""The real local PostgreSQL: roles, migrations and tenant isolation by row-level security.

Uses the shared ``stack_settings`` fixture (tests/conftest.py), which starts the test stack.
Tests that need tables of their own migrate a scratch schema (the same migration files a
blue/green rebuild uses) and drop it afterwards, so they never disturb the live ``ledger``
schema other tests project into.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra import postgres_server
from projections import migrations
from projections.migrations import MigrationError, apply_migrations
from projections.rebuild import LIVE_TABLES_IN_LOCK_ORDER
from streamledger.settings import Settings

ALL_MIGRATIONS = [
    "0001_ledger_schema",
    "0002_drop_per_row_foreign_keys",
    "0003_api_keys",
    "0004_tenant_quarantine",
    "0005_force_row_level_security",
    "0006_event_chain",
    "0007_webhooks",
    "0008_multi_leg_transactions",
    "0009_metadata",
    "0010_monitors",
    "0011_webhook_delivery_ids",
    "0012_reconciliation",
    "0013_transaction_metadata",
    "0014_event_actor",
    "0015_camt054_statements",
    "0016_reconciliation_refusals",
]

pytestmark = pytest.mark.system

TENANT_TABLES = (
    *("accounts", "balances", "transfers", "entries", "tenant_heads", "transactions"),
    *("transfer_metadata", "account_metadata"),  # migration 0009
    "monitors",  # migration 0010
    *("statements", "statement_lines", "reconciliation_results"),  # migration 0012
    "transaction_metadata",  # migration 0013
    "reconciliation_refusals",  # migration 0016
)
OPERATIONAL_TABLES = ("projection_offsets", "schema_migrations")
SET_TENANT = "SELECT set_config('streamledger.tenant_id', %s, false)"
AT = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
HASH = bytes(range(32))

INSERT_ACCOUNT = (
    "INSERT INTO accounts (tenant_id, account_id, currency, asset_scale,"
    " debits_must_not_exceed_credits, credits_must_not_exceed_debits, overdraft_limit,"
    " opened_sequence, opened_at) VALUES (%s, %s, 'EUR', 2, %s, %s, NULL, %s, %s)"
)
INSERT_BALANCE = (
    "INSERT INTO balances (tenant_id, account_id, normal_side, debits_posted, credits_posted,"
    " debits_pending, credits_pending, last_sequence, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
INSERT_TRANSFER = (
    "INSERT INTO transfers (tenant_id, transfer_id, debit_account_id, credit_account_id,"
    " currency, amount, pending, status, amount_posted, created_sequence, last_sequence,"
    " created_at, updated_at) VALUES (%s, 't1', 'cash', 'wallet', 'EUR', 100, false,"
    " 'posted', 100, 3, 3, %s, %s)"
)
INSERT_ENTRY = (
    "INSERT INTO entries (tenant_id, account_id, sequence, kind, side, transfer_id, event_type,"
    " currency, amount, debits_posted_after, credits_posted_after, debits_pending_after,"
    " credits_pending_after, effective_at)"
    " VALUES (%s, %s, 3, 'posted', %s, 't1', 'TransferPosted', 'EUR', 100, %s, %s, 0, 0, %s)"
)
INSERT_TRANSACTION = (
    "INSERT INTO transactions (tenant_id, transaction_id, posting_count, currencies, pending,"
    " status, created_sequence, last_sequence, created_at, updated_at)"
    " VALUES (%s, 'x1', 1, '{EUR}', false, 'posted', 4, 4, %s, %s)"
)
INSERT_TRANSFER_METADATA = (
    "INSERT INTO transfer_metadata (tenant_id, key, value, created_sequence, transfer_id)"
    " VALUES (%s, 'order_id', 'A-17', 3, 't1')"
)
INSERT_TRANSACTION_METADATA = (
    "INSERT INTO transaction_metadata (tenant_id, key, value, created_sequence, transaction_id)"
    " VALUES (%s, 'order_id', 'B-2', 4, 'x1')"
)
INSERT_ACCOUNT_METADATA = (
    "INSERT INTO account_metadata (tenant_id, key, value, opened_sequence, account_id)"
    " VALUES (%s, 'team', 'treasury', 1, 'cash')"
)
INSERT_MONITOR = (
    "INSERT INTO monitors (tenant_id, monitor_id, account_id, field, operator, threshold,"
    " created_sequence, created_at) VALUES (%s, 'low', 'wallet', 'available', '<', 50, 3, %s)"
)
INSERT_STATEMENT = (
    "INSERT INTO statements (tenant_id, account_id, file_sha256, format, currency, line_count,"
    " new_line_count, entries_not_booked, imported_at, record_partition, record_offset)"
    " VALUES (%s, 'cash', repeat('a', 64), 'csv', 'EUR', 1, 1, 0, %s, 0, 1)"
)
INSERT_STATEMENT_LINE = (
    "INSERT INTO statement_lines (tenant_id, account_id, line_id, file_sha256, line_number,"
    " amount, currency, direction, reversal, booking_date, record_partition, record_offset)"
    " VALUES (%s, 'cash', 'cash/ref/B1', repeat('a', 64), 1, 100, 'EUR', 'credit', false,"
    " '2024-01-02', 0, 0)"
)
INSERT_RECONCILIATION_RESULT = (
    "INSERT INTO reconciliation_results (tenant_id, account_id, record_partition, record_offset,"
    " state, rule, reason, line_ids, movement_ids, line_amount, movement_amount, decided_at)"
    " VALUES (%s, 'cash', 0, 0, 'matched', 'sum', 'matched', '{cash/ref/B1}', '{x:3#0}', 100,"
    " 100, %s)"
)
INSERT_RECONCILIATION_REFUSAL = (
    "INSERT INTO reconciliation_refusals (tenant_id, account_id, record_partition, record_offset,"
    " request_id, request_type, actor, line_ids, movement_ids, reason, refused_at)"
    " VALUES (%s, 'cash', 0, 1, '0:7', 'ManualMatch', 'alice', '{cash/ref/B2}', '{x:9#0}',"
    " 'neither open nor unmatched: x:9#0', %s)"
)
INSERT_TENANT_HEAD = (
    "INSERT INTO tenant_heads (tenant_id, last_sequence, last_hash, last_effective_at)"
    " VALUES (%s, 3, %s, %s)"
)


# --------------------------------------------------------------------------- fixtures


@contextmanager
def dropped_afterwards(settings: Settings) -> Iterator[str]:
    """A fresh, uniquely named schema, dropped (with everything in it) afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(settings.database_dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@pytest.fixture
def scratch_schema(stack_settings: Settings) -> Iterator[str]:
    with dropped_afterwards(stack_settings) as schema:
        yield schema


@pytest.fixture
def migrated_schema(stack_settings: Settings, scratch_schema: str) -> str:
    assert apply_migrations(stack_settings, schema=scratch_schema) == ALL_MIGRATIONS
    return scratch_schema


@pytest.fixture(scope="module")
def two_tenants(stack_settings: Settings) -> Iterator[tuple[str, str, str]]:
    """Schema, tenant A and tenant B, each with an account pair, a transfer and its entries.

    Shared by the module's read-only tests; a test that changes rows adds a tenant of its own.
    """
    tenant_a, tenant_b = (new_tenant() for _ in range(2))
    with dropped_afterwards(stack_settings) as schema:
        apply_migrations(stack_settings, schema=schema)
        with app_connection(stack_settings, schema) as connection, connection.transaction():
            for tenant in (tenant_a, tenant_b):
                insert_tenant_rows(connection, tenant)
        yield schema, tenant_a, tenant_b


def new_tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def app_connection(settings: Settings, schema: str) -> psycopg.Connection[tuple[object, ...]]:
    connection = psycopg.connect(settings.database_dsn, autocommit=True)
    connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return connection


def reader_connection(
    settings: Settings, schema: str, tenant: str | None
) -> psycopg.Connection[tuple[object, ...]]:
    connection = psycopg.connect(postgres_server.reader_dsn(settings), autocommit=True)
    connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    if tenant is not None:
        connection.execute(SET_TENANT, (tenant,))
    return connection


def insert_tenant_rows(connection: psycopg.Connection[tuple[object, ...]], tenant: str) -> None:
    connection.execute(INSERT_ACCOUNT, (tenant, "cash", False, True, 1, AT))
    connection.execute(INSERT_ACCOUNT, (tenant, "wallet", True, False, 2, AT))
    connection.execute(INSERT_BALANCE, (tenant, "cash", "debit", 100, 0, 0, 0, 3, AT))
    connection.execute(INSERT_BALANCE, (tenant, "wallet", "credit", 0, 100, 0, 0, 3, AT))
    connection.execute(INSERT_TRANSFER, (tenant, AT, AT))
    connection.execute(INSERT_ENTRY, (tenant, "cash", "debit", 100, 0, AT))
    connection.execute(INSERT_ENTRY, (tenant, "wallet", "credit", 0, 100, AT))
    connection.execute(INSERT_TRANSACTION, (tenant, AT, AT))
    connection.execute(INSERT_TRANSFER_METADATA, (tenant,))
    connection.execute(INSERT_ACCOUNT_METADATA, (tenant,))
    connection.execute(INSERT_TRANSACTION_METADATA, (tenant,))
    connection.execute(INSERT_MONITOR, (tenant, AT))
    connection.execute(INSERT_TENANT_HEAD, (tenant, HASH, AT))
    connection.execute(INSERT_STATEMENT, (tenant, AT))
    connection.execute(INSERT_STATEMENT_LINE, (tenant,))
    connection.execute(INSERT_RECONCILIATION_RESULT, (tenant, AT))
    connection.execute(INSERT_RECONCILIATION_REFUSAL, (tenant, AT))


def tenants_visible(connection: psycopg.Connection[tuple[object, ...]], query: str) -> set[str]:
    return {str(row[0]) for row in connection.execute(query.encode()).fetchall()}


# --------------------------------------------------------------------------- server and roles


def test_app_role_connects_over_tcp(stack_settings: Settings) -> None:
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT current_user, current_database(),"
            " current_setting('server_version_num')::int, current_setting('fsync')"
        ).fetchone()
    assert row is not None
    assert row[:2] == ("streamledger", "streamledger")
    assert int(str(row[2])) >= 150000
    assert row[3] == "on"  # a ledger never runs with fsync off


def test_start_again_reports_already_running(stack_settings: Settings) -> None:
    report = postgres_server.start(stack_settings)
    assert report.running
    assert report.detail == "already running"
    assert postgres_server.status(stack_settings).running


def test_roles_have_the_designed_attributes(stack_settings: Settings) -> None:
    with psycopg.connect(**postgres_server.admin_connection_arguments(stack_settings)) as admin:
        rows = admin.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls, rolcreatedb FROM pg_roles"
            " WHERE rolname IN ('streamledger', 'streamledger_reader', 'streamledger_api')"
            " ORDER BY rolname"
        ).fetchall()
        owner = admin.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'streamledger'"
        ).fetchone()
    assert rows == [
        ("streamledger", True, False, True, False),  # BYPASSRLS: writes every tenant (0005)
        ("streamledger_api", True, False, False, False),
        ("streamledger_reader", True, False, False, False),
    ]
    assert owner == ("streamledger",)


def test_wrong_password_is_refused(stack_settings: Settings) -> None:
    dsn = f"postgresql://streamledger:wrong@127.0.0.1:{stack_settings.postgres_port}/streamledger"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=5).close()


# --------------------------------------------------------------------------- migrations


def test_migrations_are_idempotent_on_the_live_schema(stack_settings: Settings) -> None:
    apply_migrations(stack_settings)  # whatever the stack fixture already applied
    assert apply_migrations(stack_settings) == []


def test_fresh_schema_migrates_once(stack_settings: Settings, scratch_schema: str) -> None:
    assert apply_migrations(stack_settings, schema=scratch_schema) == ALL_MIGRATIONS
    assert apply_migrations(stack_settings, schema=scratch_schema) == []
    with app_connection(stack_settings, scratch_schema) as connection:
        recorded = connection.execute(
            "SELECT version, name, checksum FROM schema_migrations"
        ).fetchall()
    assert recorded == [
        (migration.version, migration.name, migration.checksum)
        for migration in migrations.load_migrations()
    ]


def test_a_changed_applied_migration_is_refused(
    stack_settings: Settings, scratch_schema: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id bigint);\n")
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as connection:
        applied = migrations.apply_to_connection(
            connection, migrations.load_migrations(tmp_path), schema=scratch_schema
        )
        assert applied == ["0001_first"]
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id integer);\n")
        (tmp_path / "0002_second.sql").write_text("CREATE TABLE second_table (id bigint);\n")
        with pytest.raises(MigrationError, match="0001_first changed after it was applied"):
            migrations.apply_to_connection(
                connection, migrations.load_migrations(tmp_path), schema=scratch_schema
            )
        # Nothing after the refusal was applied.
        exists = connection.execute(
            "SELECT to_regclass(%s)", (f"{scratch_schema}.second_table",)
        ).fetchone()
    assert exists == (None,)


def test_a_failing_migration_leaves_nothing_behind(
    stack_settings: Settings, scratch_schema: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_broken.sql").write_text(
        "CREATE TABLE half_done (id bigint);\nCREATE TABLE half_done (id bigint);\n"
    )
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as connection:
        with pytest.raises(MigrationError, match="0001_broken failed"):
            migrations.apply_to_connection(
                connection, migrations.load_migrations(tmp_path), schema=scratch_schema
            )
        leftover = connection.execute(
            "SELECT to_regclass(%s)", (f"{scratch_schema}.half_done",)
        ).fetchone()
    assert leftover == (None,)


def test_money_columns_are_never_floating_point(stack_settings: Settings) -> None:
    apply_migrations(stack_settings)
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as connection:
        floats = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'ledger' AND data_type IN ('real', 'double precision', 'money')"
        ).fetchall()
    assert floats == []


def test_a_rebuild_swap_locks_every_live_table(stack_settings: Settings) -> None:
    """The swap drops the retired schema: a table it did not lock first (in the readers' order)
    is locked by the DROP in another order, and a reader of it can deadlock with the swap."""
    apply_migrations(stack_settings)
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as connection:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'ledger' AND c.relkind = 'r'"
            ).fetchall()
        }
    assert tables - {"schema_migrations"} <= set(LIVE_TABLES_IN_LOCK_ORDER)


def test_every_tenant_table_has_row_level_security(stack_settings: Settings) -> None:
    apply_migrations(stack_settings)
    with psycopg.connect(stack_settings.database_dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT c.relname, c.relrowsecurity, count(p.policyname)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname"
            " WHERE n.nspname = 'ledger' AND c.relkind = 'r'"
            " GROUP BY c.relname, c.relrowsecurity ORDER BY c.relname"
        ).fetchall()
        primary_keys = connection.execute(
            "SELECT conrelid::regclass::text, (SELECT attname FROM pg_attribute"
            "  WHERE attrelid = conrelid AND attnum = conkey[1])"
            " FROM pg_constraint WHERE contype = 'p'"
            " AND connamespace = 'ledger'::regnamespace"
        ).fetchall()
    protected = {str(name): (bool(rls), int(str(count))) for name, rls, count in rows}
    for table in TENANT_TABLES:
        assert protected[table] == (True, 2), table  # reader: named tenant; API: bound key
    for table in OPERATIONAL_TABLES:
        assert protected[table] == (False, 0), table
    for table, first_column in primary_keys:
        if str(table).removeprefix("ledger.") not in OPERATIONAL_TABLES:
            assert first_column == "tenant_id", table


# --------------------------------------------------------------------------- the read role


def test_reader_sessions_are_read_only_by_default(
    stack_settings: Settings, two_tenants: tuple[str, str, str]
) -> None:
    schema, tenant_a, _ = two_tenants
    with (
        reader_connection(stack_settings, schema, tenant_a) as reader,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        reader.execute("DELETE FROM accounts")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO tenant_heads (tenant_id, last_sequence, last_hash, last_effective_at)"
        " VALUES (current_setting('streamledger.tenant_id'), 9, '\\x00', now())",
        "UPDATE balances SET credits_posted = credits_posted + 1",
        "DELETE FROM entries",
        "TRUNCATE transfers",
        "CREATE TABLE sneaky (id bigint)",
        "SELECT * FROM projection_offsets",
        "SELECT * FROM schema_migrations",
    ],
)
def test_reader_cannot_write_even_in_a_read_write_transaction(
    stack_settings: Settings, two_tenants: tuple[str, str, str], statement: str
) -> None:
    schema, tenant_a, _ = two_tenants
    with reader_connection(stack_settings, schema, tenant_a) as reader:
        reader.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(statement.encode())


CRAFTED_QUERIES = [
    "SELECT tenant_id FROM {table}",
    "SELECT tenant_id FROM {table} WHERE tenant_id = '{other}' OR true",
    "SELECT tenant_id FROM {table}"
    " WHERE tenant_id IS DISTINCT FROM current_setting('streamledger.tenant_id', true)",
    "SELECT tenant_id FROM {table} WHERE tenant_id IN (SELECT tenant_id FROM {table}) OR 1 = 1",
    "SELECT '{other}' FROM {table} WHERE tenant_id = '{other}' GROUP BY 1 HAVING count(*) > 0",
    "SELECT tenant_id FROM {table} UNION ALL SELECT tenant_id FROM accounts",
    "WITH every AS (SELECT * FROM {table}) SELECT tenant_id FROM every WHERE true",
]


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_tenant_a_sees_none_of_tenant_b(
    stack_settings: Settings, two_tenants: tuple[str, str, str], table: str
) -> None:
    schema, tenant_a, tenant_b = two_tenants
    with reader_connection(stack_settings, schema, tenant_a) as reader:
        for query in CRAFTED_QUERIES:
            seen = tenants_visible(reader, query.format(table=table, other=tenant_b))
            assert tenant_b not in seen, query
            assert seen <= {tenant_a}, query
        assert tenants_visible(reader, f"SELECT tenant_id FROM {table}") == {tenant_a}


@pytest.mark.parametrize("tenant", [None, ""])
@pytest.mark.parametrize("table", TENANT_TABLES)
def test_no_tenant_setting_sees_nothing(
    stack_settings: Settings, two_tenants: tuple[str, str, str], table: str, tenant: str | None
) -> None:
    schema, _, tenant_b = two_tenants
    with reader_connection(stack_settings, schema, tenant) as reader:
        for query in CRAFTED_QUERIES:
            assert tenants_visible(reader, query.format(table=table, other=tenant_b)) == set()


def test_tenant_setting_is_scoped_to_the_transaction_when_set_locally(
    stack_settings: Settings, two_tenants: tuple[str, str, str]
) -> None:
    """The pattern for pooled connections: SET LOCAL inside the transaction, gone after it."""
    schema, tenant_a, _ = two_tenants
    with reader_connection(stack_settings, schema, None) as reader:
        with reader.transaction():
            reader.execute("SELECT set_config('streamledger.tenant_id', %s, true)", (tenant_a,))
            assert tenants_visible(reader, "SELECT tenant_id FROM accounts") == {tenant_a}
        assert tenants_visible(reader, "SELECT tenant_id FROM accounts") == set()


# --------------------------------------------------------------------------- schema rules


def test_available_follows_the_normal_side(
    stack_settings: Settings, two_tenants: tuple[str, str, str]
) -> None:
    schema, _, _ = two_tenants
    tenant = new_tenant()
    with app_connection(stack_settings, schema) as connection:
        insert_tenant_rows(connection, tenant)
        connection.execute(
            "UPDATE balances SET debits_pending = 30, credits_pending = 40 WHERE tenant_id = %s",
            (tenant,),
        )
        rows = connection.execute(
            "SELECT account_id, normal_side, available FROM balances"
            " WHERE tenant_id = %s ORDER BY account_id",
            (tenant,),
        ).fetchall()
    # cash is debit-normal: 100 debits posted - 0 credits posted - 40 credits pending.
    # wallet is credit-normal: 100 credits posted - 0 debits posted - 30 debits pending.
    assert rows == [("cash", "debit", 60), ("wallet", "credit", 70)]


def test_available_never_overflows(stack_settings: Settings, migrated_schema: str) -> None:
    tenant = new_tenant()
    int64_max = 2**63 - 1
    with app_connection(stack_settings, migrated_schema) as connection:
        connection.execute(INSERT_ACCOUNT, (tenant, "wallet", True, False, 1, AT))
        connection.execute(
            INSERT_BALANCE, (tenant, "wallet", "credit", int64_max, 0, int64_max, 0, 2, AT)
        )
        row = connection.execute("SELECT available FROM balances").fetchone()
    assert row == (-2 * int64_max,)


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE entries SET amount = -5", "entries_amount_check"),
        ("UPDATE balances SET debits_posted = -1", "balances_debits_posted_check"),
        ("UPDATE transfers SET amount_reversed = 101", "transfers_reversed_within_posted"),
        ("UPDATE transfers SET expires_at = now()", "transfers_single_phase"),
        ("UPDATE balances SET normal_side = 'credit'", "balances_account_fkey"),
        ("UPDATE entries SET kind = 'pending'", "entries_kind_matches_event"),
        ("UPDATE tenant_heads SET last_hash = '\\x00'", "tenant_heads_last_hash_check"),
    ],
)
def test_constraints_refuse_impossible_rows(
    stack_settings: Settings, two_tenants: tuple[str, str, str], statement: str, constraint: str
) -> None:
    schema, _, _ = two_tenants
    with (
        app_connection(stack_settings, schema) as connection,
        pytest.raises(psycopg.errors.IntegrityError) as raised,
    ):
        connection.execute(statement.encode())
    assert raised.value.diag.constraint_name == constraint


def test_balance_as_of_is_one_index_lookup(
    stack_settings: Settings, two_tenants: tuple[str, str, str]
) -> None:
    schema, tenant_a, _ = two_tenants
    with app_connection(stack_settings, schema) as connection:
        connection.execute("SET enable_seqscan = off")  # tiny tables: judge the plan's shape
        plan = connection.execute(
            "EXPLAIN SELECT debits_posted_after, credits_posted_after FROM entries"
            " WHERE tenant_id = %s AND account_id = 'cash' AND effective_at <= %s"
            " ORDER BY effective_at DESC, sequence DESC, kind DESC LIMIT 1",
            (tenant_a, AT),
        ).fetchall()
    text = "\n".join(str(row[0]) for row in plan)
    assert "Index Scan Backward using entries_account_time_idx" in text
    assert "Sort" not in text
