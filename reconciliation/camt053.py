"""ISO 20022 camt.053 (Bank-to-Customer Statement) → a ``ParsedStatement`` (pure).

camt.054 (Bank-to-Customer Debit/Credit Notification, ``reconciliation.camt054``) shares the
account and entry elements: the same code reads its ``Ntfctn`` elements through a ``Document``
description (root, container, location prefix); a notification states no balances.

Read with the standard library's ElementTree (decision 0051): any ``camt.053.001.NN`` version
(02 to 13 share the elements used here; ``Sts`` is a code in 02 and ``Sts/Cd`` from 08 on). A
document type definition is refused before parsing (a bank statement never has one; it is how
entity expansion attacks arrive). Only booked entries (``Sts`` = ``BOOK``) become lines; pending
and informational ones are counted. The first problem found refuses the whole file, naming the
element (``Stmt/Ntry[3]/Amt``) and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from xml.etree import ElementTree

from reconciliation.amounts import date_days, minor_units
from reconciliation.statement import (
    AccountTerms,
    Balance,
    Direction,
    ParsedLine,
    ParsedStatement,
    StatementFormat,
    StatementRejected,
    duplicate_bank_reference,
)

NAMESPACE_PATTERN: Final = re.compile(r"\{(urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d{2})\}")
DOCUMENT_TYPE_MARKERS: Final = (b"<!DOCTYPE", b"<!ENTITY")
STATEMENT_LINES_MAX: Final = 100_000  # booked entries in one file; more is refused, not cut
OPENING_BALANCE_CODES: Final = ("OPBD", "PRCD")  # opening booked; previously closed booked
CLOSING_BALANCE_CODE: Final = "CLBD"
BOOKED: Final = "BOOK"
DIRECTIONS: Final = {"CRDT": Direction.CREDIT, "DBIT": Direction.DEBIT}
TEXT_CHARACTERS_MAX: Final = 1_000  # remittance information and names are cut to this


@dataclass(frozen=True, slots=True)
class Document:
    """What tells one camt message apart: its namespace, where its reports are, their name."""

    namespace_pattern: re.Pattern[str]
    container: str  # the path of the reports under Document ("BkToCstmrStmt/Stmt")
    report: str  # the report element, the first step of every location ("Stmt")
    format: StatementFormat
    has_balances: bool


STATEMENT_DOCUMENT: Final = Document(
    namespace_pattern=NAMESPACE_PATTERN,
    container="BkToCstmrStmt/Stmt",
    report="Stmt",
    format=StatementFormat.CAMT053,
    has_balances=True,
)


class Rejection(Exception):  # noqa: N818 - internal control flow, never leaves this module
    """Carries a ``StatementRejected`` up to ``parse`` (which returns it as a value)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.rejected = StatementRejected(location=location, reason=reason)


def parse(
    content: bytes, account: AccountTerms, *, bank_account: str | None = None
) -> ParsedStatement | StatementRejected:
    """The one statement of ``content`` (or the one for ``bank_account`` when the file holds
    several) in ``account``'s currency and scale, or why the file is refused."""
    return parse_document(content, account, STATEMENT_DOCUMENT, bank_account=bank_account)


def parse_document(
    content: bytes, account: AccountTerms, document: Document, *, bank_account: str | None
) -> ParsedStatement | StatementRejected:
    """``parse`` for a camt message described by ``document`` (camt.053 or camt.054)."""
    if any(marker in content for marker in DOCUMENT_TYPE_MARKERS):
        return StatementRejected(location="document", reason="a DOCTYPE/ENTITY is not allowed")
    try:
        root = ElementTree.fromstring(content)  # noqa: S314 - no DTD (checked above)
    except ElementTree.ParseError as exc:
        line, column = exc.position
        return StatementRejected(
            location=f"line {line} column {column}", reason=f"not well-formed XML ({exc})"
        )
    try:
        return _parse_document(root, account, document, bank_account)
    except Rejection as rejection:
        return rejection.rejected


def _parse_document(
    root: ElementTree.Element, account: AccountTerms, document: Document, bank_account: str | None
) -> ParsedStatement:
    match = document.namespace_pattern.fullmatch(root.tag.split("}")[0] + "}")
    if match is None or not root.tag.endswith("}Document"):
        name = document.format.value
        raise Rejection("Document", f"not a {name} document (root element {root.tag!r})")
    reader = Reader(match[1])
    reports = reader.all(root, document.container)
    parent = document.container.rsplit("/", 1)[0]
    if not reports:
        raise Rejection(parent, f"no {document.report} element")
    chosen = _choose_statement(reader, reports, bank_account, document)
    return _parse_statement(reader, chosen, account, document)


def _choose_statement(
    reader: Reader,
    statements: list[ElementTree.Element],
    bank_account: str | None,
    document: Document,
) -> ElementTree.Element:
    parent = document.container.rsplit("/", 1)[0]
    if bank_account is None:
        if len(statements) > 1:
            raise Rejection(
                parent,
                f"{len(statements)} {document.report} elements: name the bank account"
                " (--bank-account)",
            )
        return statements[0]
    for statement in statements:
        identifiers = {reader.text(statement, path) for path in ("Acct/Id/IBAN", "Acct/Id/Othr/Id")}
        if bank_account in identifiers:
            return statement
    raise Rejection(parent, f"no {document.report} for the bank account {bank_account!r}")


def _parse_statement(
    reader: Reader, statement: ElementTree.Element, account: AccountTerms, document: Document
) -> ParsedStatement:
    prefix = document.report
    currency = reader.text(statement, "Acct/Ccy")
    if currency is not None and currency != account.currency:
        raise Rejection(f"{prefix}/Acct/Ccy", _other_currency(currency, account))
    lines, not_booked = _parse_entries(reader, statement, account, prefix)
    if not document.has_balances:
        # a notification reports some entries, never a whole period: it states no balances and
        # claims no days (a period would tell the matcher every movement of those days is in)
        return ParsedStatement(
            format=document.format, statement_id=reader.text(statement, "Id"),
            currency=account.currency, opening_balance=None, closing_balance=None,
            from_date_days=None, to_date_days=None, lines=lines, entries_not_booked=not_booked,
        )  # fmt: skip
    from_text = reader.text(statement, "FrToDt/FrDtTm")
    to_text = reader.text(statement, "FrToDt/ToDtTm")
    return ParsedStatement(
        format=document.format,
        statement_id=reader.text(statement, "Id"),
        currency=account.currency,
        opening_balance=_balance(reader, statement, OPENING_BALANCE_CODES, account),
        closing_balance=_balance(reader, statement, (CLOSING_BALANCE_CODE,), account),
        from_date_days=None if from_text is None else _date(from_text, "Stmt/FrToDt/FrDtTm"),
        to_date_days=None if to_text is None else _date(to_text, "Stmt/FrToDt/ToDtTm"),
        lines=lines,
        entries_not_booked=not_booked,
    )


def _parse_entries(
    reader: Reader, statement: ElementTree.Element, account: AccountTerms, prefix: str
) -> tuple[tuple[ParsedLine, ...], int]:
    """The booked entries as lines, and how many entries were not booked."""
    lines: list[ParsedLine] = []
    not_booked = 0
    for index, entry in enumerate(reader.all(statement, "Ntry"), start=1):
        location = f"{prefix}/Ntry[{index}]"
        if _status(reader, entry, location) != BOOKED:
            not_booked += 1
            continue
        if len(lines) == STATEMENT_LINES_MAX:
            raise Rejection(location, f"more than {STATEMENT_LINES_MAX} booked entries")
        lines.append(_parse_entry(reader, entry, location, len(lines) + 1, account))
    duplicate = duplicate_bank_reference(tuple(lines))
    if duplicate is not None:
        raise Rejection(duplicate.location, duplicate.reason)
    return tuple(lines), not_booked


def _status(reader: Reader, entry: ElementTree.Element, location: str) -> str:
    status = reader.text(entry, "Sts/Cd") or reader.text(entry, "Sts")
    if status is None:
        raise Rejection(f"{location}/Sts", "missing")
    return status


def _parse_entry(
    reader: Reader,
    entry: ElementTree.Element,
    location: str,
    line_number: int,
    account: AccountTerms,
) -> ParsedLine:
    amount = _amount(reader, entry, location, account)
    direction = _direction(reader, entry, location)
    booking = reader.text(entry, "BookgDt/Dt") or reader.text(entry, "BookgDt/DtTm")
    if booking is None:
        raise Rejection(f"{location}/BookgDt", "missing")
    value = reader.text(entry, "ValDt/Dt") or reader.text(entry, "ValDt/DtTm")
    reversal = reader.text(entry, "RvslInd")
    if reversal not in (None, "true", "false"):
        raise Rejection(f"{location}/RvslInd", f"{reversal!r} is not true or false")
    details = reader.first(entry, "NtryDtls/TxDtls")
    party = "Dbtr" if direction is Direction.CREDIT else "Cdtr"
    return ParsedLine(
        line_number=line_number,
        location=location,
        amount=amount,
        direction=direction,
        reversal=reversal == "true",
        booking_date_days=_date(booking, f"{location}/BookgDt"),
        value_date_days=None if value is None else _date(value, f"{location}/ValDt"),
        bank_reference=reader.text(entry, "AcctSvcrRef"),
        entry_reference=reader.text(entry, "NtryRef"),
        end_to_end_reference=_end_to_end(reader, details),
        counterparty_name=_counterparty_name(reader, details, party),
        counterparty_account=_counterparty_account(reader, details, party),
        remittance_information=_remittance(reader, details),
    )


def _amount(
    reader: Reader,
    entry: ElementTree.Element,
    location: str,
    account: AccountTerms,
    *,
    zero_allowed: bool = False,
) -> int:
    element = reader.first(entry, "Amt")
    if element is None or not (element.text or "").strip():
        raise Rejection(f"{location}/Amt", "missing")
    currency = element.get("Ccy")
    if currency != account.currency:
        raise Rejection(f"{location}/Amt", _other_currency(currency, account))
    value = minor_units(element.text or "", account.asset_scale)
    if isinstance(value, str):
        raise Rejection(f"{location}/Amt", value)
    if value == 0 and not zero_allowed:
        raise Rejection(f"{location}/Amt", "amount is zero")
    return value


def _other_currency(currency: str | None, account: AccountTerms) -> str:
    return f"currency {currency}, the account's is {account.currency}"


def _direction(reader: Reader, entry: ElementTree.Element, location: str) -> Direction:
    indicator = reader.text(entry, "CdtDbtInd")
    if indicator not in DIRECTIONS:
        raise Rejection(f"{location}/CdtDbtInd", f"{indicator!r} is not CRDT or DBIT")
    return DIRECTIONS[indicator]


def _balance(
    reader: Reader, statement: ElementTree.Element, codes: tuple[str, ...], account: AccountTerms
) -> Balance | None:
    for index, balance in enumerate(reader.all(statement, "Bal"), start=1):
        if reader.text(balance, "Tp/CdOrPrtry/Cd") not in codes:
            continue
        location = f"Stmt/Bal[{index}]"
        amount = _amount(reader, balance, location, account, zero_allowed=True)
        direction = _direction(reader, balance, location)
        day = reader.text(balance, "Dt/Dt") or reader.text(balance, "Dt/DtTm")
        if day is None:
            raise Rejection(f"{location}/Dt", "missing")
        signed = amount if direction is Direction.CREDIT else -amount
        return Balance(amount=signed, date_days=_date(day, f"{location}/Dt"))
    return None


def _date(text: str, location: str) -> int:
    days = date_days(text)
    if isinstance(days, str):
        raise Rejection(location, days)
    return days


def _end_to_end(reader: Reader, details: ElementTree.Element | None) -> str | None:
    if details is None:
        return None
    reference = reader.text(details, "Refs/EndToEndId")
    return None if reference == "NOTPROVIDED" else reference


def _counterparty_name(
    reader: Reader, details: ElementTree.Element | None, party: str
) -> str | None:
    if details is None:
        return None
    name = reader.text(details, f"RltdPties/{party}/Nm") or reader.text(
        details, f"RltdPties/{party}/Pty/Nm"
    )
    return None if name is None else name[:TEXT_CHARACTERS_MAX]


def _counterparty_account(
    reader: Reader, details: ElementTree.Element | None, party: str
) -> str | None:
    if details is None:
        return None
    return reader.text(details, f"RltdPties/{party}Acct/Id/IBAN") or reader.text(
        details, f"RltdPties/{party}Acct/Id/Othr/Id"
    )


def _remittance(reader: Reader, details: ElementTree.Element | None) -> str | None:
    if details is None:
        return None
    parts = [
        *(text for text in reader.texts(details, "RmtInf/Ustrd")),
        *(text for text in reader.texts(details, "RmtInf/Strd/CdtrRefInf/Ref")),
    ]
    return " ".join(parts)[:TEXT_CHARACTERS_MAX] if parts else None


class Reader:
    """Namespaced paths ("Acct/Id/IBAN") in one camt.053 version's namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._paths: dict[str, str] = {}

    def _path(self, path: str) -> str:
        known = self._paths.get(path)
        if known is None:
            known = "/".join(f"{{{self.namespace}}}{part}" for part in path.split("/"))
            self._paths[path] = known
        return known

    def first(self, element: ElementTree.Element, path: str) -> ElementTree.Element | None:
        return element.find(self._path(path))

    def all(self, element: ElementTree.Element, path: str) -> list[ElementTree.Element]:
        return element.findall(self._path(path))

    def text(self, element: ElementTree.Element, path: str) -> str | None:
        found = element.find(self._path(path))
        if found is None or found.text is None:
            return None
        return found.text.strip() or None

    def texts(self, element: ElementTree.Element, path: str) -> list[str]:
        found = (item.text.strip() for item in element.findall(self._path(path)) if item.text)
        return [text for text in found if text]
