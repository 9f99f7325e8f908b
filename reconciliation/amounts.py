"""Decimal text of a statement → integer minor units, and ISO dates → days (pure).

A statement's amount has at most the account's ``asset_scale`` fractional digits: ``12.5`` at
scale 2 is 1250, ``12.345`` at scale 2 is refused (the bank and the ledger disagree on the
currency's precision, which no rounding may hide). Never a float.
"""

from __future__ import annotations

import datetime
import re
from typing import Final

from schemas.model import INT64_MAX

DECIMAL_PATTERN: Final = re.compile(
    r"(?P<sign>-?)(?P<whole>[0-9]{1,18})(?:\.(?P<fraction>[0-9]{1,18}))?"
)
ISO_DATE_PATTERN: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EPOCH: Final = datetime.date(1970, 1, 1)


def minor_units(text: str, asset_scale: int, *, signed: bool = False) -> int | str:
    """``text`` as minor units, or the reason it is not an amount (a value, not an exception)."""
    match = DECIMAL_PATTERN.fullmatch(text.strip())
    if match is None:
        return f"amount {text!r} is not a decimal number"
    if match["sign"] and not signed:
        return f"amount {text!r} is negative (the direction is given separately)"
    fraction = match["fraction"] or ""
    if len(fraction) > asset_scale:
        return f"amount {text!r} has more than {asset_scale} decimal places (the account's scale)"
    value = int(match["whole"] + fraction.ljust(asset_scale, "0"))
    if value > INT64_MAX:
        return f"amount {text!r} is outside the signed 64-bit range of minor units"
    return -value if match["sign"] else value


def date_days(text: str) -> int | str:
    """An ISO date (``2026-12-04``; a date-time is cut to its date) as days since 1970-01-01."""
    candidate = text.strip()[:10]
    if not ISO_DATE_PATTERN.fullmatch(candidate):
        return f"date {text!r} is not an ISO date (YYYY-MM-DD)"
    try:
        return (datetime.date.fromisoformat(candidate) - EPOCH).days
    except ValueError:
        return f"date {text!r} does not exist"


def iso_date(days: int) -> str:
    return (EPOCH + datetime.timedelta(days=days)).isoformat()
