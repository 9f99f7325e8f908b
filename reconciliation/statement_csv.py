"""The documented statement CSV → a ``ParsedStatement`` (pure; format in docs/reconciliation.md).

UTF-8, comma-separated, RFC 4180 quoting, one header row naming the columns (any order):

- required: ``booking_date`` (YYYY-MM-DD), ``amount`` (positive decimal, at most the account's
  scale of decimal places), ``direction`` (``credit`` = into the account, ``debit`` = out of it),
  ``currency`` (the account's);
- optional: ``value_date``, ``bank_reference`` (unique in the file), ``end_to_end_reference``,
  ``reversal`` (``true``/``false``), ``counterparty_name``, ``counterparty_account``,
  ``remittance_information``.

Every row is a booked line; the file states no balances, and covers the days from its first to
its last booking date. The first bad row refuses the file, naming its line number (the header is
line 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Final

from reconciliation.amounts import date_days, minor_units
from reconciliation.statement import (
    AccountTerms,
    Direction,
    ParsedLine,
    ParsedStatement,
    StatementFormat,
    StatementRejected,
    duplicate_bank_reference,
)

REQUIRED_COLUMNS: Final = ("booking_date", "amount", "direction", "currency")
OPTIONAL_COLUMNS: Final = (
    "value_date",
    "bank_reference",
    "end_to_end_reference",
    "reversal",
    "counterparty_name",
    "counterparty_account",
    "remittance_information",
)
CSV_LINES_MAX: Final = 100_000
FIELD_CHARACTERS_MAX: Final = 1_000
DIRECTIONS: Final = {"credit": Direction.CREDIT, "debit": Direction.DEBIT}
REVERSAL_VALUES: Final = {"": False, "false": False, "true": True}


def parse(content: bytes, account: AccountTerms) -> ParsedStatement | StatementRejected:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return StatementRejected(location=f"byte {exc.start}", reason="not UTF-8")
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(rows, None)
        if header is None:
            return StatementRejected(location="line 1", reason="empty file (no header row)")
        columns = _columns(header)
        if isinstance(columns, StatementRejected):
            return columns
        lines: list[ParsedLine] = []
        for row in rows:
            if len(lines) == CSV_LINES_MAX:
                return StatementRejected(location=f"line {rows.line_num}", reason="too many rows")
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            line = _line(row, columns, rows.line_num, len(lines) + 1, account)
            if isinstance(line, StatementRejected):
                return line
            lines.append(line)
    except csv.Error as exc:
        return StatementRejected(location=f"line {rows.line_num}", reason=f"not CSV ({exc})")
    duplicate = duplicate_bank_reference(tuple(lines))
    if duplicate is not None:
        return duplicate
    return ParsedStatement(
        format=StatementFormat.CSV,
        statement_id=None,
        currency=account.currency,
        opening_balance=None,
        closing_balance=None,
        # the file covers the days from its first to its last booking date
        from_date_days=min((line.booking_date_days for line in lines), default=None),
        to_date_days=max((line.booking_date_days for line in lines), default=None),
        lines=tuple(lines),
        entries_not_booked=0,
    )


def _columns(header: list[str]) -> dict[str, int] | StatementRejected:
    names = [name.strip() for name in header]
    for name in names:
        if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            return StatementRejected(location="line 1", reason=f"unknown column {name!r}")
    for name in REQUIRED_COLUMNS:
        if name not in names:
            return StatementRejected(location="line 1", reason=f"missing column {name!r}")
    if len(set(names)) != len(names):
        return StatementRejected(location="line 1", reason="a column appears twice")
    return {name: index for index, name in enumerate(names)}


def _line(
    row: list[str], columns: dict[str, int], line: int, line_number: int, account: AccountTerms
) -> ParsedLine | StatementRejected:
    location = f"line {line}"
    if len(row) != len(columns):
        return StatementRejected(
            location=location, reason=f"{len(row)} fields, the header has {len(columns)}"
        )

    def cell(name: str) -> str:
        index = columns.get(name)
        return "" if index is None else row[index].strip()[:FIELD_CHARACTERS_MAX]

    problem, values = _checked_values(cell, account)
    if problem is not None:
        return StatementRejected(location=location, reason=problem)
    amount, direction, booking, value_date = values
    return ParsedLine(
        line_number=line_number,
        location=location,
        amount=amount,
        direction=direction,
        reversal=REVERSAL_VALUES[cell("reversal")],
        booking_date_days=booking,
        value_date_days=value_date,
        bank_reference=cell("bank_reference") or None,
        entry_reference=None,
        end_to_end_reference=cell("end_to_end_reference") or None,
        counterparty_name=cell("counterparty_name") or None,
        counterparty_account=cell("counterparty_account") or None,
        remittance_information=cell("remittance_information") or None,
    )


CheckedValues = tuple[int, Direction, int, int | None]
NO_VALUES: Final[CheckedValues] = (0, Direction.CREDIT, 0, None)


def _checked_values(
    cell: Callable[[str], str], account: AccountTerms
) -> tuple[str | None, CheckedValues]:
    if cell("currency") != account.currency:
        return f"currency {cell('currency')!r}, the account's is {account.currency}", NO_VALUES
    amount = minor_units(cell("amount"), account.asset_scale)
    if isinstance(amount, str):
        return amount, NO_VALUES
    if amount == 0:
        return "amount is zero", NO_VALUES
    direction = DIRECTIONS.get(cell("direction"))
    if direction is None:
        return f"direction {cell('direction')!r} is not credit or debit", NO_VALUES
    if cell("reversal") not in REVERSAL_VALUES:
        return f"reversal {cell('reversal')!r} is not true or false", NO_VALUES
    booking = date_days(cell("booking_date"))
    if isinstance(booking, str):
        return f"booking_date: {booking}", NO_VALUES
    if not cell("value_date"):
        return None, (amount, direction, booking, None)
    value_date = date_days(cell("value_date"))
    if isinstance(value_date, str):
        return f"value_date: {value_date}", NO_VALUES
    return None, (amount, direction, booking, value_date)
