"""Fixtures of the projection tests: a fresh PostgreSQL database per test, migrated.

``projection_settings`` is ``ledger_settings`` (unique topics) with ``database_url`` pointing at
a database created for this test alone (by the cluster's admin over the unix socket, owned by
the app role, connectable by the reader role), with the migrations applied to the live
generation schema. It is dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra import postgres_server
from projections.migrations import apply_migrations
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings, replace


@pytest.fixture
def projection_settings(ledger_settings: Settings) -> Iterator[Settings]:
    database = f"sl_test_{uuid.uuid4().hex[:12]}"
    postgres_server.create_scratch_database(ledger_settings, database)
    url = (
        f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
        f"@127.0.0.1:{ledger_settings.postgres_port}/{database}"
    )
    settings = replace(ledger_settings, database_url=url)
    apply_migrations(settings, schema=LIVE_SCHEMA)
    yield settings
    postgres_server.drop_scratch_database(ledger_settings, database)
