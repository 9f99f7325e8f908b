"""BAI2 → lines (issue 20): a golden file with two accounts in two currencies, credits and
debits, funds types 0/S/V/Z and 88 continuation records, parsed to the exact lines; a malformed
file at each level refused whole, naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciliation import bai2
from reconciliation.amounts import date_days
from reconciliation.statement import (
    AccountTerms,
    Balance,
    Direction,
    ParsedLine,
    ParsedStatement,
    StatementFormat,
    StatementRejected,
)

GOLDEN = (Path(__file__).parent / "statement_files" / "bai2_two_accounts.bai").read_text()
USD = AccountTerms(tenant_id="acme", account_id="bank-usd", currency="USD", asset_scale=2)
EUR = AccountTerms(tenant_id="acme", account_id="bank-eur", currency="EUR", asset_scale=2)
DEC_4 = date_days("2026-12-04")


def parsed(text: str, account: AccountTerms, bank_account: str) -> ParsedStatement:
    result = bai2.parse(text.encode(), account, bank_account=bank_account)
    assert isinstance(result, ParsedStatement), result
    return result


def line(
    number: int, location: str, amount: int, direction: Direction, **rest: object
) -> ParsedLine:
    fields: dict[str, object] = {
        "reversal": False,
        "booking_date_days": DEC_4,
        "value_date_days": None,
        "bank_reference": None,
        "entry_reference": None,
        "end_to_end_reference": None,
        "counterparty_name": None,
        "counterparty_account": None,
        "remittance_information": None,
    }
    fields.update(rest)
    return ParsedLine(
        line_number=number,
        location=location,
        amount=amount,
        direction=direction,
        **fields,  # type: ignore[arg-type]
    )


def test_bai2_golden_file_usd_account() -> None:
    statement = parsed(GOLDEN, USD, "4001234567")
    assert statement.format is StatementFormat.BAI2
    assert statement.opening_balance == Balance(amount=1_000_000, date_days=DEC_4)
    assert statement.closing_balance == Balance(amount=1_125_000, date_days=DEC_4)
    assert (statement.from_date_days, statement.to_date_days) == (DEC_4, DEC_4)
    assert statement.lines == (
        line(
            1,
            "line 4 (16)",
            150_000,
            Direction.CREDIT,
            value_date_days=DEC_4,
            bank_reference="BR0001",
            end_to_end_reference="INV-2026-0042",
            remittance_information=(
                "INCOMING WIRE FROM GLOBEX CORP PAYMENT OF INVOICE INV-2026-0042"
            ),
        ),
        line(
            2,
            "line 6 (16)",
            20_000,
            Direction.DEBIT,
            bank_reference="BR0002",
            end_to_end_reference="1042",
            remittance_information="CHECK PAID",
        ),
        line(
            3,
            "line 7 (16)",
            1_500,
            Direction.CREDIT,
            bank_reference="BR0003",
            remittance_information="MISC CREDIT",
        ),
        line(
            4,
            "line 8 (16)",
            6_500,
            Direction.DEBIT,
            bank_reference="BR0004",
            remittance_information="BANK FEE DECEMBER",
        ),
    )


def test_bai2_golden_file_eur_account_with_a_continued_identifier() -> None:
    statement = parsed(GOLDEN, EUR, "4009876543")
    assert statement.closing_balance == Balance(amount=480_000, date_days=DEC_4)
    assert [(item.amount, item.direction) for item in statement.lines] == [
        (20_000, Direction.DEBIT)
    ]


def test_bai2_needs_the_account_when_there_are_several() -> None:
    rejected = bai2.parse(GOLDEN.encode(), USD)
    assert isinstance(rejected, StatementRejected) and "--bank-account" in rejected.reason
    wrong = bai2.parse(GOLDEN.encode(), EUR, bank_account="4001234567")
    assert isinstance(wrong, StatementRejected) and "currency USD" in wrong.reason


@pytest.mark.parametrize(
    ("old", "new", "location", "reason"),
    [
        ("16,475,20000,0,", "16,475,2O000,0,", "line 6 (16)", "not a whole number"),
        ("16,475,20000,0,", "16,475,20001,0,", "line 9 (49)", "account control total 2303000"),
        ("16,475,", "16,875,", "line 6 (16)", "type code 875"),
        ("49,2303000,7/", "49,2303000,8/", "line 9 (49)", "number of records 8"),
        ("98,3303000,2,13/", "98,3303000,3,13/", "line 14 (98)", "number of accounts 3"),
        ("99,3303000,1,15/", "99,3303000,1,16/", "line 15 (99)", "number of records"),
        ("261204,2359", "261304,2359", "line 2 (02)", "does not exist"),
        ("V,261204,,", "Q,261204,,", "line 4 (16)", "funds type 'Q'"),
        (",,2/\n02", ",,3/\n02", "line 1 (01)", "version 2"),
        ("49,1000000,4/\n", "", "line 13 (98)", "expected a 49"),
        ("BR0002", "BR0001", "line 6 (16)", "already used by line 4 (16)"),
    ],
)
def test_bai2_malformed_is_refused_whole(old: str, new: str, location: str, reason: str) -> None:
    assert old in GOLDEN
    rejected = bai2.parse(GOLDEN.replace(old, new, 1).encode(), USD, bank_account="4001234567")
    assert isinstance(rejected, StatementRejected), rejected
    assert rejected.location == location, rejected
    assert reason in rejected.reason, rejected


def test_bai2_continuation_first_and_non_ascii() -> None:
    rejected = bai2.parse(b"88,abc/\n", USD)
    assert isinstance(rejected, StatementRejected) and rejected.location == "line 1 (88)"
    rejected = bai2.parse("01,é/\n".encode(), USD)
    assert isinstance(rejected, StatementRejected) and "ASCII" in rejected.reason
