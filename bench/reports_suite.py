"""Reports and search at the issue's sizes (issue 19 §5): statement, trial balance, metadata lookup.

    .venv/bin/python -m bench.reports_suite [--size small|full] [--no-cache]
        [--check-fill] [--check-cache DIRECTORY]

Producing millions of events through Kafka would take longer than the rest of ``make bench``,
so this suite fills a scratch database (on the stack the settings point at; the bench stack
in ``make bench``) that the projection's own migrations create, with rows the projection would
have written, made server-side by ``INSERT ... SELECT`` over ``generate_series`` (no round
trips), each tenant self-consistent:

- ``statement``: accounts ``source`` and ``hot``; transfer ``n`` (sequence ``n + 2``) moves
  ``100 + n % 7`` from ``source`` to ``hot``, spread evenly over ``STATEMENT_DAYS`` days; a
  journal row per side with the counters after it (a running sum), the transfers, every event's
  chain link (sequences 1.. with no gap) and the tenant head;
- ``trial``: ``accounts`` accounts in two currencies (parity of the number); transfer ``i``
  moves ``1 + i % 1000`` from account ``i % A`` to ``(i + 2) % A`` (same currency), spread over
  ``TRIAL_DAYS`` days; journal rows with counters after (window sums per account), the
  transfers, the chain and the head, so every trial balance nets to zero;
- ``search``: ``transfers`` transfers between 100 accounts, each with an ``order_id``
  (unique) and one in ten with a ``channel``, and their ``transfer_metadata`` rows (what
  ``projections.batch`` writes). The search reads these two tables only, so this tenant has no
  journal or chain rows.

The rows are the same every run, so they are kept between runs (``cached_fill``, decision
0147): the first fill from given sources is dumped (data only) to
``~/.cache/streamledger/bench-reports/``, and later runs restore it by COPY into the freshly
migrated database, indexes in place (the fill's pages: ``--check-cache`` compares them);
``--no-cache`` always fills, and ``--check-fill`` fills afresh.

Then it times the product's own read code through ``LedgerReader`` (the read role, row-level
security, like the API): ``statement_steps`` over a random 1-day window of ``hot``,
``trial_balance_steps`` as of a random past instant, and ``transfer_statement`` for a random
``order_id`` (and a ``channel`` page of 100, newest first). Each is printed with its target.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psycopg

from bench.bench_projection import percentile
from bench.cache_keys import sources_key
from bench.results import BenchRun
from infra import postgres_server
from projections.migrations import apply_migrations
from projections.queries import LedgerReader, reader_dsn
from projections.reports import run_report, statement_steps, trial_balance_steps
from projections.search import TRANSFER_COLUMNS, TransferSearch, page_of, transfer_statement
from projections.settings import ProjectionSettings
from streamledger.settings import Settings, load_settings, replace

STATEMENT_TENANT = "bench-statement"
TRIAL_TENANT = "bench-trial"
SEARCH_TENANT = "bench-search"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATEMENT_DAYS = 365  # 1M entries: ~2,700 per day
TRIAL_DAYS = 30
TRIAL_TRANSFERS_PER_ACCOUNT = 3
SEARCH_ACCOUNTS = 100
SEARCH_PAGE = 100
TARGET_STATEMENT_P99_MS = 50.0
TARGET_TRIAL_BALANCE_S = 2.0
TARGET_SEARCH_P99_MS = 10.0
Fetch = Callable[[str, tuple[object, ...]], list[object]]


@dataclass(frozen=True, slots=True)
class ReportsSize:
    statement_entries: int  # journal rows of the statement's account
    trial_accounts: int
    search_transfers: int
    repeats: int  # statements and searches timed
    trial_repeats: int


SIZES = {
    "tiny": ReportsSize(3_000, 300, 5_000, 5, 2),  # tests/system/test_bench_reports.py
    "small": ReportsSize(20_000, 2_000, 100_000, 100, 5),
    "full": ReportsSize(1_000_000, 100_000, 10_000_000, 200, 5),
}

ENTRY_COLUMNS = (
    "tenant_id, account_id, sequence, kind, side, transfer_id, event_type, currency, amount,"
    " debits_posted_after, credits_posted_after, debits_pending_after, credits_pending_after,"
    " effective_at"
)
TRANSFER_INSERT = (
    "INSERT INTO ledger.transfers (tenant_id, transfer_id, debit_account_id, credit_account_id,"
    " currency, amount, pending, status, amount_posted, created_sequence, last_sequence,"
    " created_at, updated_at, metadata)"
)
ACCOUNT_INSERT = (
    "INSERT INTO ledger.accounts (tenant_id, account_id, currency, asset_scale,"
    " debits_must_not_exceed_credits, credits_must_not_exceed_debits, opened_sequence,"
    " opened_at)"
)
# The opening events are at T0; transfer n (1..N) at T0 + n * spacing, sequence n + opened.
STATEMENT_FILL = (
    ACCOUNT_INSERT + " VALUES (%(tenant)s, 'source', 'USD', 2, false, false, 1, %(t0)s),"
    " (%(tenant)s, 'hot', 'USD', 2, false, false, 2, %(t0)s)",
    TRANSFER_INSERT + " SELECT %(tenant)s, 't-' || lpad(n::text, 10, '0'), 'source', 'hot',"
    " 'USD', 100 + n %% 7, false, 'posted', 100 + n %% 7, n + 2, n + 2,"
    " %(t0)s + n * %(spacing)s, %(t0)s + n * %(spacing)s, '{}'::jsonb"
    " FROM generate_series(1, %(count)s) AS n",
    "INSERT INTO ledger.entries (" + ENTRY_COLUMNS + ")"
    " SELECT %(tenant)s, v.account, s.n + 2, 'posted', v.side, 't-' || lpad(s.n::text, 10, '0'),"
    " 'TransferPosted', 'USD', s.amount, CASE v.side WHEN 'debit' THEN s.running ELSE 0 END,"
    " CASE v.side WHEN 'credit' THEN s.running ELSE 0 END, 0, 0, %(t0)s + s.n * %(spacing)s"
    " FROM (SELECT n, 100 + n %% 7 AS amount, sum(100 + n %% 7) OVER (ORDER BY n) AS running"
    "       FROM generate_series(1, %(count)s) AS n) AS s"
    " CROSS JOIN (VALUES ('hot', 'credit'), ('source', 'debit')) AS v(account, side)"
    " ORDER BY v.account, s.n",
)
TRIAL_FILL = (
    ACCOUNT_INSERT + " SELECT %(tenant)s, 'a' || lpad(k::text, 7, '0'),"
    " CASE k %% 2 WHEN 0 THEN 'USD' ELSE 'EUR' END, 2, false, false, k + 1, %(t0)s"
    " FROM generate_series(0, %(accounts)s - 1) AS k",
    TRANSFER_INSERT + " SELECT %(tenant)s, 't-' || lpad(i::text, 10, '0'),"
    " 'a' || lpad((i %% %(accounts)s)::text, 7, '0'),"
    " 'a' || lpad(((i + 2) %% %(accounts)s)::text, 7, '0'),"
    " CASE i %% 2 WHEN 0 THEN 'USD' ELSE 'EUR' END, 1 + i %% 1000, false, 'posted',"
    " 1 + i %% 1000, %(accounts)s + 1 + i, %(accounts)s + 1 + i,"
    " %(t1)s + i * %(spacing)s, %(t1)s + i * %(spacing)s, '{}'::jsonb"
    " FROM generate_series(0, %(count)s - 1) AS i",
    "INSERT INTO ledger.entries (" + ENTRY_COLUMNS + ")"
    " SELECT %(tenant)s, account, %(accounts)s + 1 + i, 'posted', side,"
    " 't-' || lpad(i::text, 10, '0'), 'TransferPosted', currency, amount,"
    " sum(CASE side WHEN 'debit' THEN amount ELSE 0 END)"
    "   OVER (PARTITION BY account ORDER BY i),"
    " sum(CASE side WHEN 'credit' THEN amount ELSE 0 END)"
    "   OVER (PARTITION BY account ORDER BY i),"
    " 0, 0, %(t1)s + i * %(spacing)s"
    " FROM (SELECT i, 1 + i %% 1000 AS amount, CASE i %% 2 WHEN 0 THEN 'USD' ELSE 'EUR' END"
    "       AS currency FROM generate_series(0, %(count)s - 1) AS i) AS t"
    " CROSS JOIN LATERAL (VALUES ('a' || lpad((i %% %(accounts)s)::text, 7, '0'), 'debit'),"
    "   ('a' || lpad(((i + 2) %% %(accounts)s)::text, 7, '0'), 'credit')) AS v(account, side)"
    " ORDER BY account, i",
)
# One link per event 1..last, effective at its event's instant; the head names the last.
CHAIN_FILL = (
    "INSERT INTO ledger.event_chain (tenant_id, sequence, hash, effective_at)"
    " SELECT %(tenant)s, s, sha256(convert_to(%(tenant)s || s, 'UTF8')),"
    " CASE WHEN s <= %(opened)s THEN %(t0)s ELSE %(t1)s + (s - %(opened)s - %(shift)s)"
    "   * %(spacing)s END"
    " FROM generate_series(1, %(last)s) AS s",
    "INSERT INTO ledger.tenant_heads (tenant_id, last_sequence, last_hash, last_effective_at)"
    " SELECT tenant_id, sequence, hash, effective_at FROM ledger.event_chain"
    " WHERE tenant_id = %(tenant)s ORDER BY sequence DESC LIMIT 1",
)
SEARCH_FILL = (
    ACCOUNT_INSERT + " SELECT %(tenant)s, 'm' || k, 'USD', 2, false, false, k + 1, %(t0)s"
    " FROM generate_series(0, %(accounts)s - 1) AS k",
    TRANSFER_INSERT + " SELECT %(tenant)s, 'p-' || lpad(n::text, 10, '0'),"
    " 'm' || (n %% %(accounts)s), 'm' || ((n + 1) %% %(accounts)s), 'USD', 100, false,"
    " 'posted', 100, n + %(accounts)s, n + %(accounts)s, %(t0)s + n * %(spacing)s,"
    " %(t0)s + n * %(spacing)s, jsonb_strip_nulls(jsonb_build_object("
    "   'order_id', 'O-' || lpad(n::text, 10, '0'),"
    "   'channel', CASE WHEN n %% 10 = 0 THEN (ARRAY['web', 'app', 'pos'])[1 + n / 10 %% 3] END))"
    " FROM generate_series(1, %(count)s) AS n",
)
# The search tenant's ``transfer_metadata`` rows: what ``jsonb_each_text`` of each transfer's
# metadata above gives (what ``projections.batch`` writes), made from the same series instead of
# read back from the transfers, in the same order (key, value, created_sequence: the channel
# rows sorted, then the order_id rows, whose series order is already theirs), so the table is
# the same rows in the same pages; ``tests/system/test_bench_reports.py`` compares them with the
# read-back. Independent of the transfers' rows, so it runs beside their insert (``fill``):
# at full, 10M transfers and 11M metadata rows took 230 s one after the other (decision 0136).
SEARCH_METADATA_FILL = (
    "INSERT INTO ledger.transfer_metadata (tenant_id, key, value, created_sequence, transfer_id)"
    " SELECT %(tenant)s, 'channel', (ARRAY['web', 'app', 'pos'])[1 + n / 10 %% 3],"
    " n + %(accounts)s, 'p-' || lpad(n::text, 10, '0')"
    " FROM generate_series(10, %(count)s, 10) AS n ORDER BY 3, 4",
    "INSERT INTO ledger.transfer_metadata (tenant_id, key, value, created_sequence, transfer_id)"
    " SELECT %(tenant)s, 'order_id', 'O-' || lpad(n::text, 10, '0'), n + %(accounts)s,"
    " 'p-' || lpad(n::text, 10, '0')"
    " FROM generate_series(1, %(count)s) AS n",
)
# ``--check-fill``: the metadata rows, in their pages' order, against what the transfers'
# metadata says they are (read back, in the order the fill used to insert them).
METADATA_ROW = "concat_ws('|', tenant_id, key, value, created_sequence, transfer_id)"
SEARCH_METADATA_CHECK = (
    f"SELECT (SELECT count(*) FROM ledger.transfer_metadata),"
    f" (SELECT md5(string_agg({METADATA_ROW}, ',' ORDER BY ctid))"
    f"  FROM ledger.transfer_metadata),"
    f" (SELECT count(*) FROM ledger.transfers AS t, jsonb_each_text(t.metadata) AS e"
    f"  WHERE t.tenant_id = %(tenant)s),"
    f" (SELECT md5(string_agg(concat_ws('|', t.tenant_id, e.key, e.value, t.created_sequence,"
    f"  t.transfer_id), ',' ORDER BY e.key, e.value, t.created_sequence))"
    f"  FROM ledger.transfers AS t, jsonb_each_text(t.metadata) AS e"
    f"  WHERE t.tenant_id = %(tenant)s)"
)


def fill(settings: Settings, size: ReportsSize, say: Callable[[str], None]) -> None:
    """The three tenants' rows, then VACUUM ANALYZE (what autovacuum would do in production)."""
    statement_spacing = timedelta(days=STATEMENT_DAYS) / size.statement_entries
    trial_transfers = size.trial_accounts * TRIAL_TRANSFERS_PER_ACCOUNT
    trial_spacing = timedelta(days=TRIAL_DAYS) / trial_transfers
    statement = {"tenant": STATEMENT_TENANT, "t0": T0, "t1": T0, "spacing": statement_spacing,
                 "count": size.statement_entries}  # fmt: skip
    trial = {"tenant": TRIAL_TENANT, "t0": T0, "t1": T0 + timedelta(days=1),
             "spacing": trial_spacing, "count": trial_transfers,
             "accounts": size.trial_accounts}  # fmt: skip
    search = {"tenant": SEARCH_TENANT, "t0": T0, "spacing": timedelta(seconds=1),
              "count": size.search_transfers, "accounts": SEARCH_ACCOUNTS}  # fmt: skip
    chains = (
        {**statement, "opened": 2, "shift": 0, "last": size.statement_entries + 2},
        {**trial, "opened": size.trial_accounts, "shift": 1,
         "last": size.trial_accounts + trial_transfers},
    )  # fmt: skip
    # Two connections, each table written by one of them only: the first writes accounts,
    # transfers and entries in the order they always had (so their pages and indexes are laid
    # out as before), the second the tables nothing else writes (event_chain, tenant_heads,
    # transfer_metadata), beside it.
    first = (("statement", STATEMENT_FILL, statement), ("trial", TRIAL_FILL, trial),
             ("search", SEARCH_FILL, search))  # fmt: skip
    second = (("statement chain", CHAIN_FILL, chains[0]), ("trial chain", CHAIN_FILL, chains[1]),
              ("search metadata", SEARCH_METADATA_FILL, search))  # fmt: skip
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="reports-fill") as pool:
        done = [pool.submit(fill_parts, settings, parts, say) for parts in (first, second)]
        for future in done:
            future.result()
    say(f"reports: fill {time.monotonic() - started:.0f} s on two connections")
    vacuum_analyze(settings)


def vacuum_analyze(settings: Settings) -> None:
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        for table in ("accounts", "transfers", "entries", "event_chain", "transfer_metadata"):
            conn.execute(f"VACUUM ANALYZE ledger.{table}")


def fill_parts(
    settings: Settings,
    parts: tuple[tuple[str, tuple[str, ...], dict[str, object]], ...],
    say: Callable[[str], None],
) -> None:
    """Each part's statements in order, on a connection of its own."""
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for label, statements, parameters in parts:
            started = time.monotonic()
            for text in statements:
                conn.execute(text, parameters)
            say(f"reports: filled {label} in {time.monotonic() - started:.0f} s")


# --------------------------------------------------------------------------- the fill, cached
#
# The fill is ~2.5 min of a quiet ``--size full`` run on a stack wiped at each start (decision
# 0136), the same rows every time. So its rows are kept between runs as a data-only dump
# (``pg_dump --format=custom``, uncompressed) in the home directory's cache, outside the bench's
# home (wiped) and the repository, and restored by COPY into the freshly migrated database: its
# indexes are there before the rows, so they are built by insertion in the fill's order, and
# each table's rows arrive in the order the fill wrote them (``pg_dump`` reads a table in its
# physical order). ``--check-cache`` compares a restored database with a fresh fill, table by
# table: the rows in physical order and every relation's size in pages (decision 0147).
CACHE_DIRECTORY: Final = Path.home() / ".cache" / "streamledger" / "bench-reports"
FILLED_TABLES: Final = (
    "accounts", "transfers", "entries", "event_chain", "tenant_heads", "transfer_metadata",
)  # fmt: skip
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
# what decides the rows and their pages: this module's statements and the schema they fill
FILL_SOURCES: Final = ("bench/reports_suite.py", "projections/migrations")
RESTORE_JOBS: Final = 2  # as the fill: two connections


def fill_sources() -> list[Path]:
    found: list[Path] = []
    for name in FILL_SOURCES:
        path = REPO_ROOT / name
        found += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)  # fmt: skip
    return found


def server_version(settings: Settings) -> str:
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    return str(row[0] if row else "")


def fill_key(settings: Settings, size: ReportsSize) -> str:
    """What a cached fill is valid for: the three sizes, the server's version and every source
    of ``fill_sources``."""
    shape = (size.statement_entries, size.trial_accounts, size.search_transfers)
    return sources_key((shape, server_version(settings)), fill_sources(), REPO_ROOT)


def _client(stack_settings: Settings, program: str, database: str) -> list[str]:
    """``pg_dump`` / ``pg_restore`` of the stack's PostgreSQL, as its admin over the socket (the
    tables' row-level security binds the app role; COPY under it is refused)."""
    binaries = postgres_server.find_binaries()
    arguments = postgres_server.admin_connection_arguments(stack_settings)
    return [
        str(binaries / program) if binaries is not None else program,
        f"--host={arguments['host']}", f"--port={arguments['port']}",
        f"--username={arguments['user']}", f"--dbname={database}",
    ]  # fmt: skip


def cached_fill(
    stack_settings: Settings,
    settings: Settings,
    database: str,
    size: ReportsSize,
    *,
    say: Callable[[str], None],
    directory: Path = CACHE_DIRECTORY,
) -> bool:
    """``fill``'s rows in ``database`` (migrated, empty): restored from ``directory`` when they
    were filled before from the same sources (``fill_key``), else filled and stored there; and
    whether they were restored. One file per size is kept: an older key's is removed."""
    stem = f"reports-{size.statement_entries}-{size.trial_accounts}-{size.search_transfers}"
    path = directory / f"{stem}-{fill_key(settings, size)}.dump"
    if path.exists():
        started = time.monotonic()
        try:
            subprocess.run(
                [*_client(stack_settings, "pg_restore", database), "--data-only",
                 "--disable-triggers", f"--jobs={RESTORE_JOBS}", "--exit-on-error", str(path)],
                check=True,
            )  # fmt: skip
        except subprocess.CalledProcessError:
            path.unlink(missing_ok=True)  # a damaged dump: the next run fills afresh
            raise
        vacuum_analyze(settings)
        say(f"reports: restored from {directory.name} in {time.monotonic() - started:.0f} s")
        return True
    fill(settings, size, say)
    directory.mkdir(parents=True, exist_ok=True)
    for older in directory.glob(f"{stem}-*.dump"):
        older.unlink(missing_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    # stderr kept for a failure: pg_dump warns of the transfers' foreign key to themselves
    # (``reverses``), which the restore's --disable-triggers leaves unchecked (rows as filled)
    dumped = subprocess.run(
        [*_client(stack_settings, "pg_dump", database), "--data-only", "--format=custom",
         "--compress=0", *(f"--table=ledger.{table}" for table in FILLED_TABLES),
         f"--file={partial}"],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if dumped.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"pg_dump of the reports fill failed: {dumped.stderr}")
    partial.replace(path)
    return False


def fill_fingerprint(stack_settings: Settings, database: str) -> dict[str, tuple[object, ...]]:
    """Per filled table: its rows (count and an md5 over them in physical order) and the size
    in pages of the table and of each of its indexes (read as the admin: every tenant's rows)."""
    found: dict[str, tuple[object, ...]] = {}
    arguments = {**postgres_server.admin_connection_arguments(stack_settings), "dbname": database}
    with psycopg.connect(**arguments, autocommit=True) as conn:  # type: ignore[arg-type]
        for table in FILLED_TABLES:
            rows = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY ctid), ''))"
                f" FROM ledger.{table} AS t"
            ).fetchone()
            pages = conn.execute(
                "SELECT c.relname, pg_relation_size(c.oid) / current_setting('block_size')::int"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'ledger' AND (c.relname = %(t)s OR c.oid IN"
                " (SELECT indexrelid FROM pg_index WHERE indrelid = %(q)s::regclass))"
                " ORDER BY c.relname",
                {"t": table, "q": f"ledger.{table}"},
            ).fetchall()
            found[table] = (tuple(rows or ()), tuple(pages))
    return found


def check_metadata_fill(settings: Settings) -> None:
    """The search tenant's metadata rows are the transfers' metadata, in the read-back's order."""
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        row = conn.execute(SEARCH_METADATA_CHECK, {"tenant": SEARCH_TENANT}).fetchone()
    assert row is not None and row[0] == row[2] and row[1] == row[3], (
        f"transfer_metadata ({row[0] if row else None} rows) is not the transfers' metadata"
        f" ({row[2] if row else None} rows read back)"
    )


def timed(action: Callable[..., object], *arguments: object) -> float:
    started = time.perf_counter()
    action(*arguments)
    return time.perf_counter() - started


def measure(run: BenchRun, settings: Settings, size: ReportsSize, rng: random.Random) -> None:
    projection = ProjectionSettings(consumer_group="unused", batch_records_max=1_000)
    statement_s: list[float] = []
    trial_s: list[float] = []
    order_s: list[float] = []
    channel_s: list[float] = []
    with LedgerReader(reader_dsn(settings), projection) as reader:

        def fetcher(tenant: str) -> Fetch:
            return lambda statement, parameters: reader.fetch(tenant, statement, parameters)

        last_day = STATEMENT_DAYS - 1
        warm_up(reader, fetcher)
        # As `streamledger api` does at start (api.cli.freeze_start_up_objects, decision 0078):
        # a full collection of the start-up objects would otherwise land in the timed reads.
        gc.collect()
        gc.freeze()
        for _ in range(size.repeats):
            start = T0 + timedelta(seconds=rng.uniform(0, last_day * 86_400))
            steps = statement_steps(STATEMENT_TENANT, "hot", start, start + timedelta(days=1))
            statement_s.append(timed(run_report, steps, fetcher(STATEMENT_TENANT)))
        for _ in range(size.trial_repeats):
            as_of = T0 + timedelta(days=1 + rng.uniform(0, TRIAL_DAYS))
            steps_tb = trial_balance_steps(TRIAL_TENANT, as_of)
            trial_s.append(timed(run_report, steps_tb, fetcher(TRIAL_TENANT)))
        for _ in range(size.repeats):
            order = f"O-{rng.randint(1, size.search_transfers):010d}"
            search = TransferSearch(metadata=(("order_id", order),))
            order_s.append(timed(search_page, reader, search))
            channel = TransferSearch(metadata=(("channel", rng.choice(("web", "app", "pos"))),))
            channel_s.append(timed(search_page, reader, channel))
    load = os.getloadavg()[0]
    figures = (
        (f"statement, 1-day window of a {size.statement_entries:,}-entry account, p99",
         statement_s, "ms", TARGET_STATEMENT_P99_MS),
        (f"trial balance of {size.trial_accounts:,} accounts as of a past instant, max",
         trial_s, "s", TARGET_TRIAL_BALANCE_S),
        (f"metadata lookup (order_id) over {size.search_transfers:,} transfers, p99",
         order_s, "ms", TARGET_SEARCH_P99_MS),
        (f"metadata page of {SEARCH_PAGE} (channel, 1/30 of rows) over"
         f" {size.search_transfers:,} transfers, p99", channel_s, "ms", None),
    )  # fmt: skip
    for name, samples, unit, target in figures:
        value = max(samples) if unit == "s" else percentile(samples, 0.99)
        figure = run.add("reports", name, unit, value)
        median = percentile(samples, 0.5) / (1000 if unit == "s" else 1)
        figure.note = f"p50 {median:.3g} {unit}; load {load:.1f}"
        if target is not None:
            verdict = "met" if value <= target else f"MISSED by {value / target - 1:.0%}"
            figure.note = f"target <= {target:g} {unit}: {verdict}; {figure.note}"


def warm_up(reader: LedgerReader, fetcher: Callable[[str], Fetch]) -> None:
    """One untimed run of each read: the pool's connections and the plans' first lookups."""
    statement = statement_steps(STATEMENT_TENANT, "hot", T0, T0 + timedelta(days=1))
    run_report(statement, fetcher(STATEMENT_TENANT))
    trial = trial_balance_steps(TRIAL_TENANT, T0 + timedelta(days=2))
    run_report(trial, fetcher(TRIAL_TENANT))
    search_page(reader, TransferSearch(metadata=(("order_id", "O-0000000001"),)))


def search_page(reader: LedgerReader, search: TransferSearch) -> int:
    rows = reader.fetch(SEARCH_TENANT, *transfer_statement(SEARCH_TENANT, search))
    page = page_of(rows, TRANSFER_COLUMNS, search.limit)
    if not page.rows:
        raise AssertionError(f"the search {search} found nothing: the fill is wrong")
    return len(page.rows)


def run_reports(
    run: BenchRun,
    stack_settings: Settings,
    *,
    size_name: str,
    say: Callable[[str], None],
    size: ReportsSize | None = None,
    check_fill: bool = False,
    cache: bool = True,
) -> None:
    """Fill a scratch database on the stack's PostgreSQL, measure, drop it. ``size`` (tests)
    replaces the named size; ``check_fill`` (tests) fills afresh and compares the metadata rows
    with the transfers' metadata before measuring; ``cache``: the rows restored from the cache
    when they are there from the same sources (``cached_fill``)."""
    size = size or SIZES[size_name]
    database, settings = scratch_database(stack_settings)
    try:
        if cache and not check_fill:
            cached_fill(stack_settings, settings, database, size, say=say)
        else:
            fill(settings, size, say)
        if check_fill:
            check_metadata_fill(settings)
            say("reports: the metadata rows are the transfers' metadata")
        run.sizes.update(
            reports_statement_entries=size.statement_entries,
            reports_trial_accounts=size.trial_accounts,
            reports_search_transfers=size.search_transfers,
        )
        measure(run, settings, size, random.Random(19))
    finally:
        postgres_server.drop_scratch_database(stack_settings, database)


def scratch_database(stack_settings: Settings) -> tuple[str, Settings]:
    """A fresh scratch database, migrated: its name and the settings that reach it."""
    database = f"sl_bench_reports_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(stack_settings, database)
    url = (
        f"postgresql://{postgres_server.APP_ROLE}:{postgres_server.APP_PASSWORD}"
        f"@127.0.0.1:{stack_settings.postgres_port}/{database}"
    )
    settings = replace(stack_settings, database_url=url)
    apply_migrations(settings)
    return database, settings


def check_cache(
    stack_settings: Settings, size: ReportsSize, directory: Path, say: Callable[[str], None]
) -> bool:
    """A fresh fill against the fill restored from ``directory`` (stored there first if it is
    not): the same rows in the same physical order, the same pages (``fill_fingerprint``)."""
    fingerprints = []
    for cached in (False, True):
        database, settings = scratch_database(stack_settings)
        try:
            if not cached:
                fill(settings, size, say)
            elif not cached_fill(
                stack_settings, settings, database, size, say=say, directory=directory
            ):
                postgres_server.drop_scratch_database(stack_settings, database)
                database, settings = scratch_database(stack_settings)  # now restore it
                assert cached_fill(
                    stack_settings, settings, database, size, say=say, directory=directory
                )
            fingerprints.append(fill_fingerprint(stack_settings, database))
        finally:
            postgres_server.drop_scratch_database(stack_settings, database)
    fresh, restored = fingerprints
    for table in FILLED_TABLES:
        same = fresh[table] == restored[table]
        say(f"reports: {table} {'same' if same else 'DIFFERS'}: {fresh[table]}"
            + ("" if same else f" != {restored[table]}"))  # fmt: skip
    return fresh == restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument(
        "--check-fill",
        action="store_true",
        help="compare the metadata rows with the transfers' metadata (tests; tiny and small)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help=f"fill even if {CACHE_DIRECTORY.name}/ holds the rows from the same sources",
    )
    parser.add_argument(
        "--check-cache",
        type=Path,
        metavar="DIRECTORY",
        help="compare a fresh fill with the fill restored from DIRECTORY (stored there first if"
        " it is not): rows in physical order and pages; nothing is measured (tests)",
    )
    arguments = parser.parse_args()
    run = BenchRun(size=arguments.size, seed=19, repetitions=1)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    if arguments.check_cache is not None:
        same = check_cache(load_settings(), SIZES[arguments.size], arguments.check_cache, say)
        print(f"reports fill restored from {arguments.check_cache}:"
              f" {'the same as a fresh fill' if same else 'DIFFERENT'}")  # fmt: skip
        raise SystemExit(0 if same else 1)
    run_reports(
        run, load_settings(), size_name=arguments.size, say=say,
        check_fill=arguments.check_fill, cache=not arguments.no_cache,
    )  # fmt: skip
    print(run.table())
    print(f"{time.monotonic() - started:.0f} s, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
