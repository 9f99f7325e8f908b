"""A bank statement as values: the lines and the balances of one imported file (pure).

A ``StatementLine`` is one booked entry of a statement, on the bank's side: ``direction`` is the
bank's ``CdtDbtInd`` (``credit`` = money came into the account). On the ledger that is a debit of
the bank-mirror account (an asset), decision 0053. Amounts are positive integers of minor units at
the account's asset scale; dates are days since 1970-01-01 (Avro ``date``).

A file that cannot be read is a ``StatementRejected`` value naming where and why, never a partial
statement: the importer writes all of a file or nothing.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final

SHA256_HEX_CHARACTERS: Final = 64
LINE_ID_HASH_CHARACTERS: Final = 32  # 128 bits of SHA-256: identical content, not collisions


class Direction(enum.Enum):
    """The bank's view: ``credit`` = into the account, ``debit`` = out of it."""

    CREDIT = "credit"
    DEBIT = "debit"

    # the matcher keys its indexes by direction: a member is its own identity, so the identity
    # hash is a valid one, and C-fast (Enum's own hashes the name in Python, at every lookup)
    __hash__ = object.__hash__


class StatementFormat(enum.Enum):
    CAMT053 = "camt.053"
    CSV = "csv"
    BAI2 = "bai2"
    CAMT054 = "camt.054"  # notifications (decision 0099): appended, the Avro enum's last symbol


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountTerms:
    """What the importer needs to know of the ledger account a statement belongs to."""

    tenant_id: str
    account_id: str
    currency: str
    asset_scale: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """A balance the bank states: signed minor units (negative = overdrawn) on a date."""

    amount: int
    date_days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedLine:
    """One booked entry as the file says it, before it gets its identity."""

    line_number: int  # 1-based position among the file's booked entries
    location: str  # where in the file: "Ntry[3]" or "line 7"
    amount: int  # > 0, minor units
    direction: Direction
    reversal: bool
    booking_date_days: int
    value_date_days: int | None
    bank_reference: str | None  # AcctSvcrRef: the bank's own reference of the entry
    entry_reference: str | None  # NtryRef
    end_to_end_reference: str | None  # EndToEndId of the (first) transaction details
    counterparty_name: str | None
    counterparty_account: str | None  # IBAN or other id
    remittance_information: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedStatement:
    """A whole file, read and checked, in the account's currency."""

    format: StatementFormat
    statement_id: str | None
    currency: str
    opening_balance: Balance | None
    closing_balance: Balance | None
    from_date_days: int | None
    to_date_days: int | None
    lines: tuple[ParsedLine, ...]
    entries_not_booked: int  # pending or informational entries, not imported


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementRejected:
    """Why a file is refused, whole: ``location`` names the element or line."""

    location: str
    reason: str

    def message(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementLine:
    """One ``ledger.statements`` line record (schema ``StatementLine``)."""

    tenant_id: str
    account_id: str
    line_id: str
    file_sha256: str
    statement_id: str | None
    line_number: int
    amount: int
    currency: str
    direction: Direction
    reversal: bool
    booking_date_days: int
    value_date_days: int | None
    bank_reference: str | None
    entry_reference: str | None
    end_to_end_reference: str | None
    counterparty_name: str | None
    counterparty_account: str | None
    remittance_information: str | None

    def references(self) -> tuple[str, ...]:
        """The line's references an external_ref of the ledger may equal."""
        found = (self.end_to_end_reference, self.bank_reference, self.entry_reference)
        return tuple(reference for reference in found if reference)


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """One ``ledger.statements`` header record (schema ``Statement``): the file as a whole."""

    tenant_id: str
    account_id: str
    file_sha256: str
    format: StatementFormat
    statement_id: str | None
    currency: str
    opening_balance: Balance | None
    closing_balance: Balance | None
    from_date_days: int | None
    to_date_days: int | None
    line_count: int  # booked entries in the file
    new_line_count: int  # of them, lines not imported before (the ones written with this record)
    entries_not_booked: int
    imported_at_us: int


def file_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def line_identity(account: AccountTerms, line: ParsedLine, occurrence: int) -> str:
    """A line's identity across files: the bank's reference when it gives one, else a hash of
    what the line says plus its occurrence among identical lines of the same file (two equal
    card payments on one day are two lines; the same line in an overlapping statement is one)."""
    if line.bank_reference:
        return f"{account.account_id}/ref/{line.bank_reference}"
    return f"{account.account_id}/content/{content_digest(line)}/{occurrence}"


def content_digest(line: ParsedLine) -> str:
    parts = (
        str(line.amount),
        line.direction.value,
        str(line.reversal),
        str(line.booking_date_days),
        str(line.value_date_days),
        line.entry_reference or "",
        line.end_to_end_reference or "",
        line.counterparty_name or "",
        line.counterparty_account or "",
        line.remittance_information or "",
    )
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:LINE_ID_HASH_CHARACTERS]


def statement_lines(
    account: AccountTerms, parsed: ParsedStatement, content_sha256: str
) -> tuple[StatementLine, ...]:
    """Every booked entry of ``parsed`` as a ``StatementLine`` with its identity."""
    assert len(content_sha256) == SHA256_HEX_CHARACTERS
    seen: dict[str, int] = {}
    lines = []
    for line in parsed.lines:
        key = line.bank_reference or content_digest(line)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        lines.append(
            StatementLine(
                tenant_id=account.tenant_id,
                account_id=account.account_id,
                line_id=line_identity(account, line, occurrence),
                file_sha256=content_sha256,
                statement_id=parsed.statement_id,
                line_number=line.line_number,
                amount=line.amount,
                currency=parsed.currency,
                direction=line.direction,
                reversal=line.reversal,
                booking_date_days=line.booking_date_days,
                value_date_days=line.value_date_days,
                bank_reference=line.bank_reference,
                entry_reference=line.entry_reference,
                end_to_end_reference=line.end_to_end_reference,
                counterparty_name=line.counterparty_name,
                counterparty_account=line.counterparty_account,
                remittance_information=line.remittance_information,
            )
        )
    return tuple(lines)


def duplicate_bank_reference(lines: tuple[ParsedLine, ...]) -> StatementRejected | None:
    """A file that gives two entries the same bank reference is refused: the reference is what
    makes a line the same line in the next, overlapping file."""
    first_seen: dict[str, str] = {}
    for line in lines:
        if not line.bank_reference:
            continue
        if line.bank_reference in first_seen:
            return StatementRejected(
                location=line.location,
                reason=f"bank reference {line.bank_reference!r} already used by"
                f" {first_seen[line.bank_reference]}",
            )
        first_seen[line.bank_reference] = line.location
    return None
