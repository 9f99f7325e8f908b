"""Pure parts of the reports: decimals by asset scale, CSV quoting, the statement's own check, the
trial balance's zero-sum check, and the PDF's page layout."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, strategies

from projections.report_formats import decimal_text, iso_time, statement_csv
from projections.reports import (
    GENESIS_LINK,
    AccountStatement,
    Counters,
    OutOfBalanceError,
    StatementEntry,
    StatementMismatchError,
    TrialBalanceLine,
    build_statement,
    build_trial_balance,
)
from projections.statement_pdf import ROWS_FIRST_PAGE, ROWS_PER_PAGE, page_rows

AT = datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC)


@pytest.mark.parametrize(
    ("minor", "scale", "text"),
    [
        (0, 2, "0.00"),
        (5, 2, "0.05"),
        (-5, 2, "-0.05"),
        (123450, 2, "1234.50"),
        (-123450, 2, "-1234.50"),
        (2**63 - 1, 18, "9.223372036854775807"),
        (42, 0, "42"),
        (42, None, "42"),
    ],
)
def test_decimal_text(minor: int, scale: int | None, text: str) -> None:
    assert decimal_text(minor, scale) == text


@given(strategies.integers(-(2**64), 2**64), strategies.integers(1, 18))
def test_decimal_text_is_exact(minor: int, scale: int) -> None:
    text = decimal_text(minor, scale)
    whole, _, fraction = text.lstrip("-").partition(".")
    assert len(fraction) == scale
    assert (-1 if text.startswith("-") else 1) * int(whole + fraction) == minor


def test_iso_time_is_utc_with_microseconds() -> None:
    assert iso_time(AT) == "2026-01-02T03:04:05.000600Z"
    assert iso_time(AT.astimezone(UTC) + timedelta(0)) == "2026-01-02T03:04:05.000600Z"


def entry(sequence: int, side: str, kind: str, amount: int, after: Counters) -> StatementEntry:
    return StatementEntry(
        sequence, kind, side, 'tr-"1",x', "TransferPosted", amount, after, AT, "payments-gw:v1"
    )


def statement_of(entries: list[StatementEntry], c: Counters) -> AccountStatement:
    counters = (c.debits_posted, c.credits_posted, c.debits_pending, c.credits_pending)
    account = ("USD", 2, "credit", AT, 1, None, None, None, None, *counters)
    return build_statement(
        ("t", "a", AT, AT + timedelta(days=1)), account, (GENESIS_LINK, GENESIS_LINK), entries
    )


def test_csv_quotes_and_reads_back() -> None:
    after = Counters(0, 150, 0, 0)
    statement = statement_of([entry(2, "credit", "posted", 150, after)], after)
    rows = list(csv.reader(io.StringIO(statement_csv(statement))))
    assert rows[2][4] == 'tr-"1",x'  # quoted by the writer, read back unchanged
    assert rows[2][7] == "1.50" and rows[-4][8] == "1.50"
    # since contract v1.7 each entry names who issued its event, before the event hash column
    assert rows[0][-2:] == ["actor", "event_hash"]
    assert rows[2][-2:] == ["payments-gw:v1", ""] and rows[1][-2] == ""
    assert len({len(row) for row in rows}) == 1


def test_a_statement_that_does_not_add_up_is_refused() -> None:
    wrong = Counters(0, 149, 0, 0)
    with pytest.raises(StatementMismatchError):
        statement_of([entry(2, "credit", "posted", 150, wrong)], wrong)
    with pytest.raises(StatementMismatchError):
        right = Counters(0, 150, 0, 0)
        statement_of([entry(2, "credit", "posted", 150, right)], Counters(0, 151, 0, 0))


def test_a_trial_balance_that_does_not_net_to_zero_is_refused() -> None:
    lines = (
        TrialBalanceLine("a", "USD", 2, "credit", Counters(0, 100, 0, 0), 2),
        TrialBalanceLine("b", "USD", 2, "credit", Counters(99, 0, 0, 0), 2),
    )
    with pytest.raises(OutOfBalanceError, match="USD: net posted 1"):
        build_trial_balance("t", AT, GENESIS_LINK, lines)
    balanced = (lines[0], TrialBalanceLine("b", "USD", 2, "credit", Counters(100, 0, 0, 0), 2))
    report = build_trial_balance("t", AT, GENESIS_LINK, balanced)
    assert [(t.currency, t.accounts, t.net_posted) for t in report.totals] == [("USD", 2, 0)]


@pytest.mark.parametrize("count", [0, 1, ROWS_FIRST_PAGE, ROWS_FIRST_PAGE + 1, 500])
def test_pages_hold_every_entry_once(count: int) -> None:
    entries = [entry(i + 2, "credit", "posted", 1, Counters()) for i in range(count)]
    pages = page_rows(entries)
    assert [e for page in pages for e in page] == entries
    assert len(pages[0]) <= ROWS_FIRST_PAGE
    assert all(0 < len(page) <= ROWS_PER_PAGE for page in pages[1:])
