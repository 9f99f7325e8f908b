"""Row-level security on the real PostgreSQL after migration 0005 (decision 0024).

- FORCE ROW LEVEL SECURITY is on for the tenant tables; the app role (owner, the
  projection) keeps writing every tenant, with COPY, because it has BYPASSRLS;
- the API's read role ``streamledger_api`` sees only the tenant of the API key whose digest the
  transaction binds: naming another tenant with ``set_config`` (or binding a made-up, malformed
  or revoked digest) shows nothing, and it cannot read the keys to learn another digest;
- the operator's ``streamledger_reader`` still names its tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from api.api_keys import create_api_key, revoke_api_key, token_digest
from infra import postgres_server
from projections.migrations import apply_migrations
from streamledger.settings import Settings, replace
from tests.system.test_postgres import (
    TENANT_TABLES,
    app_connection,
    insert_tenant_rows,
    new_tenant,
    tenants_visible,
)

pytestmark = pytest.mark.system

BIND_KEY = "SELECT set_config('streamledger.api_key_sha256', %s, true)"
NAME_TENANT = "SELECT set_config('streamledger.tenant_id', %s, true)"


@contextmanager
def migrated_database(stack_settings: Settings) -> Iterator[Settings]:
    """A scratch database migrated into ``ledger``; dropped afterwards."""
    database = f"sl_test_{uuid.uuid4().hex[:12]}"
    postgres_server.create_scratch_database(stack_settings, database)
    try:
        url = (
            f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
            f"@127.0.0.1:{stack_settings.postgres_port}/{database}"
        )
        settings = replace(stack_settings, database_url=url)
        apply_migrations(settings)
        yield settings
    finally:
        postgres_server.drop_scratch_database(stack_settings, database)


@pytest.fixture(scope="module")
def bound_tenants(stack_settings: Settings) -> Iterator[tuple[Settings, str, str, str]]:
    """Tenants A and B with rows and an API key of A: (settings on that database, A, B, A's
    token)."""
    tenant_a, tenant_b = new_tenant(), new_tenant()
    with migrated_database(stack_settings) as settings:
        with app_connection(settings, "ledger") as connection, connection.transaction():
            for tenant in (tenant_a, tenant_b):
                insert_tenant_rows(connection, tenant)
        token = create_api_key(settings, tenant_a).token
        yield settings, tenant_a, tenant_b, token


def api_connection(settings: Settings) -> psycopg.Connection[tuple[object, ...]]:
    dsn = make_conninfo(
        settings.database_dsn,
        user=postgres_server.API_ROLE,
        password=postgres_server.API_PASSWORD,
    )
    connection = psycopg.connect(dsn, autocommit=True)
    connection.execute("SET search_path TO ledger")
    return connection


def visible_with(settings: Settings, table: str, *settings_sql: tuple[str, str]) -> set[str]:
    """Tenants the API role sees in ``table`` within one transaction after ``settings_sql``."""
    with api_connection(settings) as connection, connection.transaction():
        for statement, value in settings_sql:
            connection.execute(statement, (value,))
        return tenants_visible(connection, f"SELECT tenant_id FROM {table}")


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_the_api_role_sees_only_the_tenant_of_the_bound_key(
    bound_tenants: tuple[Settings, str, str, str], table: str
) -> None:
    settings, tenant_a, tenant_b, token = bound_tenants
    digest = token_digest(token).hex()
    assert visible_with(settings, table, (BIND_KEY, digest)) == {tenant_a}
    # Naming a tenant does nothing for this role, with or without a key bound.
    assert visible_with(settings, table, (NAME_TENANT, tenant_b)) == set()
    assert visible_with(settings, table, (BIND_KEY, digest), (NAME_TENANT, tenant_b)) == {tenant_a}
    assert visible_with(settings, table, (BIND_KEY, "00" * 32)) == set()  # nobody's key
    assert visible_with(settings, table, (BIND_KEY, "not hex")) == set()  # malformed: no error
    assert visible_with(settings, table, (BIND_KEY, digest.upper())) == set()


def test_the_binding_lasts_one_transaction(bound_tenants: tuple[Settings, str, str, str]) -> None:
    settings, tenant_a, _, token = bound_tenants
    with api_connection(settings) as connection:
        with connection.transaction():
            connection.execute(BIND_KEY, (token_digest(token).hex(),))
            assert tenants_visible(connection, "SELECT tenant_id FROM accounts") == {tenant_a}
        assert tenants_visible(connection, "SELECT tenant_id FROM accounts") == set()


def test_the_api_role_cannot_read_the_keys_or_write(
    bound_tenants: tuple[Settings, str, str, str],
) -> None:
    settings, tenant_a, _, _ = bound_tenants
    with api_connection(settings) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("SELECT token_sha256 FROM streamledger_auth.api_keys")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute("DELETE FROM accounts WHERE tenant_id = %s", (tenant_a,))


def test_a_revoked_key_reads_nothing_at_once(stack_settings: Settings) -> None:
    with migrated_database(stack_settings) as settings:
        tenant = new_tenant()
        with app_connection(settings, "ledger") as connection, connection.transaction():
            insert_tenant_rows(connection, tenant)
        key = create_api_key(settings, tenant)
        digest = token_digest(key.token).hex()
        assert visible_with(settings, "balances", (BIND_KEY, digest)) == {tenant}
        assert revoke_api_key(settings, key.key_id)
        assert visible_with(settings, "balances", (BIND_KEY, digest)) == set()


def test_row_level_security_is_forced_and_the_app_role_still_copies(
    bound_tenants: tuple[Settings, str, str, str],
) -> None:
    settings, _, _, _ = bound_tenants
    tenant = new_tenant()
    with app_connection(settings, "ledger") as connection:
        forced = connection.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE relnamespace = 'ledger'::regnamespace AND relname = ANY(%s) ORDER BY 1",
            (list(TENANT_TABLES),),
        ).fetchall()
        assert forced == [(table, True, True) for table in sorted(TENANT_TABLES)]
        bypass = connection.execute(
            "SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert bypass == (True,)
        copy = sql.SQL(
            "COPY accounts (tenant_id, account_id, currency, asset_scale,"
            " debits_must_not_exceed_credits, credits_must_not_exceed_debits, opened_sequence,"
            " opened_at) FROM STDIN"
        )
        with connection.cursor().copy(copy) as rows:  # the projection's write path
            rows.write_row((tenant, "cash", "EUR", 2, False, False, 1, "2024-01-02T03:04:05Z"))
        count = connection.execute(
            "SELECT count(*) FROM accounts WHERE tenant_id = %s", (tenant,)
        ).fetchone()
        assert count == (1,)


def test_the_operator_reader_still_names_its_tenant(
    bound_tenants: tuple[Settings, str, str, str],
) -> None:
    settings, tenant_a, _, _ = bound_tenants
    dsn = make_conninfo(
        settings.database_dsn,
        user=postgres_server.READER_ROLE,
        password=postgres_server.READER_PASSWORD,
    )
    with psycopg.connect(dsn, autocommit=True) as reader, reader.transaction():
        reader.execute("SET LOCAL search_path TO ledger")
        reader.execute(NAME_TENANT, (tenant_a,))
        assert tenants_visible(reader, "SELECT tenant_id FROM accounts") == {tenant_a}
