"""infra/postgres_provision.sql: the one script that makes StreamLedger's roles and grants, on
the Docker-free cluster (infra/postgres_server.py) and in docker-compose.yml's PostgreSQL.

It names what postgres_server.py's constants name, and it stays runnable by both: plain SQL
(psycopg sends it as one simple query; the image runs it with psql) that converges on re-runs."""

from __future__ import annotations

import re

from api import settings as api_settings
from infra import postgres_server
from projections import queries

SCRIPT = postgres_server.PROVISION_SQL_PATH.read_text()
STATEMENTS = re.sub(r"--[^\n]*", "", SCRIPT)


def test_the_script_ships_next_to_the_module_that_runs_it() -> None:
    assert postgres_server.PROVISION_SQL_PATH.parent.name == "infra"
    assert postgres_server.PROVISION_SQL_PATH.is_file()


def test_it_makes_the_roles_and_passwords_the_python_side_uses() -> None:
    for role, password, row_security in (
        # The app role writes every tenant (the projection) under FORCEd RLS (decision 0024).
        (postgres_server.APP_ROLE, postgres_server.APP_PASSWORD, "BYPASSRLS"),
        (postgres_server.READER_ROLE, postgres_server.READER_PASSWORD, "NOBYPASSRLS"),
        (postgres_server.API_ROLE, postgres_server.API_PASSWORD, "NOBYPASSRLS"),
    ):
        assert f"CREATE ROLE {role} WITH LOGIN;" in STATEMENTS
        alter = re.search(rf"ALTER ROLE {role} WITH (.*?);", STATEMENTS, re.S)
        assert alter is not None, role
        attributes = alter.group(1).split()
        for attribute in ("LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", row_security):
            assert attribute in attributes, (role, attribute)
        assert f"PASSWORD '{password}'" in alter.group(1)
    assert (queries.READER_ROLE, queries.READER_PASSWORD) == (
        postgres_server.READER_ROLE,
        postgres_server.READER_PASSWORD,
    )
    assert (api_settings.API_ROLE, api_settings.API_PASSWORD) == (
        postgres_server.API_ROLE,
        postgres_server.API_PASSWORD,
    )


def test_it_owns_and_guards_the_database() -> None:
    database = postgres_server.DATABASE_NAME
    assert f"ALTER DATABASE {database} OWNER TO {postgres_server.APP_ROLE};" in STATEMENTS
    assert f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;" in STATEMENTS
    for role in (postgres_server.READER_ROLE, postgres_server.API_ROLE):
        assert f"GRANT CONNECT ON DATABASE {database} TO {role};" in STATEMENTS
        assert f"ALTER ROLE {role} SET default_transaction_read_only = on;" in STATEMENTS


def test_it_is_plain_sql_that_converges() -> None:
    assert not re.search(r"^\s*\\", SCRIPT, re.M), "psql meta-commands do not run in psycopg"
    assert "%" not in SCRIPT  # psycopg would not care, but keep it placeholder-free
    assert "CREATE DATABASE" not in STATEMENTS  # not in a transaction: postgres_server.py's job
    creates = re.findall(r"CREATE ROLE", STATEMENTS)
    guarded = re.findall(r"IF NOT EXISTS \(SELECT FROM pg_catalog.pg_roles", STATEMENTS)
    assert len(creates) == len(guarded) == 3
