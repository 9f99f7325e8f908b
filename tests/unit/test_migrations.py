"""Migration files and history rules (pure: no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.migrations import (
    AppliedMigration,
    Migration,
    MigrationError,
    check_history,
    describe_dsn,
    load_migrations,
    next_pending,
)


def write(folder: Path, name: str, body: str = "SELECT 1;\n") -> None:
    (folder / name).write_text(body, encoding="utf-8")


def applied(migration: Migration) -> AppliedMigration:
    return AppliedMigration(migration.version, migration.name, migration.checksum)


def test_the_shipped_migrations_load_in_order() -> None:
    migrations = load_migrations()
    assert migrations[0].label == "0001_ledger_schema"
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


def test_the_shipped_schema_manages_no_transactions_itself() -> None:
    """The runner wraps each file in one transaction; a COMMIT inside would break that."""
    for migration in load_migrations():
        words = migration.body.decode().upper().split()
        assert "COMMIT;" not in words
        assert "BEGIN;" not in words


def test_files_are_ordered_by_version_not_by_listing(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql")
    write(tmp_path, "0002_earlier.sql")
    write(tmp_path, "README.md")  # not a migration: ignored
    assert [m.label for m in load_migrations(tmp_path)] == ["0002_earlier", "0010_later"]


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0000_zero.sql"]
)
def test_badly_named_files_are_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, name)
    with pytest.raises(MigrationError):
        load_migrations(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_one.sql")
    write(tmp_path, "0001_other.sql")
    with pytest.raises(MigrationError, match="share version 0001"):
        load_migrations(tmp_path)


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="expected migrations"):
        load_migrations(tmp_path)


def test_history_accepts_a_prefix_and_names_the_next_pending() -> None:
    first, second = Migration(1, "a", b"x"), Migration(2, "b", b"y")
    check_history([applied(first)], [first, second])
    assert next_pending([applied(first)], [first, second]) == second
    assert next_pending([applied(first), applied(second)], [first, second]) is None


def test_history_refuses_a_changed_file() -> None:
    original = Migration(1, "a", b"CREATE TABLE t (id bigint);")
    changed = Migration(1, "a", b"CREATE TABLE t (id integer);")
    with pytest.raises(MigrationError, match="0001_a changed after it was applied"):
        check_history([applied(original)], [changed])


def test_history_refuses_a_missing_or_renamed_file() -> None:
    first = Migration(1, "a", b"x")
    with pytest.raises(MigrationError, match="0001_a is recorded as applied but its file"):
        check_history([applied(first)], [])
    with pytest.raises(MigrationError, match="file is missing"):
        check_history([applied(first)], [Migration(1, "renamed", b"x")])


def test_history_refuses_a_file_numbered_below_an_applied_one() -> None:
    first, late, third = Migration(1, "a", b"x"), Migration(2, "b", b"y"), Migration(3, "c", b"z")
    with pytest.raises(MigrationError, match="0002_b is numbered below the applied 0003"):
        check_history([applied(first), applied(third)], [first, late, third])


def test_describe_dsn_hides_the_password() -> None:
    described = describe_dsn("postgresql://user:secret@db.example:6543/ledger")
    assert described == "db.example:6543/ledger"
