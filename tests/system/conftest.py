"""Fixtures of the projection tests: a fresh PostgreSQL database per test, migrated.

``projection_settings`` is ``ledger_settings`` (unique topics) with ``database_url`` pointing at
a database created for this test alone (by the cluster's admin over the unix socket, owned by
the app role, connectable by the reader role), with the migrations applied to the live
generation schema. It is dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from infra import postgres_server
from projections.migrations import apply_migrations
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings, replace

CREATE_DATABASE = "CREATE DATABASE {database} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0"
GRANT_CONNECT = "GRANT CONNECT ON DATABASE {database} TO {reader}"
DROP_DATABASE = "DROP DATABASE IF EXISTS {database} WITH (FORCE)"


def admin_execute(settings: Settings, statement: str, database: str) -> None:
    arguments = postgres_server.admin_connection_arguments(settings)
    with psycopg.connect(**arguments, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            sql.SQL(statement).format(
                database=sql.Identifier(database),
                owner=sql.Identifier(postgres_server.APP_ROLE),
                reader=sql.Identifier(postgres_server.READER_ROLE),
            )
        )


@pytest.fixture
def projection_settings(ledger_settings: Settings) -> Iterator[Settings]:
    database = f"sl_test_{uuid.uuid4().hex[:12]}"
    admin_execute(ledger_settings, CREATE_DATABASE, database)
    admin_execute(ledger_settings, GRANT_CONNECT, database)
    url = (
        f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
        f"@127.0.0.1:{ledger_settings.postgres_port}/{database}"
    )
    settings = replace(ledger_settings, database_url=url)
    apply_migrations(settings, schema=LIVE_SCHEMA)
    yield settings
    admin_execute(ledger_settings, DROP_DATABASE, database)
