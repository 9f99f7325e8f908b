"""The shapes of the reports: JSON documents (the API and ``--format json``) and CSV.

Pure: reports in, dicts and text out. JSON keeps money as integer minor units with the account's
``asset_scale`` (as every API read does); CSV is for spreadsheets, so it shows amounts as decimals
by the asset scale (``-1234.50`` for -123450 at scale 2: exact, never through a float), times as
ISO 8601 in UTC with microseconds (``2023-11-14T22:13:20.000000Z``) and hashes as hex. The ``csv``
module quotes any field holding a comma, quote or line break. Ids start with a letter or digit
(docs/contract.md), so no cell starts with ``=``, ``+``, ``-`` or ``@`` and is read as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from projections.reports import (
    AccountStatement,
    ChainLink,
    Counters,
    CurrencyTotal,
    StatementEntry,
    TrialBalance,
    TrialBalanceLine,
)

FORMAT_JSON = "json"
FORMAT_CSV = "csv"
FORMAT_PDF = "pdf"


def decimal_text(minor_units: int, asset_scale: int | None) -> str:
    """``minor_units`` as a decimal with ``asset_scale`` places; the integer as it is when the
    scale is unknown (a currency whose accounts use different scales)."""
    if not asset_scale:
        return str(minor_units)
    sign = "-" if minor_units < 0 else ""
    whole, fraction = divmod(abs(minor_units), 10**asset_scale)
    return f"{sign}{whole}.{fraction:0{asset_scale}d}"


def iso_time(moment: datetime | None) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``; empty for no time."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def link_document(link: ChainLink) -> dict[str, Any]:
    return {"sequence": link.sequence, "hash": link.hash.hex(), "effective_at": link.effective_at}


def balance_document(counters: Counters, normal_side: str) -> dict[str, Any]:
    return {
        "debits_posted": counters.debits_posted,
        "credits_posted": counters.credits_posted,
        "debits_pending": counters.debits_pending,
        "credits_pending": counters.credits_pending,
        "posted": counters.posted(normal_side),
        "pending": counters.pending(normal_side),
        "available": counters.available(normal_side),
    }


def entry_document(entry: StatementEntry, normal_side: str) -> dict[str, Any]:
    return {
        "sequence": entry.sequence,
        "effective_at": entry.effective_at,
        "event_type": entry.event_type,
        "transfer_id": entry.transfer_id,
        "kind": entry.kind,
        "side": entry.side,
        "amount": entry.amount,
        "balance_after": balance_document(entry.after, normal_side),
        "actor": entry.actor,
    }


def statement_document(statement: AccountStatement) -> dict[str, Any]:
    side = statement.normal_side
    totals = statement.totals
    return {
        "tenant_id": statement.tenant_id,
        "account_id": statement.account_id,
        "currency": statement.currency,
        "asset_scale": statement.asset_scale,
        "normal_side": side,
        "opened_at": statement.opened_at,
        "from": statement.period_from,
        "to": statement.period_to,
        "opening_balance": {
            **balance_document(statement.opening, side),
            "as_of_event": link_document(statement.opening_link),
        },
        "closing_balance": balance_document(statement.closing, side),
        "entries": [entry_document(entry, side) for entry in statement.entries],
        "totals": {
            "entries": totals.entries,
            "debits_posted": totals.debits_posted,
            "credits_posted": totals.credits_posted,
            "debits_pending": totals.debits_pending,
            "credits_pending": totals.credits_pending,
            "debits_released": totals.debits_released,
            "credits_released": totals.credits_released,
        },
        "last_event": link_document(statement.last_event),
    }


def trial_balance_line_document(line: TrialBalanceLine) -> dict[str, Any]:
    return {
        "account_id": line.account_id,
        "currency": line.currency,
        "asset_scale": line.asset_scale,
        "normal_side": line.normal_side,
        **balance_document(line.counters, line.normal_side),
        "last_sequence": line.last_sequence,
    }


def currency_total_document(total: CurrencyTotal) -> dict[str, Any]:
    counters = total.counters
    return {
        "currency": total.currency,
        "asset_scale": total.asset_scale,
        "accounts": total.accounts,
        "debits_posted": counters.debits_posted,
        "credits_posted": counters.credits_posted,
        "debits_pending": counters.debits_pending,
        "credits_pending": counters.credits_pending,
        "net_posted": total.net_posted,
        "net_pending": total.net_pending,
        "balanced": total.net_posted == 0 and total.net_pending == 0,
    }


def trial_balance_document(report: TrialBalance) -> dict[str, Any]:
    return {
        "tenant_id": report.tenant_id,
        "as_of": report.as_of,
        "accounts": len(report.lines),
        "balanced": all(t.net_posted == 0 and t.net_pending == 0 for t in report.totals),
        "totals": [currency_total_document(total) for total in report.totals],
        "lines": [trial_balance_line_document(line) for line in report.lines],
        "last_event": link_document(report.last_event),
    }


def csv_text(rows: Sequence[Sequence[str | int]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return buffer.getvalue()


STATEMENT_CSV_HEADER = (
    "row", "effective_at", "sequence", "event_type", "transfer_id", "kind", "debit", "credit",
    "posted_balance", "pending_balance", "available_balance", "currency", "actor", "event_hash",
)  # fmt: skip


def statement_csv(statement: AccountStatement) -> str:
    """One row per journal row between an ``opening`` and a ``closing`` row (which carry the
    (sequence, hash) of the last event before ``from`` and ``to``), then per-kind totals."""
    scale, side, currency = statement.asset_scale, statement.normal_side, statement.currency

    def money(amount: int) -> str:
        return decimal_text(amount, scale)

    def balances(counters: Counters) -> list[str]:
        values = (counters.posted(side), counters.pending(side), counters.available(side))
        return [money(value) for value in values]

    def bound(name: str, moment: datetime, counters: Counters, link: ChainLink) -> list[str]:
        head = [name, iso_time(moment), str(link.sequence), "", "", "", "", ""]
        return [*head, *balances(counters), currency, "", link.hash.hex()]

    rows: list[Sequence[str | int]] = [STATEMENT_CSV_HEADER]
    rows.append(bound("opening", statement.period_from, statement.opening, statement.opening_link))
    for entry in statement.entries:
        debit, credit = (
            (money(entry.amount), "") if entry.side == "debit" else ("", money(entry.amount))
        )
        rows.append(
            ["entry", iso_time(entry.effective_at), str(entry.sequence), entry.event_type,
             entry.transfer_id, entry.kind, debit, credit, *balances(entry.after), currency,
             entry.actor, ""]
        )  # fmt: skip
    rows.append(bound("closing", statement.period_to, statement.closing, statement.last_event))
    totals = statement.totals
    for kind, debits, credits in (
        ("posted", totals.debits_posted, totals.credits_posted),
        ("pending", totals.debits_pending, totals.credits_pending),
        ("released", totals.debits_released, totals.credits_released),
    ):
        rows.append(["total", "", "", "", "", kind, money(debits), money(credits),
                     "", "", "", currency, "", ""])  # fmt: skip
    return csv_text(rows)


TRIAL_BALANCE_CSV_HEADER = (
    "row", "account_id", "currency", "normal_side", "debits_posted", "credits_posted",
    "debits_pending", "credits_pending", "posted_balance", "available_balance", "accounts",
    "as_of", "sequence", "event_hash",
)  # fmt: skip


def trial_balance_csv(report: TrialBalance) -> str:
    """One ``account`` row per account, one ``total`` row per currency (net posted in
    ``posted_balance``: zero), and the ``as_of`` row naming the last event included."""
    rows: list[Sequence[str | int]] = [TRIAL_BALANCE_CSV_HEADER]
    for line in report.lines:
        scale, counters, side = line.asset_scale, line.counters, line.normal_side
        values = (
            counters.debits_posted, counters.credits_posted, counters.debits_pending,
            counters.credits_pending, counters.posted(side), counters.available(side),
        )  # fmt: skip
        amounts = [decimal_text(value, scale) for value in values]
        rows.append(["account", line.account_id, line.currency, side, *amounts, "", "", "", ""])
    for total in report.totals:
        sums = total.counters
        sum_values = (sums.debits_posted, sums.credits_posted, sums.debits_pending,
                  sums.credits_pending, total.net_posted)  # fmt: skip
        rows.append(["total", "", total.currency, "",
                     *(decimal_text(value, total.asset_scale) for value in sum_values), "",
                     str(total.accounts), "", "", ""])  # fmt: skip
    link = report.last_event
    rows.append(["as_of", "", "", "", "", "", "", "", "", "", str(len(report.lines)),
                 iso_time(report.as_of), str(link.sequence), link.hash.hex()])  # fmt: skip
    return csv_text(rows)
