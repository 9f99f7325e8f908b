"""camt.054 notifications → lines (issue 20 §1, decision 0099): a golden notification of our own
(a credit, a debit, a reversal, a pending entry) parsed to the exact lines, with no balances and
no period; a malformed notification refused whole, naming the element; an XML file's format told
by its namespace; the Statement record of a notification round-trips, and a v1.0 Statement (the
format enum before camt054) still decodes."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from reconciliation import camt053, camt054
from reconciliation.amounts import date_days
from reconciliation.cli import statement_format
from reconciliation.records import AVRO_DIRECTORY, _to_avro, decode, encode
from reconciliation.statement import (
    AccountTerms,
    Direction,
    ParsedStatement,
    Statement,
    StatementFormat,
    StatementRejected,
    file_sha256,
    statement_lines,
)
from schemas.avro_schemas import fingerprint_bytes, without_logical_types
from schemas.codec import MARKER

FILES = Path(__file__).parent / "statement_files"
GOLDEN = (FILES / "camt054_notification_eur.xml").read_text(encoding="utf-8")
CAMT053 = (FILES / "camt053_single_eur.xml").read_bytes()
EUR = AccountTerms(tenant_id="acme", account_id="bank-eur", currency="EUR", asset_scale=2)
DEC_4 = date_days("2026-12-04")
DEC_5 = date_days("2026-12-05")


def parsed(content: bytes) -> ParsedStatement:
    result = camt054.parse(content, EUR)
    assert isinstance(result, ParsedStatement), result
    return result


def test_camt054_golden_file() -> None:
    notification = parsed(GOLDEN.encode())
    assert notification.format is StatementFormat.CAMT054
    assert notification.statement_id == "ACME-EUR-NTF-20261204-7"
    assert (notification.opening_balance, notification.closing_balance) == (None, None)
    # a notification claims no period, whatever its FrToDt says: it closes no movement
    assert (notification.from_date_days, notification.to_date_days) == (None, None)
    assert notification.entries_not_booked == 1
    credit, debit, reversal = notification.lines
    assert (credit.location, credit.amount, credit.direction) == (
        "Ntfctn/Ntry[1]", 150_000, Direction.CREDIT,
    )  # fmt: skip
    assert (credit.booking_date_days, credit.value_date_days) == (DEC_4, DEC_4)
    assert (credit.bank_reference, credit.entry_reference) == ("2026120400012345", "N1")
    assert credit.end_to_end_reference == "INV-2026-0042"
    assert credit.counterparty_name == "Globex Corporation"
    assert credit.counterparty_account == "FR7630006000011234567890189"
    assert credit.remittance_information == "Invoice INV-2026-0042"
    assert (debit.amount, debit.direction, debit.reversal, debit.value_date_days) == (
        40_025, Direction.DEBIT, False, DEC_5,
    )  # fmt: skip
    assert debit.end_to_end_reference is None  # NOTPROVIDED
    assert (debit.counterparty_name, debit.counterparty_account) == (
        "Initech Supplies Ltd", "GB-1234-5678",
    )  # fmt: skip
    assert debit.remittance_information == "RF18539007547034"
    assert (reversal.amount, reversal.direction, reversal.reversal) == (
        1_925,
        Direction.DEBIT,
        True,
    )
    assert reversal.value_date_days is None and reversal.counterparty_name is None


def test_a_notified_line_has_the_identity_of_the_same_entry_on_the_statement() -> None:
    """The camt.053 of the day repeats the notified entries (same AcctSvcrRef): they are the
    same lines, so the statement imports only what the notification did not."""
    notified = statement_lines(EUR, parsed(GOLDEN.encode()), "a" * 64)
    statement = camt053.parse(CAMT053, EUR)
    assert isinstance(statement, ParsedStatement), statement
    stated = statement_lines(EUR, statement, file_sha256(CAMT053))
    assert {line.line_id for line in notified} <= {line.line_id for line in stated}


@pytest.mark.parametrize(
    ("edit", "location", "reason"),
    [
        (("<Amt Ccy=\"EUR\">400.25<", "<Amt Ccy=\"EUR\">400.255<"), "Ntfctn/Ntry[2]/Amt",
         "more than 2 decimal places"),
        (("<CdtDbtInd>DBIT</CdtDbtInd>\n        <Sts>", "<CdtDbtInd>DR</CdtDbtInd>\n        <Sts>"),
         "Ntfctn/Ntry[2]/CdtDbtInd", "not CRDT or DBIT"),
        (("<RvslInd>true</RvslInd>", "<RvslInd>1</RvslInd>"), "Ntfctn/Ntry[3]/RvslInd",
         "not true or false"),
        (("<BookgDt><Dt>2026-12-04</Dt></BookgDt>", ""), "Ntfctn/Ntry[1]/BookgDt", "missing"),
        (("<Sts><Cd>BOOK</Cd></Sts>", ""), "Ntfctn/Ntry[1]/Sts", "missing"),
        (("<AcctSvcrRef>2026120400012347<", "<AcctSvcrRef>2026120400012345<"), "Ntfctn/Ntry[3]",
         "already used by Ntfctn/Ntry[1]"),
        (("<Ccy>EUR</Ccy>", "<Ccy>USD</Ccy>"), "Ntfctn/Acct/Ccy", "currency USD"),
        (("<Amt Ccy=\"EUR\">19.25", "<Amt Ccy=\"USD\">19.25"), "Ntfctn/Ntry[3]/Amt",
         "currency USD"),
        (("camt.054.001.08", "camt.053.001.08"), "Document", "not a camt.054 document"),
        (("<Ntfctn>", "<Ntfctn2>"), "line", "not well-formed"),
        (("<Ntfctn>", "<Notification>"), "line", "not well-formed"),
    ],
)  # fmt: skip
def test_camt054_malformed_is_refused_whole(
    edit: tuple[str, str], location: str, reason: str
) -> None:
    old, new = edit
    assert old in GOLDEN
    rejected = camt054.parse(GOLDEN.replace(old, new, 1).encode(), EUR)
    assert isinstance(rejected, StatementRejected), rejected
    assert rejected.location.startswith(location), rejected
    assert reason in rejected.reason, rejected


def test_a_notification_without_ntfctn_or_with_two_names_the_container() -> None:
    start, end = GOLDEN.index("<Ntfctn>"), GOLDEN.index("</Ntfctn>") + len("</Ntfctn>")
    empty = camt054.parse((GOLDEN[:start] + GOLDEN[end:]).encode(), EUR)
    assert empty == StatementRejected(location="BkToCstmrDbtCdtNtfctn", reason="no Ntfctn element")
    two = (GOLDEN[:end] + GOLDEN[start:end].replace("DE89", "DE12") + GOLDEN[end:]).encode()
    refused = camt054.parse(two, EUR)
    assert isinstance(refused, StatementRejected) and "2 Ntfctn elements" in refused.reason
    chosen = camt054.parse(two, EUR, bank_account="DE12370400440532013000")
    assert isinstance(chosen, ParsedStatement) and len(chosen.lines) == 3


def test_an_xml_file_is_camt053_or_camt054_by_its_namespace() -> None:
    assert camt054.xml_format(GOLDEN.encode()) is StatementFormat.CAMT054
    assert camt054.xml_format(CAMT053) is StatementFormat.CAMT053
    assert camt054.xml_format(b"not xml") is StatementFormat.CAMT053  # its parser says why


def notification_record() -> Statement:
    return Statement(
        tenant_id="acme", account_id="bank-eur", file_sha256="b" * 64,
        format=StatementFormat.CAMT054, statement_id="ACME-EUR-NTF-20261204-7", currency="EUR",
        opening_balance=None, closing_balance=None, from_date_days=None, to_date_days=None,
        line_count=3, new_line_count=3, entries_not_booked=1, imported_at_us=1_000,
    )  # fmt: skip


def test_a_notification_record_round_trips_and_a_v1_0_statement_still_decodes() -> None:
    record = notification_record()
    assert decode(encode(record)) == record
    definition = json.loads((AVRO_DIRECTORY / "Statement.avsc").read_text(encoding="utf-8"))
    (format_field,) = [field for field in definition["fields"] if field["name"] == "format"]
    assert format_field["type"]["symbols"][-1] == "camt054"
    format_field["type"]["symbols"] = format_field["type"]["symbols"][:-1]  # v1.0
    header = MARKER + fingerprint_bytes(to_parsing_canonical_form(definition))
    assert header.hex() == "c30140cf141c4d110def"
    schema = parse_schema(without_logical_types(definition))
    for earlier in (StatementFormat.CAMT053, StatementFormat.CSV, StatementFormat.BAI2):
        written = replace(record, format=earlier)
        buffer = io.BytesIO()
        buffer.write(header)
        schemaless_writer(buffer, schema, _to_avro(written))
        assert decode(buffer.getvalue()) == written


def test_statements_import_tells_an_xml_file_by_its_namespace(tmp_path: Path) -> None:
    from streamledger.cli import build_full_parser

    path = tmp_path / "notification.xml"
    for flags, expected in (
        ([], StatementFormat.CAMT054),
        (["--format", "camt053"], StatementFormat.CAMT053),  # named: as named (its parser refuses)
        (["--format", "camt054"], StatementFormat.CAMT054),
    ):
        arguments = build_full_parser().parse_args(
            ["statements", "import", str(path), "--tenant", "t", "--account", "a", *flags]
        )
        assert statement_format(arguments, GOLDEN.encode()) is expected
    arguments.format = None
    assert statement_format(arguments, CAMT053) is StatementFormat.CAMT053
