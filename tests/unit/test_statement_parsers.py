"""Statement files → lines (issue 20): golden camt.053 and CSV files parsed to the exact lines,
and a malformed file at each level refused whole, naming where and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciliation import camt053, statement_csv
from reconciliation.amounts import date_days, iso_date, minor_units
from reconciliation.statement import (
    AccountTerms,
    Balance,
    Direction,
    ParsedStatement,
    StatementFormat,
    StatementRejected,
    file_sha256,
    statement_lines,
)

FILES = Path(__file__).parent / "statement_files"
EUR = AccountTerms(tenant_id="acme", account_id="bank-eur", currency="EUR", asset_scale=2)
DEC_4 = date_days("2026-12-04")
DEC_5 = date_days("2026-12-05")


def parsed_camt(content: bytes, account: AccountTerms = EUR) -> ParsedStatement:
    parsed = camt053.parse(content, account)
    assert isinstance(parsed, ParsedStatement), parsed
    return parsed


def rejected_camt(content: bytes) -> StatementRejected:
    parsed = camt053.parse(content, EUR)
    assert isinstance(parsed, StatementRejected), parsed
    return parsed


def test_camt053_golden_file() -> None:
    content = (FILES / "camt053_single_eur.xml").read_bytes()
    parsed = parsed_camt(content)
    assert parsed.format is StatementFormat.CAMT053
    assert parsed.statement_id == "ACME-EUR-2026-338"
    assert parsed.opening_balance == Balance(amount=1_000_000, date_days=DEC_4)
    assert parsed.closing_balance == Balance(amount=1_108_050, date_days=DEC_4)
    assert (parsed.from_date_days, parsed.to_date_days) == (DEC_4, DEC_4)
    assert parsed.entries_not_booked == 1
    first, second, third = parsed.lines
    assert (first.amount, first.direction, first.reversal) == (150_000, Direction.CREDIT, False)
    assert (first.booking_date_days, first.value_date_days) == (DEC_4, DEC_4)
    assert first.bank_reference == "2026120400012345"
    assert first.entry_reference == "1"
    assert first.end_to_end_reference == "INV-2026-0042"
    assert first.counterparty_name == "Globex Corporation"
    assert first.counterparty_account == "FR7630006000011234567890189"
    assert first.remittance_information == "Invoice INV-2026-0042 thank you"
    assert (second.amount, second.direction, second.value_date_days) == (
        40_025,
        Direction.DEBIT,
        DEC_5,
    )
    assert second.end_to_end_reference is None  # NOTPROVIDED
    assert second.counterparty_name == "Initech Supplies Ltd"
    assert second.remittance_information == "RF18539007547034"
    assert (third.amount, third.direction, third.reversal) == (1_925, Direction.DEBIT, True)
    net = sum(
        line.amount if line.direction is Direction.CREDIT else -line.amount for line in parsed.lines
    )
    assert parsed.opening_balance.amount + net == parsed.closing_balance.amount


def test_line_identity_is_the_bank_reference_or_content_and_occurrence() -> None:
    content = (FILES / "statement_eur.csv").read_bytes()
    parsed = statement_csv.parse(content, EUR)
    assert isinstance(parsed, ParsedStatement), parsed
    lines = statement_lines(EUR, parsed, file_sha256(content))
    assert lines[0].line_id == "bank-eur/ref/2026120400012345"
    assert lines[1].line_id.endswith("/0")
    assert lines[2].line_id.endswith("/1")
    assert lines[1].line_id[:-2] == lines[2].line_id[:-2]  # two equal card fees are two lines
    assert [line.amount for line in lines] == [150_000, 1_250, 1_250]
    assert lines[0].remittance_information == "Invoice INV-2026-0042, thank you"
    again = statement_lines(EUR, parsed, file_sha256(content))
    assert again == lines  # identity is a function of the file


GOOD = (FILES / "camt053_single_eur.xml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "location", "reason"),
    [
        (
            ('<Amt Ccy="EUR">400.25</Amt>', '<Amt Ccy="EUR">400.255</Amt>'),
            "Stmt/Ntry[2]/Amt",
            "decimal places",
        ),
        (
            ('<Amt Ccy="EUR">400.25</Amt>', '<Amt Ccy="USD">400.25</Amt>'),
            "Stmt/Ntry[2]/Amt",
            "currency USD",
        ),
        (
            ('<Amt Ccy="EUR">400.25</Amt>', '<Amt Ccy="EUR">-400.25</Amt>'),
            "Stmt/Ntry[2]/Amt",
            "negative",
        ),
        (
            ('<Amt Ccy="EUR">400.25</Amt>', '<Amt Ccy="EUR">4OO.25</Amt>'),
            "Stmt/Ntry[2]/Amt",
            "not a decimal",
        ),
        (
            (
                "<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>",
                "<CdtDbtInd>DEBIT</CdtDbtInd>\n        <Sts>",
            ),
            "Stmt/Ntry[2]/CdtDbtInd",
            "not CRDT or DBIT",
        ),
        (
            (
                "<BookgDt><Dt>2026-12-04</Dt></BookgDt>\n        <ValDt><Dt>2026-12-05",
                "<BookgDt><Dt>2026-13-04</Dt></BookgDt>\n        <ValDt><Dt>2026-12-05",
            ),
            "Stmt/Ntry[2]/BookgDt",
            "does not exist",
        ),
        (
            (
                "<AcctSvcrRef>2026120400012346</AcctSvcrRef>",
                "<AcctSvcrRef>2026120400012345</AcctSvcrRef>",
            ),
            "Stmt/Ntry[2]",
            "already used by Stmt/Ntry[1]",
        ),
        (
            ("<RvslInd>true</RvslInd>", "<RvslInd>yes</RvslInd>"),
            "Stmt/Ntry[3]/RvslInd",
            "not true or false",
        ),
        (("<Ccy>EUR</Ccy>", "<Ccy>CHF</Ccy>"), "Stmt/Acct/Ccy", "currency CHF"),
        (("camt.053.001.08", "camt.052.001.08"), "Document", "not a camt.053 document"),
        (("<Stmt>", "<Stmnt>"), "line", "not well-formed"),
        (
            (
                '<?xml version="1.0" encoding="UTF-8"?>',
                '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "b">]>',
            ),
            "document",
            "DOCTYPE",
        ),
    ],
)
def test_camt053_malformed_is_refused_whole(
    edit: tuple[str, str], location: str, reason: str
) -> None:
    old, new = edit
    assert old in GOOD
    rejected = rejected_camt(GOOD.replace(old, new, 1).encode("utf-8"))
    assert rejected.location.startswith(location), rejected
    assert reason in rejected.reason, rejected


def test_camt053_missing_booking_date_and_status() -> None:
    without_booking = GOOD.replace("<BookgDt><Dt>2026-12-04</Dt></BookgDt>", "", 1)
    assert rejected_camt(without_booking.encode()).location == "Stmt/Ntry[1]/BookgDt"
    without_status = GOOD.replace("<Sts><Cd>BOOK</Cd></Sts>", "", 1)
    assert rejected_camt(without_status.encode()).location == "Stmt/Ntry[1]/Sts"


def test_camt053_version_02_status_and_two_statements() -> None:
    version_02 = GOOD.replace("camt.053.001.08", "camt.053.001.02").replace(
        "<Sts><Cd>BOOK</Cd></Sts>", "<Sts>BOOK</Sts>"
    )
    assert len(parsed_camt(version_02.encode()).lines) == 3
    start, end = GOOD.index("<Stmt>"), GOOD.index("</Stmt>") + len("</Stmt>")
    usd = GOOD[start:end].replace("DE89370400440532013000", "US00111000025123456789")
    usd = usd.replace("EUR", "USD")
    two = GOOD[:end] + usd + GOOD[end:]
    assert "--bank-account" in rejected_camt(two.encode()).reason
    usd_account = AccountTerms(
        tenant_id="acme", account_id="bank-usd", currency="USD", asset_scale=2
    )
    chosen = camt053.parse(two.encode(), usd_account, bank_account="US00111000025123456789")
    assert isinstance(chosen, ParsedStatement) and chosen.currency == "USD"


@pytest.mark.parametrize(
    ("content", "location", "reason"),
    [
        (b"", "line 1", "empty"),
        (b"booking_date,amount,direction\n", "line 1", "missing column 'currency'"),
        (b"booking_date,amount,direction,currency,colour\n", "line 1", "unknown column"),
        (
            b"booking_date,amount,direction,currency\n2026-12-04,1.00,credit,EUR\n2026-12-04,1.00,in,EUR\n",
            "line 3",
            "not credit or debit",
        ),
        (
            b"booking_date,amount,direction,currency\n2026-12-04,1.001,credit,EUR\n",
            "line 2",
            "decimal places",
        ),
        (b"booking_date,amount,direction,currency\n2026-12-04,1.00,credit\n", "line 2", "3 fields"),
        (
            b"booking_date,amount,direction,currency\n04.12.2026,1.00,credit,EUR\n",
            "line 2",
            "not an ISO date",
        ),
        (b"booking_date,amount,direction,currency\n2026-12-04,0.00,credit,EUR\n", "line 2", "zero"),
        (b"booking_date,amount,direction,currency\n2026-12-04,1.00,credit,\xff\n", "byte", "UTF-8"),
    ],
)
def test_csv_malformed_is_refused_whole(content: bytes, location: str, reason: str) -> None:
    rejected = statement_csv.parse(content, EUR)
    assert isinstance(rejected, StatementRejected), rejected
    assert rejected.location.startswith(location), rejected
    assert reason in rejected.reason, rejected


def test_amounts_and_dates() -> None:
    assert minor_units("12.5", 2) == 1250
    assert minor_units("12", 0) == 12
    assert minor_units("0.001", 3) == 1
    assert minor_units("-3.10", 2, signed=True) == -310
    assert isinstance(minor_units("1.5", 0), str)
    assert isinstance(minor_units("99999999999999999.99", 2), str)  # beyond int64
    assert iso_date(DEC_4) == "2026-12-04"
    assert date_days("2026-12-04T23:59:59+01:00") == DEC_4
