"""BAI2 (Cash Management Balance Reporting Specification, version 2) → a ``ParsedStatement``.

Pure. A file is ``01`` (file header), groups of ``02`` … ``98``, each with accounts ``03``
(identifier and summaries) … ``16`` (transaction details) … ``49``, and ``99``; a ``88`` record
continues the one before it. Fields are comma-separated, a record ends with ``/``; the text of a
``16`` is the rest of its fields (commas included). Amounts have no decimal point: their implied
decimals are the account's ``asset_scale`` (2 for USD, as BAI2 has it). Detail type codes 100-399
are credits, 400-699 debits. The booking date of every line is its group's as-of date; funds type
``V`` gives a value date.

Checked, naming the physical line (``line 12 (16)``): the record order, every number and date,
each account's ``49`` control total (summary amounts + detail amounts) and record count, each
group's ``98`` control total and account count, the ``99`` totals. The first problem refuses the
whole file.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Final

from reconciliation.amounts import EPOCH
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

BAI2_LINES_MAX: Final = 200_000
OPENING_LEDGER: Final = "010"
CLOSING_LEDGER: Final = "015"
CREDIT_CODES: Final = range(100, 400)
DEBIT_CODES: Final = range(400, 700)
DEFAULT_CURRENCY: Final = "USD"  # BAI2: a missing currency code means USD
TEXT_CHARACTERS_MAX: Final = 1_000


class Rejection(Exception):  # noqa: N818 - internal control flow, never leaves this module
    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.rejected = StatementRejected(location=location, reason=reason)


@dataclass(frozen=True, slots=True)
class Record:
    code: str
    fields: list[str]  # after the code, continuations joined, the final "/" removed
    location: str  # "line 7 (16)"
    physical_lines: int  # 1 + its 88 continuations


@dataclass(slots=True)
class AccountBlock:
    number: str
    currency: str
    booking_date_days: int
    summaries: dict[str, int] = field(default_factory=dict)
    lines: list[ParsedLine] = field(default_factory=list)
    control_total: int = 0
    physical_lines: int = 0


def parse(
    content: bytes, account: AccountTerms, *, bank_account: str | None = None
) -> ParsedStatement | StatementRejected:
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as exc:
        return StatementRejected(location=f"byte {exc.start}", reason="not ASCII")
    try:
        blocks = _read_file(_records(text))
        chosen = _choose(blocks, bank_account)
        return _statement(chosen, account)
    except Rejection as rejection:
        return rejection.rejected


def _records(text: str) -> list[Record]:
    physical = [line.rstrip("\r") for line in text.split("\n")]
    while physical and not physical[-1].strip():
        physical.pop()
    if len(physical) > BAI2_LINES_MAX:
        raise Rejection("file", f"more than {BAI2_LINES_MAX} lines")
    records: list[Record] = []
    for number, line in enumerate(physical, start=1):
        code, _, rest = line.partition(",")
        if code == "88":
            if not records:
                raise Rejection(f"line {number} (88)", "a continuation with nothing to continue")
            last = records[-1]
            continued = _fields(rest)
            if last.fields and last.code == "16" and continued:
                # a detail's text goes on: its last field and the continuation's first join
                last.fields[-1] = f"{last.fields[-1]} {continued[0]}".strip()
                continued = continued[1:]
            records[-1] = Record(
                last.code, [*last.fields, *continued], last.location, last.physical_lines + 1
            )
            continue
        records.append(Record(code, _fields(rest), f"line {number} ({code})", 1))
    return records


def _fields(rest: str) -> list[str]:
    rest = rest.rstrip()
    if rest.endswith("/"):
        rest = rest[:-1]
    return rest.split(",") if rest else []


def _read_file(records: list[Record]) -> list[AccountBlock]:
    if not records or records[0].code != "01":
        raise Rejection("line 1", "a BAI2 file starts with a 01 file header")
    if len(records[0].fields) < 8 or records[0].fields[7] != "2":
        raise Rejection(records[0].location, "only BAI version 2 is read (field 9 must be 2)")
    position, blocks, file_total, groups = 1, [], 0, 0
    while position < len(records) and records[position].code == "02":
        position, group_blocks, group_total = _read_group(records, position)
        blocks += group_blocks
        file_total += group_total
        groups += 1
    trailer = _expect(records, position, "99")
    if groups == 0:
        raise Rejection(trailer.location, "a file without groups")
    _check_number(trailer, 0, file_total, "file control total")
    _check_number(trailer, 1, groups, "number of groups")
    _check_number(trailer, 2, sum(record.physical_lines for record in records), "number of records")
    if position + 1 != len(records):
        raise Rejection(records[position + 1].location, "records after the 99 file trailer")
    return blocks


def _read_group(records: list[Record], position: int) -> tuple[int, list[AccountBlock], int]:
    header = records[position]
    if len(header.fields) < 4:
        raise Rejection(header.location, "a 02 group header needs an as-of date (field 5)")
    as_of = _date(header.fields[3], header.location)
    group_currency = header.fields[5] if len(header.fields) > 5 and header.fields[5] else ""
    start, position, blocks = position, position + 1, []
    while position < len(records) and records[position].code == "03":
        block, position = _read_account(records, position, as_of, group_currency)
        blocks.append(block)
    trailer = _expect(records, position, "98")
    group_total = sum(block.control_total for block in blocks)
    _check_number(trailer, 0, group_total, "group control total")
    _check_number(trailer, 1, len(blocks), "number of accounts")
    group_lines = sum(record.physical_lines for record in records[start : position + 1])
    _check_number(trailer, 2, group_lines, "number of records")
    return position + 1, blocks, group_total


def _read_account(
    records: list[Record], position: int, as_of: int, group_currency: str
) -> tuple[AccountBlock, int]:
    identifier = records[position]
    if not identifier.fields or not identifier.fields[0]:
        raise Rejection(identifier.location, "missing account number")
    currency = (identifier.fields[1] if len(identifier.fields) > 1 else "") or group_currency
    block = AccountBlock(
        number=identifier.fields[0],
        currency=currency or DEFAULT_CURRENCY,
        booking_date_days=as_of,
    )
    _read_summaries(identifier, block)
    start, position = position, position + 1
    while position < len(records) and records[position].code == "16":
        block.lines.append(_detail(records[position], block, len(block.lines) + 1))
        position += 1
    trailer = _expect(records, position, "49")
    _check_number(trailer, 0, block.control_total, "account control total")
    block.physical_lines = sum(record.physical_lines for record in records[start : position + 1])
    _check_number(trailer, 1, block.physical_lines, "number of records")
    return block, position + 1


def _read_summaries(identifier: Record, block: AccountBlock) -> None:
    summaries = identifier.fields[2:]
    for index in range(0, len(summaries) - 3, 4):
        code, amount_text = summaries[index], summaries[index + 1]
        if not code:
            continue
        if not amount_text:
            continue  # a summary without an amount
        amount = _integer(amount_text, identifier.location, f"summary {code} amount", signed=True)
        block.summaries[code] = amount
        block.control_total += amount


def _detail(record: Record, block: AccountBlock, line_number: int) -> ParsedLine:
    if len(record.fields) < 3:
        raise Rejection(
            record.location, "a 16 record needs a type code, an amount and a funds type"
        )
    code = _integer(record.fields[0], record.location, "type code")
    if code in CREDIT_CODES:
        direction = Direction.CREDIT
    elif code in DEBIT_CODES:
        direction = Direction.DEBIT
    else:
        raise Rejection(
            record.location, f"type code {code} is not a credit (100-399) or debit (400-699) detail"
        )
    amount = _integer(record.fields[1], record.location, "amount")
    if amount == 0:
        raise Rejection(record.location, "amount is zero")
    block.control_total += amount
    rest, value_date = _after_funds_type(record)
    bank_reference = rest[0] if rest else ""
    customer_reference = rest[1] if len(rest) > 1 else ""
    text = ",".join(rest[2:]).strip()
    return ParsedLine(
        line_number=line_number,
        location=record.location,
        amount=amount,
        direction=direction,
        reversal=False,
        booking_date_days=block.booking_date_days,
        value_date_days=value_date,
        bank_reference=bank_reference or None,
        entry_reference=None,
        end_to_end_reference=customer_reference or None,
        counterparty_name=None,
        counterparty_account=None,
        remittance_information=text[:TEXT_CHARACTERS_MAX] or None,
    )


def _after_funds_type(record: Record) -> tuple[list[str], int | None]:
    """The fields after the funds type (and its availability fields), and a value date."""
    funds_type, rest = record.fields[2].upper(), record.fields[3:]
    if funds_type in ("", "Z", "0", "1", "2"):
        return rest, None
    if funds_type == "S":
        return rest[3:], None
    if funds_type == "V":
        if not rest:
            raise Rejection(record.location, "funds type V needs a value date")
        return rest[2:], _date(rest[0], record.location)
    if funds_type == "D":
        count = _integer(rest[0] if rest else "", record.location, "availability count")
        return rest[1 + 2 * count :], None
    raise Rejection(record.location, f"funds type {funds_type!r} is not one of Z 0 1 2 S V D")


def _choose(blocks: list[AccountBlock], bank_account: str | None) -> AccountBlock:
    if bank_account is not None:
        for block in blocks:
            if block.number == bank_account:
                return block
        raise Rejection("file", f"no 03 account {bank_account!r}")
    if len(blocks) > 1:
        raise Rejection("file", f"{len(blocks)} accounts: name the bank account (--bank-account)")
    return blocks[0]


def _statement(block: AccountBlock, account: AccountTerms) -> ParsedStatement:
    if block.currency != account.currency:
        raise Rejection(
            f"account {block.number}",
            f"currency {block.currency}, the account's is {account.currency}",
        )
    lines = tuple(block.lines)
    duplicate = duplicate_bank_reference(lines)
    if duplicate is not None:
        raise Rejection(duplicate.location, duplicate.reason)
    day = block.booking_date_days

    def balance(code: str) -> Balance | None:
        amount = block.summaries.get(code)
        return None if amount is None else Balance(amount=amount, date_days=day)

    return ParsedStatement(
        format=StatementFormat.BAI2,
        statement_id=None,
        currency=account.currency,
        opening_balance=balance(OPENING_LEDGER),
        closing_balance=balance(CLOSING_LEDGER),
        from_date_days=day,
        to_date_days=day,
        lines=lines,
        entries_not_booked=0,
    )


def _expect(records: list[Record], position: int, code: str) -> Record:
    if position >= len(records):
        raise Rejection("end of file", f"missing the {code} record")
    if records[position].code != code:
        raise Rejection(records[position].location, f"expected a {code} record here")
    return records[position]


def _check_number(record: Record, index: int, expected: int, what: str) -> None:
    if index >= len(record.fields) or not record.fields[index]:
        raise Rejection(record.location, f"missing the {what}")
    found = _integer(record.fields[index], record.location, what, signed=True)
    if found != expected:
        raise Rejection(record.location, f"{what} {found}, the records add up to {expected}")


def _integer(text: str, location: str, what: str, *, signed: bool = False) -> int:
    body = text[1:] if signed and text[:1] in ("+", "-") else text
    if not (body.isascii() and body.isdigit() and len(body) <= 18):
        raise Rejection(location, f"{what} {text!r} is not a whole number")
    return -int(body) if text.startswith("-") else int(body)


def _date(text: str, location: str) -> int:
    if not (len(text) == 6 and text.isascii() and text.isdigit()):
        raise Rejection(location, f"date {text!r} is not YYMMDD")
    try:
        day = datetime.date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        raise Rejection(location, f"date {text!r} does not exist") from None
    return (day - EPOCH).days
