"""Reconciliation in PostgreSQL and through the HTTP API (issue 20 §3, decisions 0074-0075): a
real ``streamledger api`` with the processor and projection, the matcher and the reconciliation
projection as child processes, on fresh topics and a fresh database.

A camt.053 statement is imported (the command line, and ``POST /v1/statements``), matched, and
projected; ``GET /v1/reconciliation`` lists the results by account and state, pages through
the keyset cursor, refuses a bad parameter with a 400 naming it, and shows another tenant
nothing; a restarted projection writes no row twice. A manual unmatch and a manual match are
requested over HTTP (decision 0098); items that ended unmatched are matched by hand, over HTTP
and with ``statements match``, superseding their results (decision 0106), and a request the
matcher refuses is answered by a ``ManualRefusal`` in PostgreSQL and the report (decision 0107)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reconciliation.manual_refusal import ManualRefusal
from reconciliation.matching import ManualMatch, ManualUnmatch
from reconciliation.statement import Statement, StatementFormat, StatementLine
from reconciliation.topics import RECONCILIATION_TOPIC, STATEMENTS_TOPIC
from streamledger.settings import Settings
from tests.conftest import REPO_ROOT, run_streamledger
from tests.system.free_ports import free_port_range
from tests.system.processor_harness import produce_commands, wait_until_consumed
from tests.system.test_reconciliation import (
    KILL_EXTRA,
    KILL_MISSING,
    KILL_TRANSFERS,
    MatcherProcess,
    all_results,
    kill_statement,
    kill_workload,
    ledger_commands,
    metrics_with,
    read_records,
    statement_file,
)
from workloads.api_stack import ApiStack, ChildProcess, running_api_stack
from workloads.processor_process import ProcessorProcess
from workloads.topics import delete_topics

pytestmark = pytest.mark.system
API_FLAGS = ["--api-key-cache-ttl-s=0"]
JSON_TYPE = "application/json"
CONSUME_TIMEOUT_S = 120.0
PROJECTED_TIMEOUT_S = 120.0
RESULTS = 5  # t1, t2, t3+t4 matched; t5 not on the statement; the 77.77 line not in the ledger
LINES = 4
STATEMENTS = 2  # the camt.053 statement and a camt.054 notification of the same entries
NOTIFICATION = REPO_ROOT / "tests" / "unit" / "statement_files" / "camt054_notification_eur.xml"
COUNT_ROWS = (
    "SELECT (SELECT count(*) FROM ledger.statements WHERE tenant_id = %(t)s),"
    " (SELECT count(*) FROM ledger.statement_lines WHERE tenant_id = %(t)s),"
    " (SELECT count(*) FROM ledger.reconciliation_results WHERE tenant_id = %(t)s)"
)


@pytest.fixture
def tenants() -> tuple[str, str]:
    return f"recon{uuid.uuid4().hex[:6]}", f"other{uuid.uuid4().hex[:6]}"


@pytest.fixture
def api_stack(
    stack_settings: Settings, tmp_path: Path, tenants: tuple[str, str]
) -> Iterator[ApiStack]:
    with running_api_stack(stack_settings, tmp_path, tenants, API_FLAGS) as stack:
        try:
            yield stack
        finally:
            delete_topics(
                stack.settings,
                [
                    stack.settings.topic(STATEMENTS_TOPIC),
                    stack.settings.topic(RECONCILIATION_TOPIC),
                ],
            )


def processed_ledger(stack: ApiStack, tenant: str) -> None:
    produce_commands(stack.settings, ledger_commands(tenant))
    processor = stack.children[0]
    assert isinstance(processor, ProcessorProcess)
    wait_until_consumed(stack.settings, CONSUME_TIMEOUT_S, [processor])


def projection_child(
    stack: ApiStack, log_directory: Path, metrics_port: int | None = None
) -> ChildProcess:
    name = f"reconciliation-projection-{uuid.uuid4().hex[:6]}.log"
    flags = [] if metrics_port is None else [f"--metrics-port={metrics_port}"]
    child = ChildProcess(
        stack.settings,
        ["reconcile", "project", "--batch-wait-ms=50", *flags],
        log_directory / name,
    )
    stack.children.append(child)
    return child


def row_counts(settings: Settings, tenant: str) -> tuple[int, int, int]:
    with psycopg.connect(settings.database_dsn) as connection:
        row = connection.execute(COUNT_ROWS, {"t": tenant}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def wait_for_rows(stack: ApiStack, tenant: str, expected: tuple[int, int, int]) -> None:
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    while (counts := row_counts(stack.settings, tenant)) != expected:
        assert time.monotonic() < deadline, f"{counts} != {expected}:\n{stack.logs()}"
        time.sleep(0.3)


def all_pages(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = f"/v1/reconciliation?{query}"
    for _ in range(RESULTS + 2):
        if url is None:
            return found
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["data"])
        url = page["next"]
    raise AssertionError(f"more pages than results: {found}")


def check_listing(stack: ApiStack, tenant: str, other: str) -> None:
    with stack.client(tenant) as client:
        everything = all_pages(client, "account=bank&limit=2")
        assert len(everything) == RESULTS
        assert len({row["result_id"] for row in everything}) == RESULTS
        states = Counter((row["state"], row["reason"]) for row in everything)
        assert states == {
            ("matched", "matched"): 3,
            ("unmatched", "not_on_statement"): 1,
            ("unmatched", "no_ledger_movement"): 1,
        }
        (sum_match,) = [row for row in everything if row["rule"] == "sum"]
        assert (len(sum_match["movement_ids"]), sum_match["difference"]) == (2, 0)
        unmatched = all_pages(client, "account=bank&state=unmatched")
        assert sorted(row["reason"] for row in unmatched) == [
            "no_ledger_movement",
            "not_on_statement",
        ]
        (missing,) = [row for row in unmatched if row["reason"] == "no_ledger_movement"]
        assert (missing["line_amount"], missing["movement_ids"]) == (7_777, [])
        assert all_pages(client, "account=nobody") == []
        for query, field in (
            ("state=open", "state"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("after=x", "after"),
            ("acount=bank", "acount"),
            ("account=bank&account=cash", "account"),
        ):
            response = client.get(f"/v1/reconciliation?{query}")
            assert response.status_code == 400, (query, response.text)
            assert response.json()["field"] == field, (query, response.text)
    with stack.client(other) as client:
        assert all_pages(client, "account=bank") == []
    with stack.client() as anonymous:
        assert anonymous.get("/v1/reconciliation").status_code == 401


def post_statement(
    client: httpx.Client, query: str, body: bytes, media_type: str = "application/xml"
) -> httpx.Response:
    return client.post(
        f"/v1/statements?{query}", content=body, headers={"Content-Type": media_type}
    )


def check_import(stack: ApiStack, tenant: str, other: str, path: Path) -> None:
    """POST /v1/statements: once, all or nothing, 400s naming the element or parameter."""
    content = path.read_bytes()
    broken = content.replace(b">400.25<", b">400.255<")
    with stack.client(tenant) as client:
        for query, body, media_type, status, field in (
            ("account=bank", broken, "application/xml", 400, "Stmt/Ntry[2]/Amt"),
            ("account=nope", content, "application/xml", 400, "account"),
            ("format=camt053", content, "application/xml", 400, "account"),
            ("account=bank&format=mt940", content, "application/xml", 400, "format"),
            ("account=bank", content, "application/octet-stream", 415, "format"),
            ("account=bank&acount=x", content, "application/xml", 400, "acount"),
            ("account=bank&format=csv", content, "text/plain", 400, "line 1"),
        ):
            response = post_statement(client, query, body, media_type)
            assert response.status_code == status, (query, response.text)
            assert response.json()["field"] == field, (query, response.text)
        assert "nothing imported" in post_statement(client, "account=bank", broken).text
        assert read_records(stack.settings, STATEMENTS_TOPIC, tenant) == []
        first = post_statement(client, "account=bank&format=camt053", content, "text/plain")
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "imported"
        assert (first.json()["lines_in_file"], first.json()["lines_new"]) == (LINES, LINES)
        again = post_statement(client, "account=bank", content)
        assert again.status_code == 200, again.text
        assert again.json() == {**first.json(), "status": "already_imported", "lines_new": 0}
        # a camt.054 notification (told by its namespace) of entries the statement already had
        notified = post_statement(client, "account=bank", NOTIFICATION.read_bytes())
        assert notified.status_code == 201, notified.text
        assert (notified.json()["lines_in_file"], notified.json()["lines_new"]) == (3, 0)
    with stack.client(other) as client:  # the key's tenant has no account "bank"
        refused = post_statement(client, "account=bank", content)
        assert (refused.status_code, refused.json()["field"]) == (400, "account"), refused.text
    with stack.client() as anonymous:
        assert post_statement(anonymous, "account=bank", content).status_code == 401
    records = read_records(stack.settings, STATEMENTS_TOPIC, tenant)
    assert [type(r) for r in records] == [StatementLine] * LINES + [Statement] * STATEMENTS
    notification = records[-1]
    assert isinstance(notification, Statement)
    assert notification.format is StatementFormat.CAMT054
    assert (notification.to_date_days, notification.closing_balance) == (None, None)


COUNT_REFUSALS = (
    "SELECT request_id, request_type, reason FROM ledger.reconciliation_refusals"
    " WHERE tenant_id = %s ORDER BY record_partition, record_offset"
)


def refusal_rows(settings: Settings, tenant: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(settings.database_dsn) as connection:
        rows = connection.execute(COUNT_REFUSALS, (tenant,)).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def post_manual(
    client: httpx.Client, kind: str, body: dict[str, Any] | bytes, media_type: str = JSON_TYPE
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        f"/v1/reconciliation/{kind}", content=content, headers={"Content-Type": media_type}
    )


def check_manual_refusals(client: httpx.Client, tenant: str, unmatched_id: str) -> None:
    """Bad bodies: 400 (or 415) naming the member; a result that is not undoable: 422."""
    match = {
        "account": "bank", "line_ids": ["bank/ref/x"], "movement_ids": [f"{tenant}:9#0"],
        "actor": "alice",
    }  # fmt: skip
    unmatch = {"account": "bank", "result_id": unmatched_id, "actor": "alice"}
    for kind, body, media_type, status, field in (
        ("matches", {**match, "movement_ids": ["other:9#0"]}, JSON_TYPE, 400, "movement_ids"),
        ("matches", {**match, "line_ids": ["cash/ref/x"]}, JSON_TYPE, 400, "line_ids"),
        ("matches", {**match, "line_ids": []}, JSON_TYPE, 400, "line_ids"),
        ("matches", {**match, "actor": ""}, JSON_TYPE, 400, "actor"),
        ("matches", {**match, "line_ids": "bank/ref/x"}, JSON_TYPE, 400, "line_ids"),
        ("matches", {**match, "colour": "red"}, JSON_TYPE, 400, "colour"),
        ("matches", match, "text/plain", 415, None),
        ("unmatches", {"result_id": "0:1", "actor": "a"}, JSON_TYPE, 400, "account"),
        ("unmatches", {**unmatch, "result_id": "x"}, JSON_TYPE, 400, "result_id"),
        ("unmatches", {**unmatch, "note": "a\nb"}, JSON_TYPE, 400, "note"),
        ("unmatches", unmatch, JSON_TYPE, 422, "result_id"),  # unmatched: nothing to undo
        ("unmatches", {**unmatch, "account": "cash"}, JSON_TYPE, 422, "result_id"),
        ("unmatches", b"{not json", JSON_TYPE, 400, None),
    ):
        response = post_manual(client, kind, body, media_type)
        assert response.status_code == status, (body, response.text)
        assert response.json().get("field") == field, (body, response.text)
        assert "\n" not in response.json()["detail"], response.text


def check_manual_requests(stack: ApiStack, tenant: str, other: str) -> str:
    """``POST /v1/reconciliation/unmatches`` undoes t2's match (the matcher answers with a
    superseding unmatched result); ``/matches`` of t2's items, unmatched now, matches them again
    (decision 0106); of matched items is a 422 naming the item and its result; of items no
    result names a ManualMatch the matcher refuses with a ManualRefusal (decision 0107). The
    records name the person and the API key (decision 0098). The refused request's id."""
    with stack.client(tenant) as client:
        rows = all_pages(client, "account=bank")
        (t2,) = [row for row in rows if row["line_amount"] == -40_025]
        (unmatched,) = [row for row in rows if row["reason"] == "no_ledger_movement"]
        check_manual_refusals(client, tenant, unmatched["result_id"])
        body = {"account": "bank", "result_id": t2["result_id"], "actor": "alice", "note": "n"}
        with stack.client(other) as stranger:  # another tenant's key sees no such result
            assert post_manual(stranger, "unmatches", body).status_code == 422
        requested = post_manual(client, "unmatches", body)
        assert requested.status_code == 202, requested.text
        document = requested.json()
        assert (document["status"], document["result_id"]) == ("requested", t2["result_id"])
        assert document["actor"].startswith("alice (API key ")
        assert requested.headers["location"] == "/v1/reconciliation?account=bank"
        wait_for_rows(stack, tenant, (STATEMENTS, LINES, RESULTS + 1))
        last = all_pages(client, "account=bank")[-1]
        assert (last["rule"], last["reason"], last["line_ids"]) == (
            "manual", "manual_unmatch", t2["line_ids"],
        )  # fmt: skip
        again = post_manual(client, "unmatches", body)  # superseded now
        assert (again.status_code, again.json()["field"]) == (422, "result_id"), again.text
        assert "superseded" in again.json()["detail"]
        match = {
            "account": "bank", "line_ids": t2["line_ids"], "movement_ids": t2["movement_ids"],
            "actor": "bob",
        }  # fmt: skip
        rematched = post_manual(client, "matches", match)  # unmatched now: matched by hand
        assert rematched.status_code == 202, rematched.text
        wait_for_rows(stack, tenant, (STATEMENTS, LINES, RESULTS + 2))
        latest = all_pages(client, "account=bank")[-1]
        assert (latest["state"], latest["rule"], latest["reason"]) == (
            "matched",
            "manual",
            "manual",
        )
        assert (latest["line_ids"], latest["movement_ids"]) == (
            t2["line_ids"], t2["movement_ids"],
        )  # fmt: skip
        assert (latest["line_amount"], latest["movement_amount"]) == (-40_025, -40_025)
        (t1,) = [row for row in rows if row["line_amount"] == 150_000]
        t1_items = {"line_ids": t1["line_ids"], "movement_ids": t1["movement_ids"]}
        undo_first = post_manual(client, "matches", {**match, **t1_items})
        assert undo_first.status_code == 422 and "undo it first" in undo_first.text
        # items no result names: written; the matcher refuses them (no such open items)
        unknown = {**match, "line_ids": ["bank/ref/nope"], "movement_ids": [f"{tenant}:999#0"]}
        matched = post_manual(client, "matches", unknown)
        assert matched.status_code == 202, matched.text
    records = read_records(stack.settings, STATEMENTS_TOPIC, tenant)
    unmatch_record, rematch_record, match_record = records[-3:]
    assert isinstance(unmatch_record, ManualUnmatch) and isinstance(match_record, ManualMatch)
    assert unmatch_record.actor == document["actor"] and unmatch_record.note == "n"
    assert isinstance(rematch_record, ManualMatch) and rematch_record.actor.startswith("bob")
    assert match_record.line_ids == ("bank/ref/nope",) and match_record.actor.startswith("bob")
    partition = document["request_id"].split(":")[0]
    assert matched.json()["request_id"].split(":")[0] == partition
    return str(matched.json()["request_id"])


def check_unmatched_matched_on_the_command_line(stack: ApiStack, tenant: str) -> None:
    """The 77.77 line the ledger never had and t5, which the bank never booked, both ended
    unmatched; an operator pairs them with ``statements match`` (decision 0106): one manual
    result supersedes both, and the report counts every item matched."""
    with stack.client(tenant) as client:
        rows = all_pages(client, "account=bank")
    (line,) = [row for row in rows if row["reason"] == "no_ledger_movement"]
    (movement,) = [row for row in rows if row["reason"] == "not_on_statement"]
    command = [
        "statements", "match", "--tenant", tenant, "--account", "bank",
        "--line", line["line_ids"][0], "--movement", movement["movement_ids"][0],
        "--actor", "carol", "--note", "the bank booked t5 short",
    ]  # fmt: skip
    requested = run_streamledger(command, stack.settings)
    assert requested.returncode == 0, requested.stderr
    wait_for_rows(stack, tenant, (STATEMENTS, LINES, RESULTS + 3))
    with stack.client(tenant) as client:
        latest = all_pages(client, "account=bank")[-1]
        assert all_pages(client, "account=bank&state=unmatched")[-1]["rule"] == "manual"
    assert (latest["state"], latest["rule"], latest["line_amount"]) == ("matched", "manual", 7_777)
    assert (latest["line_ids"], latest["movement_ids"]) == (
        line["line_ids"], movement["movement_ids"],
    )  # fmt: skip
    again = run_streamledger(command, stack.settings)  # matched now: refused before writing
    assert again.returncode == 1 and "undo it first" in again.stderr, again.stderr
    report = run_streamledger(
        ["reconcile", "report", "--tenant", tenant, "--account", "bank"], stack.settings
    )
    assert report.returncode == 0, report.stderr
    rows_text = report.stdout.splitlines()
    lines_at = rows_text.index(f"statement lines: {LINES}")
    assert rows_text[lines_at + 1 : lines_at + 5] == [
        f"  matched: {LINES}", "  mismatched: 0", "  unmatched: 0", "  open: 0",
    ], report.stdout  # fmt: skip
    assert rows_text[lines_at + 6 : lines_at + 9] == [
        "  matched: 5", "  mismatched: 0", "  unmatched: 0",
    ], report.stdout  # fmt: skip
    assert "manual requests refused by the matcher: 1" in report.stdout, report.stdout


def test_results_in_postgresql_and_through_the_api(
    api_stack: ApiStack, tenants: tuple[str, str], tmp_path: Path
) -> None:
    stack, (tenant, other) = api_stack, tenants
    processed_ledger(stack, tenant)
    path = statement_file(tmp_path)
    check_import(stack, tenant, other, path)
    matcher = MatcherProcess(stack.settings, tmp_path)
    stack.children.append(matcher)
    metrics_port = free_port_range(1)
    projection = projection_child(stack, tmp_path, metrics_port)
    wait_for_rows(stack, tenant, (STATEMENTS, LINES, RESULTS))
    metrics_with(
        metrics_port,
        'streamledger_reconciliation_projection_rows_total{table="statement_lines"} 4.0',
        'streamledger_reconciliation_projection_rows_total{table="reconciliation_results"} 5.0',
        "streamledger_reconciliation_projection_ready 1.0",
    )
    check_listing(stack, tenant, other)
    refused_id = check_manual_requests(stack, tenant, other)
    # the manual match names items that do not exist: the matcher refuses it with a record
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    while not (refusals := refusal_rows(stack.settings, tenant)):
        assert time.monotonic() < deadline, matcher.log()
        time.sleep(0.3)
    ((request_id, request_type, reason),) = refusals
    assert (request_id, request_type) == (refused_id, "ManualMatch")
    assert reason.startswith("neither open nor unmatched: bank/ref/nope"), reason
    assert "refused: neither open nor unmatched" in matcher.log()
    with stack.client(tenant) as client:  # the client holding the 202's request_id asks
        found = client.get(f"/v1/reconciliation/refusals?request_id={refused_id}")
        assert found.status_code == 200, found.text
        (document,) = found.json()["data"]
        assert (document["request_type"], document["reason"]) == ("ManualMatch", reason)
        assert document["actor"].startswith("bob (API key ")
        assert client.get("/v1/reconciliation/refusals?request_id=x").status_code == 400
    with stack.client(other) as stranger:
        assert stranger.get("/v1/reconciliation/refusals").json()["data"] == []
    (refusal,) = [
        r for r in read_records(stack.settings, RECONCILIATION_TOPIC, tenant)
        if isinstance(r, ManualRefusal)
    ]  # fmt: skip
    assert (refusal.request_id, refusal.actor[:3]) == (refused_id, "bob")
    # kill -9: the next matcher rebuilds the unmatched items from the results (and skips the
    # refusal) before it reads the command line's match
    matcher.kill()
    matcher = MatcherProcess(stack.settings, tmp_path)
    stack.children.append(matcher)
    check_unmatched_matched_on_the_command_line(stack, tenant)
    assert row_counts(stack.settings, tenant) == (STATEMENTS, LINES, RESULTS + 3)
    assert len(refusal_rows(stack.settings, tenant)) == 1

    # a restarted projection starts at its stored offsets: no row twice, none lost
    projection.stop()
    assert projection.process.returncode == 0, projection.log()
    projection_child(stack, tmp_path)
    time.sleep(2.0)
    assert row_counts(stack.settings, tenant) == (STATEMENTS, LINES, RESULTS + 3)
    assert len(refusal_rows(stack.settings, tenant)) == 1
    assert matcher.stop() == 0, matcher.log()


KILL_RESULTS = KILL_TRANSFERS + KILL_EXTRA  # matched, not on the statement, no ledger movement
KILL_LINES = KILL_TRANSFERS - KILL_MISSING + KILL_EXTRA


@pytest.fixture
def database_settings(projection_settings: Settings) -> Iterator[Settings]:
    """Fresh topics and a fresh database; the reconciliation topics deleted afterwards."""
    yield projection_settings
    delete_topics(
        projection_settings,
        [projection_settings.topic(name) for name in (STATEMENTS_TOPIC, RECONCILIATION_TOPIC)],
    )


def test_a_killed_projection_writes_each_row_once(
    database_settings: Settings, tmp_path: Path
) -> None:
    """``kill -9`` of the reconciliation projection mid-run (one record per transaction), then a
    restart: every line and result is in PostgreSQL exactly once (decision 0074)."""
    settings = database_settings
    tenant = f"killp{uuid.uuid4().hex[:6]}"
    produce_commands(settings, kill_workload(tenant))
    processor = ProcessorProcess(settings, "a", tmp_path)
    try:
        wait_until_consumed(settings, CONSUME_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()
    path = tmp_path / "statement.csv"
    path.write_bytes(kill_statement(settings, tenant))
    imported = run_streamledger(
        ["statements", "import", str(path), "--tenant", tenant, "--account", "bank"], settings
    )
    assert imported.returncode == 0, imported.stderr
    matcher = MatcherProcess(settings, tmp_path, ("--date-window-days=0", "--batch-wait-ms=20"))
    try:
        deadline = time.monotonic() + PROJECTED_TIMEOUT_S
        while len(all_results(settings, [tenant])) < KILL_RESULTS:
            assert matcher.process.poll() is None, matcher.log()
            assert time.monotonic() < deadline, matcher.log()
            time.sleep(0.5)
    finally:
        assert matcher.stop() == 0, matcher.log()
    flags = ["reconcile", "project", "--batch-records-max=1", "--batch-wait-ms=1"]
    first = ChildProcess(settings, flags, tmp_path / "projection-1.log")
    try:
        deadline = time.monotonic() + PROJECTED_TIMEOUT_S
        while row_counts(settings, tenant)[2] < 5:
            assert first.process.poll() is None, first.log()
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.05)
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    assert row_counts(settings, tenant) != (1, KILL_LINES, KILL_RESULTS), "finished before"
    second = ChildProcess(settings, flags, tmp_path / "projection-2.log")
    try:
        deadline = time.monotonic() + PROJECTED_TIMEOUT_S
        while row_counts(settings, tenant) != (1, KILL_LINES, KILL_RESULTS):
            assert second.process.poll() is None, second.log()
            assert time.monotonic() < deadline, (row_counts(settings, tenant), second.log())
            time.sleep(0.2)
        time.sleep(1.0)  # anything written twice would show (or stop the projection) now
        assert second.process.poll() is None, second.log()
    finally:
        second.stop()
    assert row_counts(settings, tenant) == (1, KILL_LINES, KILL_RESULTS)
    with psycopg.connect(settings.database_dsn) as connection:
        states = connection.execute(
            "SELECT state, reason, count(*) FROM ledger.reconciliation_results"
            " WHERE tenant_id = %s GROUP BY 1, 2",
            (tenant,),
        ).fetchall()
    assert Counter({(state, reason): count for state, reason, count in states}) == Counter(
        {
            ("matched", "matched"): KILL_TRANSFERS - KILL_MISSING,
            ("unmatched", "not_on_statement"): KILL_MISSING,
            ("unmatched", "no_ledger_movement"): KILL_EXTRA,
        }
    )


@pytest.mark.parametrize("statement_format", ["camt053", "bai2"])
def test_a_synthesized_statement_is_reconciled_to_its_perturbations(
    database_settings: Settings, tmp_path: Path, statement_format: str
) -> None:
    """``statements synthesize`` writes the bank's view of an account's movements with seeded
    perturbations (camt.053: one file; BAI2: one file per day); imported and matched,
    ``reconcile report`` shows exactly them."""
    settings = database_settings
    tenant = f"synth{uuid.uuid4().hex[:6]}"
    produce_commands(settings, ledger_commands(tenant))  # 5 movements on "bank"
    processor = ProcessorProcess(settings, "a", tmp_path)
    try:
        wait_until_consumed(settings, CONSUME_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()
    path = tmp_path / ("synthetic.xml" if statement_format == "camt053" else "synthetic.bai")
    synthesized = run_streamledger(
        ["statements", "synthesize", "--tenant", tenant, "--account", "bank",
         "--output", str(path), "--seed", "3", "--missing-share", "0.2", "--mismatched", "1",
         "--extra", "2", "--format", statement_format],
        settings,
    )  # fmt: skip
    assert synthesized.returncode == 0, synthesized.stderr
    assert "6 entries from 5 movements; reconciliation must find 3 matched, 3 lines and 2" in (
        synthesized.stdout
    ), synthesized.stdout
    difference = synthesized.stdout.rsplit("balance difference of ", 1)[1].strip()
    files = [path] if statement_format == "camt053" else sorted(tmp_path.glob("synthetic-*.bai"))
    if statement_format == "bai2":  # the files' paths, one a line, then the expectations
        assert [str(file) for file in files] == synthesized.stdout.splitlines()[: len(files)]
    new_lines = 0
    for file in files:  # BAI2: in day order
        imported = run_streamledger(
            ["statements", "import", str(file), "--tenant", tenant, "--account", "bank"], settings
        )
        assert imported.returncode == 0, imported.stderr
        new_lines += int(imported.stdout.split(" new")[0].rsplit(maxsplit=1)[-1])
    assert new_lines == 6
    matcher = MatcherProcess(settings, tmp_path, ("--date-window-days=0", "--batch-wait-ms=20"))
    try:
        deadline = time.monotonic() + PROJECTED_TIMEOUT_S
        # 3 matches, 3 lines and 2 movements unmatched
        while len(all_results(settings, [tenant])) < 8:
            assert matcher.process.poll() is None, matcher.log()
            assert time.monotonic() < deadline, matcher.log()
            time.sleep(0.5)
    finally:
        assert matcher.stop() == 0, matcher.log()
    report = run_streamledger(
        ["reconcile", "report", "--tenant", tenant, "--account", "bank"], settings
    )
    assert report.returncode == 0, report.stderr
    rows = report.stdout.splitlines()
    lines_at = rows.index("statement lines: 6")
    assert rows[lines_at + 1 : lines_at + 5] == [
        "  matched: 3",
        "  mismatched: 0",
        "  unmatched: 3",
        "  open: 0",
    ], report.stdout
    assert rows[lines_at + 6 : lines_at + 9] == [
        "  matched: 3",
        "  mismatched: 0",
        "  unmatched: 2",
    ], report.stdout
    assert f"difference {difference} (minor units)" in report.stdout, report.stdout
