"""An account's balance history for charts: the closing balance per hour or day (issue 19 §4).

For ``[from, to)`` cut into buckets of ``interval`` (``1h`` or ``1d``; ``from`` and ``to`` on
whole hours or days, UTC, so buckets are the calendar's), each bucket reports the account's four
counters **after every event effective before the bucket's end** — the closing balance of a
statement whose ``to`` is that end (decision 0057) — and the last event of the tenant included,
``(sequence, hash)`` from ``event_chain``: the figure is a function of events ``1..sequence``,
checkable against the hash chain like every report (decision 0032).

One statement reads every bucket: ``generate_series`` of the bucket ends, and per end one backward
probe of ``entries_account_time_idx`` and one of ``event_chain_time_idx`` (about 2 index lookups
per bucket, ``BUCKETS_MAX`` buckets at most). The same ``(statement, parameters)`` steps as the
other reports (``projections.reports``), so the CLI and the API run them with their own reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from projections.queries import QueryError
from projections.report_formats import decimal_text, iso_time
from projections.reports import (
    AFTER_COLUMNS,
    ChainIncompleteError,
    ChainLink,
    Counters,
    ReportSteps,
    counters_of,
)
from schemas.model import GENESIS_HASH

INTERVALS: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
BUCKETS_MAX: Final = 1_000  # 41 days of hours, 2.7 years of days: one chart's worth
SELECT_HISTORY_ACCOUNT: Final = (
    "SELECT a.currency, a.asset_scale, a.normal_side, a.opened_at, h.last_sequence,"
    " (SELECT min(sequence) FROM ledger.event_chain WHERE tenant_id = a.tenant_id)"
    " FROM ledger.accounts AS a"
    " LEFT JOIN ledger.tenant_heads AS h ON h.tenant_id = a.tenant_id"
    " WHERE a.tenant_id = %s AND a.account_id = %s AND a.opened_at < %s"
)
SELECT_BUCKETS: Final = (
    "SELECT b.bucket_end, " + ", ".join(f"e.{name.strip()}" for name in AFTER_COLUMNS.split(","))
    + ", e.sequence, l.sequence, l.hash, l.effective_at"
    " FROM generate_series(%s::timestamptz, %s::timestamptz, %s::interval) AS b(bucket_end)"
    " LEFT JOIN LATERAL (SELECT " + AFTER_COLUMNS + ", sequence FROM ledger.entries"
    "   WHERE tenant_id = %s AND account_id = %s AND effective_at < b.bucket_end"
    "   ORDER BY effective_at DESC, sequence DESC, kind DESC, transfer_id DESC LIMIT 1) AS e"
    " ON true"
    " LEFT JOIN LATERAL (SELECT sequence, hash, effective_at FROM ledger.event_chain"
    "   WHERE tenant_id = %s AND effective_at < b.bucket_end"
    "   ORDER BY effective_at DESC, sequence DESC LIMIT 1) AS l ON true"
    " ORDER BY b.bucket_end"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BalanceBucket:
    start: datetime
    end: datetime
    closing: Counters  # after every event effective before ``end``
    account_sequence: int | None  # the account's last change before ``end`` (None: none yet)
    last_event: ChainLink  # the tenant's last event before ``end``: the figure covers 1..it


@dataclass(frozen=True, slots=True)
class BalanceHistory:
    tenant_id: str
    account_id: str
    currency: str
    asset_scale: int
    normal_side: str
    interval: str
    period_from: datetime
    period_to: datetime
    buckets: tuple[BalanceBucket, ...]


def check_period(period_from: datetime, period_to: datetime, interval: str) -> timedelta:
    """The bucket length; ``QueryError`` naming the parameter for a period it cannot cut."""
    step = INTERVALS.get(interval)
    if step is None:
        raise QueryError(f"interval: {interval[:16]!r} is not one of {', '.join(INTERVALS)}")
    for name, moment in (("from", period_from), ("to", period_to)):
        if (moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)) % step:
            whole = "hour" if step == INTERVALS["1h"] else "day"
            raise QueryError(f"{name}: must be a whole {whole} (UTC) for interval={interval}")
    if period_from >= period_to:
        raise QueryError(f"from: {period_from.isoformat()} is not before to")
    buckets = (period_to - period_from) // step
    if buckets > BUCKETS_MAX:
        raise QueryError(
            f"to: {buckets} buckets of {interval}; at most {BUCKETS_MAX} (a shorter period or 1d)"
        )
    return step


def balance_history_steps(
    tenant_id: str, account_id: str, period: tuple[datetime, datetime], interval: str
) -> ReportSteps[BalanceHistory | None]:
    """The history of ``account_id``; None if it was not open before ``to``."""
    period_from, period_to = period
    step = check_period(period_from, period_to, interval)
    accounts = yield SELECT_HISTORY_ACCOUNT, (tenant_id, account_id, period_to)
    if not accounts:
        return None
    currency, asset_scale, normal_side, _opened_at, head, first = accounts[0]
    if head is not None and first != 1:
        raise ChainIncompleteError(
            f"tenant {tenant_id!r}: event_chain starts at {first}, the projection at 1:"
            " run `streamledger project --rebuild`"
        )
    rows = yield (
        SELECT_BUCKETS,
        (period_from + step, period_to, interval_text(step), tenant_id, account_id, tenant_id),
    )
    buckets = tuple(bucket_of(row, step) for row in rows)
    return BalanceHistory(
        tenant_id,
        account_id,
        currency,
        int(asset_scale),
        normal_side,
        interval,
        period_from,
        period_to,
        buckets,
    )


def interval_text(step: timedelta) -> str:
    """The bucket length in seconds: a ``'1 day'`` interval would follow the session's time zone
    across a daylight saving change (23 or 25 hours); buckets are UTC days."""
    return f"{int(step.total_seconds())} seconds"


def bucket_of(row: Sequence[Any], step: timedelta) -> BalanceBucket:
    end = row[0]
    account_sequence, sequence, link_hash, effective_at = row[5:9]
    link = (
        ChainLink(0, GENESIS_HASH, None)
        if sequence is None
        else ChainLink(int(sequence), bytes(link_hash), effective_at)
    )
    return BalanceBucket(
        end - step,
        end,
        counters_of(row[1:5]),
        None if account_sequence is None else int(account_sequence),
        link,
    )


def balance_history_document(history: BalanceHistory) -> dict[str, Any]:
    """The JSON shape: money in minor units with the asset scale, balances on the normal side."""
    return {
        "account_id": history.account_id,
        "currency": history.currency,
        "asset_scale": history.asset_scale,
        "normal_side": history.normal_side,
        "interval": history.interval,
        "from": history.period_from,
        "to": history.period_to,
        "buckets": [
            {
                "start": bucket.start,
                "end": bucket.end,
                "posted": bucket.closing.posted(history.normal_side),
                "pending": bucket.closing.pending(history.normal_side),
                "available": bucket.closing.available(history.normal_side),
                "debits_posted": bucket.closing.debits_posted,
                "credits_posted": bucket.closing.credits_posted,
                "debits_pending": bucket.closing.debits_pending,
                "credits_pending": bucket.closing.credits_pending,
                "account_sequence": bucket.account_sequence,
                "last_event": {
                    "sequence": bucket.last_event.sequence,
                    "hash": bucket.last_event.hash.hex(),
                    "effective_at": bucket.last_event.effective_at,
                },
            }
            for bucket in history.buckets
        ],
    }


CSV_HEADER: Final = (
    "bucket_start", "bucket_end", "currency", "posted", "pending", "available", "debits_posted",
    "credits_posted", "debits_pending", "credits_pending", "account_sequence",
    "last_event_sequence", "last_event_hash",
)  # fmt: skip


def balance_history_csv(history: BalanceHistory) -> str:
    """One row per bucket: amounts as decimals by the asset scale, ISO 8601 UTC times."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    scale, side = history.asset_scale, history.normal_side
    for bucket in history.buckets:
        closing = bucket.closing
        amounts = (
            closing.posted(side),
            closing.pending(side),
            closing.available(side),
            closing.debits_posted,
            closing.credits_posted,
            closing.debits_pending,
            closing.credits_pending,
        )
        writer.writerow(
            [
                iso_time(bucket.start),
                iso_time(bucket.end),
                history.currency,
                *(decimal_text(amount, scale) for amount in amounts),
                "" if bucket.account_sequence is None else bucket.account_sequence,
                bucket.last_event.sequence,
                bucket.last_event.hash.hex(),
            ]
        )
    return buffer.getvalue()
