"""A synthetic camt.053 or BAI2 bank statement for a bank-mirror account, from its ledger
movements, with known perturbations (issue 20 §4; ``make demo``). Pure: movements and a seeded
``random.Random`` in, the file's bytes and what reconciliation must find out.

The bank's view of the movements: one booked entry per movement, same amount, direction and
date, except

- ``missing``: a share of the movements the bank never booked (→ ``not_on_statement``);
- ``mismatched``: movements the bank booked one minor unit higher, a day earlier (→ the line
  ``no_ledger_movement`` and the movement ``not_on_statement``: with no reference to tie them,
  a different amount is a different payment);
- ``extra``: entries the ledger never booked, a day before the first movement
  (→ ``no_ledger_movement``);
- ``late``: movements the bank booked ``late_days`` after the ledger (→ the line
  ``no_ledger_movement`` and the movement ``not_on_statement`` with a window below
  ``late_days``), chosen among the movements dated at least ``late_days`` before the last one
  (the statement never books into the future of its ledger) that no movement of the later day
  has the amount of.

A perturbed entry must not find a partner by coincidence: a mismatched amount is raised further
until no movement has it. A sum of other movements of its day equal to a mismatched or late
entry's amount is not excluded (matching it would be right: the bank could have booked that);
the tests draw amounts whose sums never equal one amount.

BAI2 has one booking date per file (its group's as-of date): ``synthetic_bai2`` writes one file
per day of the period, each with the running opening (010) and closing (015) ledger balances.

Opening balance 0, closing balance the sum of the entries (bank side: credit > 0), so the
balance check's difference is exactly the perturbations' net amount. Dates are the movements'
own; a matcher with a date window of 0 days decides every item as soon as the statement is read.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape

from reconciliation.amounts import iso_date
from reconciliation.matching import Movement
from reconciliation.statement import Direction

CAMT_NAMESPACE: Final = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
MISSING_SHARE_DEFAULT: Final = 0.05
MISMATCHED_DEFAULT: Final = 2
EXTRA_DEFAULT: Final = 3
LATE_DEFAULT: Final = 0  # the demo's statements have none (its movements are all of today)
LATE_DAYS_DEFAULT: Final = 1  # beyond a 0-day window
EXTRA_AMOUNT_MAX: Final = 99_999  # minor units of an extra entry
BAI2_SENDER: Final = "SYNBANK"
BAI2_RECEIVER: Final = "STREAMLEDGER"
BAI2_CREDIT_CODE: Final = "399"  # miscellaneous credit
BAI2_DEBIT_CODE: Final = "699"  # miscellaneous debit


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What matching the statement against the ledger must report."""

    lines: int
    lines_matched: int
    lines_unmatched: int
    movements_matched: int
    movements_unmatched: int
    balance_difference: int  # statement closing - ledger balance, minor units
    # the movements missing, mismatched or late: exactly those must end not_on_statement
    unmatched_movement_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticStatement:
    content: bytes
    expected: Expected


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticFiles:
    """A statement that takes several files (BAI2: one per as-of day), in day order."""

    files: tuple[tuple[int, bytes], ...]  # (booking day, content)
    expected: Expected


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    amount: int  # > 0
    direction: Direction
    day: int


def signed(entry: Entry) -> int:
    return entry.amount if entry.direction is Direction.CREDIT else -entry.amount


def synthetic_camt053(
    movements: Sequence[Movement],
    *,
    iban: str,
    currency: str,
    asset_scale: int,
    rng: random.Random,
    missing_share: float = MISSING_SHARE_DEFAULT,
    mismatched: int = MISMATCHED_DEFAULT,
    extra: int = EXTRA_DEFAULT,
    late: int = LATE_DEFAULT,
    late_days: int = LATE_DAYS_DEFAULT,
) -> SyntheticStatement:
    """The statement of ``movements`` (one account's, in log order) with the perturbations above."""
    entries, expected = perturbed_entries(
        movements, rng=rng, missing_share=missing_share, mismatched=mismatched, extra=extra,
        late=late, late_days=late_days,
    )  # fmt: skip
    # the period covers every movement's day, also when all of a day's entries are perturbed
    days = [entry.day for entry in entries] + [movement.date_days for movement in movements]
    document = camt053_document(
        entries, (min(days), max(days)), iban=iban, currency=currency, asset_scale=asset_scale
    )
    return SyntheticStatement(content=document.encode("utf-8"), expected=expected)


def perturbed_entries(
    movements: Sequence[Movement],
    *,
    rng: random.Random,
    missing_share: float,
    mismatched: int,
    extra: int,
    late: int = LATE_DEFAULT,
    late_days: int = LATE_DAYS_DEFAULT,
) -> tuple[list[Entry], Expected]:
    """The bank's entries of ``movements`` with the perturbations, and what matching must find
    (the same for every file format)."""
    assert movements and 0 <= missing_share < 1 and min(mismatched, extra, late) >= 0
    assert late_days >= 1
    mismatched = min(mismatched, len(movements))
    order = list(range(len(movements)))
    rng.shuffle(order)
    missing_count = min(int(len(movements) * missing_share), len(movements) - mismatched)
    missing = set(order[:missing_count])
    altered = set(order[missing_count : missing_count + mismatched])
    last_day = max(movement.date_days for movement in movements)
    booked = {(m.date_days, m.amount, m.direction) for m in movements}
    delayed = set(
        [
            index
            for index in order[missing_count + mismatched :]
            if (movement := movements[index]).date_days + late_days <= last_day
            and (movement.date_days + late_days, movement.amount, movement.direction) not in booked
        ][:late]
    )
    first_day = min(movement.date_days for movement in movements)
    taken = {movement.amount for movement in movements}
    entries: list[Entry] = []
    for index, movement in enumerate(movements):
        amount, day = movement.amount, movement.date_days
        if index in missing:
            continue
        if index in altered:
            amount, day = amount + 1, day - 1
            while amount in taken:  # another movement's amount would be a partner
                amount += 1
        elif index in delayed:
            day += late_days
        entries.append(Entry(amount=amount, direction=movement.direction, day=day))
    entries += [
        Entry(
            amount=rng.randint(1, EXTRA_AMOUNT_MAX), direction=Direction.CREDIT, day=first_day - 1
        )
        for _ in range(extra)
    ]
    ledger_balance = sum(m.amount if m.direction is Direction.CREDIT else -m.amount
                         for m in movements)  # fmt: skip
    closing = sum(signed(entry) for entry in entries)
    kept = len(movements) - missing_count - len(altered) - len(delayed)
    expected = Expected(
        lines=len(entries),
        lines_matched=kept,
        lines_unmatched=len(altered) + len(delayed) + extra,
        movements_matched=kept,
        movements_unmatched=missing_count + len(altered) + len(delayed),
        balance_difference=closing - ledger_balance,
        unmatched_movement_ids=tuple(
            sorted(movements[index].movement_id for index in missing | altered | delayed)
        ),
    )
    return entries, expected


def synthetic_bai2(
    movements: Sequence[Movement],
    *,
    bank_account: str,
    currency: str,
    rng: random.Random,
    missing_share: float = MISSING_SHARE_DEFAULT,
    mismatched: int = MISMATCHED_DEFAULT,
    extra: int = EXTRA_DEFAULT,
    late: int = LATE_DEFAULT,
    late_days: int = LATE_DAYS_DEFAULT,
) -> SyntheticFiles:
    """The BAI2 files of ``movements``: the same entries and expectations as the camt.053 one
    (same seed, same perturbations), one file per day from the first entry's to the last
    movement's; amounts in the account's minor units (BAI2's implied decimals)."""
    entries, expected = perturbed_entries(
        movements, rng=rng, missing_share=missing_share, mismatched=mismatched, extra=extra,
        late=late, late_days=late_days,
    )  # fmt: skip
    by_day: dict[int, list[Entry]] = {}
    for entry in entries:
        by_day.setdefault(entry.day, []).append(entry)
    days = [entry.day for entry in entries] + [movement.date_days for movement in movements]
    files: list[tuple[int, bytes]] = []
    opening = 0
    for day in range(min(days), max(days) + 1):
        todays = by_day.get(day, [])
        closing = opening + sum(signed(entry) for entry in todays)
        document = bai2_document(
            todays, day, bank_account=bank_account, currency=currency, balances=(opening, closing)
        )
        files.append((day, document.encode("ascii")))
        opening = closing
    return SyntheticFiles(files=tuple(files), expected=expected)


def bai2_date(day: int) -> str:
    return iso_date(day).replace("-", "")[2:]  # YYMMDD


def bai2_document(
    entries: list[Entry], day: int, *, bank_account: str, currency: str, balances: tuple[int, int]
) -> str:
    """One BAI2 file: one group (as-of ``day``), one account, its details; every control total
    and record count as the parser checks them."""
    opening, closing = balances
    as_of = bai2_date(day)
    details = [
        f"16,{BAI2_CREDIT_CODE if entry.direction is Direction.CREDIT else BAI2_DEBIT_CODE},"
        f"{entry.amount},Z,SYN{as_of}{number:06d},,SYNTHETIC ENTRY/"
        for number, entry in enumerate(entries, start=1)
    ]
    account_total = opening + closing + sum(entry.amount for entry in entries)
    account = [
        f"03,{bank_account},{currency},010,{opening},,,015,{closing},,/",
        *details,
        f"49,{account_total},{len(details) + 2}/",
    ]
    group = [
        f"02,{BAI2_RECEIVER},{BAI2_SENDER},1,{as_of},2359,{currency},2/",
        *account,
        f"98,{account_total},1,{len(account) + 2}/",
    ]
    records = [
        f"01,{BAI2_SENDER},{BAI2_RECEIVER},{as_of},2359,{day},80,,2/",
        *group,
        f"99,{account_total},1,{len(group) + 2}/",
    ]
    return "\n".join(records) + "\n"


def decimal_text(amount: int, asset_scale: int) -> str:
    whole, fraction = divmod(abs(amount), 10**asset_scale)
    return f"{whole}.{fraction:0{asset_scale}d}" if asset_scale else str(whole)


def balance_element(code: str, amount: int, day: int, currency: str, asset_scale: int) -> str:
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
        f'<Amt Ccy="{currency}">{decimal_text(amount, asset_scale)}</Amt>'
        f"<CdtDbtInd>{'CRDT' if amount >= 0 else 'DBIT'}</CdtDbtInd>"
        f"<Dt><Dt>{iso_date(day)}</Dt></Dt></Bal>"
    )


def camt053_document(
    entries: list[Entry], period: tuple[int, int], *, iban: str, currency: str, asset_scale: int
) -> str:
    first, last = period
    rows = [
        f"<Ntry><NtryRef>{number}</NtryRef>"
        f'<Amt Ccy="{currency}">{decimal_text(entry.amount, asset_scale)}</Amt>'
        f"<CdtDbtInd>{'CRDT' if entry.direction is Direction.CREDIT else 'DBIT'}</CdtDbtInd>"
        f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{iso_date(entry.day)}</Dt></BookgDt>"
        f"<AcctSvcrRef>SYN-{iso_date(entry.day)}-{number:06d}</AcctSvcrRef></Ntry>"
        for number, entry in enumerate(entries, start=1)
    ]
    closing = sum(signed(entry) for entry in entries)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="{CAMT_NAMESPACE}"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>SYN-{iso_date(last)}</MsgId></GrpHdr>"
        f"<Stmt><Id>SYN-{escape(iban)}-{iso_date(last)}</Id>"
        f"<FrToDt><FrDtTm>{iso_date(first)}T00:00:00Z</FrDtTm>"
        f"<ToDtTm>{iso_date(last)}T23:59:59Z</ToDtTm></FrToDt>"
        f"<Acct><Id><IBAN>{escape(iban)}</IBAN></Id><Ccy>{currency}</Ccy></Acct>"
        + balance_element("OPBD", 0, first, currency, asset_scale)
        + balance_element("CLBD", closing, last, currency, asset_scale)
        + "".join(rows)
        + "</Stmt></BkToCstmrStmt></Document>\n"
    )
