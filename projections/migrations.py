"""Versioned SQL migrations for the projections' PostgreSQL schema.

Migrations are the files ``projections/migrations/NNNN_name.sql``, applied in version order,
each in its own transaction together with its row in ``schema_migrations`` (version, name,
SHA-256 of the file). Running them again applies nothing. A file changed after it was applied,
an applied migration whose file is gone, or a new file numbered below an applied one is refused
with ``MigrationError``: the history of a ledger's schema is append-only too.

Every transaction first takes a transaction-scoped advisory lock, so two processes migrating
at once (``infra up`` and a test run) apply each file exactly once; the loser waits at most
``LOCK_TIMEOUT_MS``.

Errors (the tree: ``streamledger.errors``): ``InfraError`` when the database cannot be reached
(names host, port and database); ``MigrationError`` when a migration is malformed, failed, or
the recorded history disagrees.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from streamledger.errors import InfraError, StreamLedgerError
from streamledger.settings import Settings

MIGRATIONS_DIRECTORY = "migrations"
FILE_NAME_PATTERN = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
DEFAULT_SCHEMA = "ledger"  # the live projection schema; rebuilds migrate a fresh one

# Limits, all finite.
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_MS = 30_000  # waiting for another migrator or for a table lock
STATEMENT_TIMEOUT_MS = 300_000  # one migration statement
MIGRATIONS_MAX = 9_999  # four digits

# An arbitrary, fixed 64-bit key ("SLMIGRAT" in ASCII) naming the migration lock.
ADVISORY_LOCK_KEY = int.from_bytes(b"SLMIGRAT", "big", signed=True)

SET_LOCAL_SETTING = "SELECT pg_catalog.set_config(%s, %s, true)"
SET_LOCAL_SEARCH_PATH = "SET LOCAL search_path TO {schema}"
TAKE_MIGRATION_LOCK = "SELECT pg_catalog.pg_advisory_xact_lock(%s)"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer NOT NULL CHECK (version > 0),
    name text NOT NULL,
    checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"


class MigrationError(StreamLedgerError):
    """A migration file is malformed or failed, or the recorded history disagrees with files."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    body: bytes

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


# --------------------------------------------------------------------------- public API


def apply_migrations(settings: Settings, *, schema: str = DEFAULT_SCHEMA) -> list[str]:
    """Apply the pending migrations as the app role; return the labels applied this time."""
    migrations = load_migrations()
    try:
        with psycopg.connect(
            settings.database_dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
        ) as connection:
            return apply_to_connection(connection, migrations, schema=schema)
    except psycopg.OperationalError as exc:
        raise InfraError(
            f"cannot reach PostgreSQL at {describe_dsn(settings.database_dsn)}: {first_line(exc)}"
        ) from exc


def load_migrations(directory: Traversable | None = None) -> tuple[Migration, ...]:
    """Read and order the migration files; refuse stray or duplicate names."""
    # Next to this module, not importlib.resources: it works the same from a source checkout,
    # an editable install (where "projections" may resolve as a namespace package) and a wheel.
    folder = directory or Path(__file__).resolve().parent / MIGRATIONS_DIRECTORY
    migrations: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = FILE_NAME_PATTERN.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql"
            )
        version = int(match.group("version"))
        if version in migrations:
            raise MigrationError(
                f"two migration files share version {version:04d}:"
                f" {migrations[version].label}.sql and {entry.name}"
            )
        migrations[version] = Migration(version, match.group("name"), entry.read_bytes())
    if not 0 < len(migrations) <= MIGRATIONS_MAX or 0 in migrations:
        raise MigrationError(f"expected migrations numbered 0001..{MIGRATIONS_MAX} in {folder}")
    return tuple(migrations[version] for version in sorted(migrations))


def apply_to_connection(
    connection: psycopg.Connection[TupleRow],
    migrations: Sequence[Migration],
    *,
    schema: str = DEFAULT_SCHEMA,
) -> list[str]:
    """Apply pending migrations one transaction each; the connection must be in autocommit."""
    applied_now: list[str] = []
    # One more round than there are files: the last one finds nothing left to do.
    for _ in range(len(migrations) + 1):
        with connection.transaction():
            applied = begin_migration_transaction(connection, schema)
            check_history(applied, migrations)
            pending = next_pending(applied, migrations)
            if pending is None:
                return applied_now
            run_migration(connection, pending)
        applied_now.append(pending.label)
    raise MigrationError("migrations did not converge; another migrator keeps adding rows")


# --------------------------------------------------------------------------- one transaction


def begin_migration_transaction(
    connection: psycopg.Connection[TupleRow], schema: str
) -> list[AppliedMigration]:
    """Set limits and search_path, take the lock, and read what is already applied."""
    schema_identifier = sql.Identifier(schema)
    connection.execute(SET_LOCAL_SETTING, ("lock_timeout", f"{LOCK_TIMEOUT_MS}ms"))
    connection.execute(SET_LOCAL_SETTING, ("statement_timeout", f"{STATEMENT_TIMEOUT_MS}ms"))
    connection.execute(TAKE_MIGRATION_LOCK, (ADVISORY_LOCK_KEY,))
    connection.execute(sql.SQL(CREATE_SCHEMA).format(schema=schema_identifier))
    connection.execute(sql.SQL(SET_LOCAL_SEARCH_PATH).format(schema=schema_identifier))
    connection.execute(CREATE_MIGRATIONS_TABLE)
    rows = connection.execute(SELECT_APPLIED).fetchall()
    return [
        AppliedMigration(int(version), str(name), str(checksum)) for version, name, checksum in rows
    ]


def run_migration(connection: psycopg.Connection[TupleRow], migration: Migration) -> None:
    try:
        # A file holds several statements: sent without parameters (simple query protocol).
        connection.execute(migration.body)
    except psycopg.DatabaseError as exc:
        raise MigrationError(f"migration {migration.label} failed: {first_line(exc)}") from exc
    connection.execute(INSERT_APPLIED, (migration.version, migration.name, migration.checksum))


# --------------------------------------------------------------------------- history rules


def check_history(applied: Iterable[AppliedMigration], migrations: Sequence[Migration]) -> None:
    """Refuse changed, missing or out-of-order migrations. Pure: no I/O."""
    by_version = {migration.version: migration for migration in migrations}
    applied_versions: set[int] = set()
    for record in applied:
        applied_versions.add(record.version)
        label = f"{record.version:04d}_{record.name}"
        migration = by_version.get(record.version)
        if migration is None or migration.name != record.name:
            raise MigrationError(
                f"migration {label} is recorded as applied but its file is missing"
            )
        if migration.checksum != record.checksum:
            raise MigrationError(
                f"migration {label} changed after it was applied (checksum"
                f" {migration.checksum[:12]}… ≠ recorded {record.checksum[:12]}…);"
                " put the file back as it was and add a new migration instead"
            )
    if not applied_versions:
        return
    newest_applied = max(applied_versions)
    for migration in migrations:
        if migration.version < newest_applied and migration.version not in applied_versions:
            raise MigrationError(
                f"migration {migration.label} is numbered below the applied"
                f" {newest_applied:04d}; renumber it after the newest applied migration"
            )


def next_pending(
    applied: Iterable[AppliedMigration], migrations: Sequence[Migration]
) -> Migration | None:
    applied_versions = {record.version for record in applied}
    for migration in migrations:
        if migration.version not in applied_versions:
            return migration
    return None


# --------------------------------------------------------------------------- messages


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, without the password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable database URL)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
