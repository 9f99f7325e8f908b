"""``streamledger db ...``: the projections' database on the local stack, from the command line.

- ``db migrate``  apply pending schema migrations (idempotent; prints what it applied);
- ``db psql``     open psql on the database as the app role, or with ``--tenant`` as the
                  tenant-scoped read role (row-level security applies).
"""

from __future__ import annotations

import argparse
import subprocess

from psycopg.conninfo import make_conninfo

from infra import postgres_server
from projections.migrations import DEFAULT_SCHEMA, apply_migrations
from streamledger.cli_parser import Subparsers
from streamledger.errors import InfraError
from streamledger.settings import Settings

EXIT_OK = 0


def register(subparsers: Subparsers) -> None:
    database = subparsers.add_parser("db", help="the projections' PostgreSQL database")
    commands = database.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    migrate = commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.add_argument(
        "--schema",
        default=DEFAULT_SCHEMA,
        help=f"the schema to migrate (default {DEFAULT_SCHEMA})",
    )
    migrate.set_defaults(handler=run_migrate)
    psql = commands.add_parser("psql", help="open psql on the StreamLedger database")
    psql.add_argument(
        "--tenant",
        default=None,
        help="connect as the read role, seeing only this tenant's rows (row-level security)",
    )
    psql.set_defaults(handler=run_psql)


def run_migrate(arguments: argparse.Namespace, settings: Settings) -> int:
    applied = apply_migrations(settings, schema=arguments.schema)
    if not applied:
        print(f"database schema {arguments.schema} is up to date")
    for label in applied:
        print(f"applied {label} to schema {arguments.schema}")
    return EXIT_OK


def run_psql(arguments: argparse.Namespace, settings: Settings) -> int:
    """Interactive psql: this one command inherits the terminal on purpose."""
    binaries = postgres_server.find_binaries()
    if binaries is None:
        raise InfraError("psql not found; run `streamledger infra install`")
    options = [f"-c search_path={DEFAULT_SCHEMA}"]
    if arguments.tenant is None:
        dsn = settings.database_dsn
    else:
        dsn = postgres_server.reader_dsn(settings)
        # The session's tenant for row-level security, set before the prompt appears.
        options.append(f"-c streamledger.tenant_id={escape_option(arguments.tenant)}")
    conninfo = make_conninfo(dsn, options=" ".join(options))
    completed = subprocess.run([str(binaries / "psql"), conninfo], check=False)
    return completed.returncode


def escape_option(value: str) -> str:
    """Escape a value for libpq's ``options`` (backslash escapes spaces and backslashes)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")
