"""What the reports look like from outside: the CLI's JSON, CSV and PDF, the API with API keys,
and bad input as one line (CLI) or a 400 problem naming the parameter (API)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from api.api_keys import create_api_key
from api.settings import build_api_settings
from projections.batch import to_datetime
from projections.queries import LedgerReader, reader_dsn
from projections.report_formats import decimal_text, iso_time, statement_document
from projections.reports import AccountStatement, run_report, statement_steps
from projections.statement_pdf import page_rows
from streamledger.settings import Settings
from tests.conftest import run_streamledger
from tests.system.api_server import serving_api
from tests.system.projection_checks import project_until_caught_up, projection_for
from workloads.api_stack import free_port
from workloads.projection_events import Workload, generate, produce_events

pytestmark = pytest.mark.system
SEED = 7319
DECIMAL = re.compile(r"-?[0-9]+\.[0-9]{2}")


@pytest.fixture
def projected(projection_settings: Settings) -> Workload:
    workload = generate(SEED, tenants=2, accounts_per_tenant=4, commands=300)
    produce_events(projection_settings, workload.events, transactional_id="report-outputs")
    project_until_caught_up(projection_settings, len(workload.events))
    return workload


def period(workload: Workload) -> tuple[str, str]:
    return iso_time(to_datetime(workload.first_time_us)), iso_time(
        to_datetime(workload.last_time_us + 1)
    )


def read_statement(settings: Settings, tenant: str, account: str, workload: Workload) -> Any:
    steps = statement_steps(
        tenant, account, to_datetime(workload.first_time_us), to_datetime(workload.last_time_us + 1)
    )
    with LedgerReader(reader_dsn(settings), projection_for(settings)) as reader:
        return run_report(steps, lambda sql, parameters: reader.fetch(tenant, sql, parameters))


def test_cli_statement_as_json_csv_and_pdf(
    projection_settings: Settings, projected: Workload, tmp_path: Path
) -> None:
    tenant, account = projected.tenants[0], "acct-1"
    statement: AccountStatement = read_statement(projection_settings, tenant, account, projected)
    start, end = period(projected)
    common = ["statement", tenant, account, "--from", start, "--to", end]

    as_json = run_streamledger([*common, "--format", "json"], projection_settings)
    assert as_json.returncode == 0, as_json.stderr
    document = msgspec.json.decode(as_json.stdout)
    expected = msgspec.json.decode(msgspec.json.encode(statement_document(statement)))
    assert document == expected
    assert document["last_event"]["hash"] == statement.last_event.hash.hex()

    as_csv = run_streamledger([*common, "--format", "csv"], projection_settings)
    assert as_csv.returncode == 0, as_csv.stderr
    check_statement_csv(as_csv.stdout, statement)

    pdf_path = tmp_path / "statement.pdf"
    as_pdf = run_streamledger(
        [*common, "--format", "pdf", "--output", str(pdf_path)], projection_settings
    )
    assert as_pdf.returncode == 0, as_pdf.stderr
    check_statement_pdf(pdf_path, statement)


def check_statement_csv(text: str, statement: AccountStatement) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["row", "effective_at", "sequence"]
    assert all(len(row) == len(header) for row in body)
    kinds = [row[0] for row in body]
    assert kinds == ["opening", *["entry"] * len(statement.entries), "closing", *["total"] * 3]
    closing = body[len(statement.entries) + 1]
    assert closing[2] == str(statement.last_event.sequence)
    assert closing[-1] == statement.last_event.hash.hex()
    side = statement.normal_side
    assert closing[8] == decimal_text(statement.closing.posted(side), 2)
    for row in body[: len(statement.entries) + 2]:
        assert datetime.fromisoformat(row[1]).utcoffset() is not None
        assert row[1].endswith("Z")
        for cell in row[6:11]:
            assert cell == "" or DECIMAL.fullmatch(cell), row
    assert body[-3][6] == decimal_text(statement.totals.debits_posted, 2)


def check_statement_pdf(path: Path, statement: AccountStatement) -> None:
    assert path.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = len(page_rows(statement.entries))
    assert pages >= 2, "the workload should fill more than one page"
    assert text.count("\f") == pages
    for number in range(1, pages + 1):
        assert f"Page {number} of {pages}" in text
    assert "Account statement" in text
    assert statement.account_id in text and statement.tenant_id in text
    assert text.count(statement.last_event.hash.hex()) == pages  # the verification line
    assert decimal_text(statement.closing.posted(statement.normal_side), 2) in text
    assert f"Entries in period: {statement.totals.entries}." in text


def test_cli_trial_balance_csv_and_one_line_errors(
    projection_settings: Settings, projected: Workload
) -> None:
    tenant = projected.tenants[1]
    _, end = period(projected)
    result = run_streamledger(
        ["trial-balance", tenant, "--as-of", end, "--format", "csv"], projection_settings
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    totals = [row for row in rows if row[0] == "total"]
    assert [row[2] for row in totals] == ["EUR", "USD"]
    assert all(row[8] == "0.00" for row in totals)  # net posted
    assert sum(1 for row in rows if row[0] == "account") == 4
    assert rows[-1][0] == "as_of" and len(rows[-1][-1]) == 64

    for arguments, named in (
        (["trial-balance", tenant, "--as-of", "yesterday"], "--as-of"),
        (["trial-balance", tenant, "--as-of", "\u0663"], "--as-of"),
        (["statement", tenant, "acct-0", "--from", "x", "--to", end], "--from"),
        (["statement", tenant, "acct-0", "--from", end, "--to", end], "--from"),
        (
            ["statement", tenant, "acct-0", "--from", end, "--to", end, "--format", "xml"],
            "--format",
        ),
        (["statement", tenant, "acct-0", "--to", end], "--from"),
    ):
        failed = run_streamledger(arguments, projection_settings)
        assert failed.returncode != 0, arguments
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], (arguments, failed.stderr)
        assert "Traceback" not in failed.stderr


@contextmanager
def api_client(settings: Settings) -> Iterator[str]:
    api = build_api_settings(settings, limits={"port": free_port()})
    with serving_api(settings, api, "api-reports") as base_url:
        yield base_url


def assert_problem(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field, response.text


def test_api_reports_with_api_keys(projection_settings: Settings, projected: Workload) -> None:
    tenant = projected.tenants[0]
    keys = {name: create_api_key(projection_settings, name).token for name in (tenant, "stranger")}
    start, end = period(projected)
    statement = read_statement(projection_settings, tenant, "acct-2", projected)
    with api_client(projection_settings) as base_url:
        owner = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {keys[tenant]}"})
        stranger = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {keys['stranger']}"}
        )
        with owner, stranger:
            query = {"from": start, "to": end}
            got = owner.get("/v1/accounts/acct-2/statement", params=query)
            assert got.status_code == 200, got.text
            assert got.json() == msgspec.json.decode(
                msgspec.json.encode(statement_document(statement))
            )
            pdf = owner.get("/v1/accounts/acct-2/statement", params={**query, "format": "pdf"})
            assert pdf.headers["content-type"] == "application/pdf"
            assert pdf.content.startswith(b"%PDF-")
            trial = owner.get("/v1/trial-balance", params={"as_of": end})
            assert trial.status_code == 200 and trial.json()["balanced"] is True
            assert trial.json()["accounts"] == 4
            as_csv = owner.get("/v1/trial-balance", params={"format": "csv"})
            assert as_csv.headers["content-type"].startswith("text/csv")

            hidden = stranger.get("/v1/accounts/acct-2/statement", params=query)
            assert hidden.status_code == 404, hidden.text
            empty = stranger.get("/v1/trial-balance").json()
            assert empty["accounts"] == 0 and empty["lines"] == [] and empty["totals"] == []
            assert empty["last_event"]["sequence"] == 0

            path = "/v1/accounts/acct-2/statement"
            assert_problem(owner.get(path, params={"to": end}), "from")
            assert_problem(owner.get(path, params={"from": start, "to": "soon"}), "to")
            assert_problem(owner.get(path, params={"from": end, "to": start}), "from")
            assert_problem(owner.get(path, params={**query, "format": "xml"}), "format")
            assert_problem(owner.get(path, params={**query, "page": "2"}), "page")
            assert_problem(owner.get("/v1/trial-balance", params={"as_of": "\u0663"}), "as_of")
            assert_problem(owner.get("/v1/trial-balance", params={"format": "pdf"}), "format")
