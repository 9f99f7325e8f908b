"""``streamledger reconcile report``: what reconciliation says about one account (pure core).

From the account's imported statements and lines, the results written so far and the mirror
account's balances on ``ledger.events``: how many lines there are, how many ended matched,
mismatched or unmatched (both sides), the amount differences of the mismatches, and the balance
check — the closing balance of the last statement in the period against the ledger's balance of
the mirror account at the end of that statement's day (``debits_posted - credits_posted``: a
debit of the mirror account is money in the bank, decision 0053), as a difference in minor units.
Manual requests the matcher refused (``ManualRefusal`` records, decision 0107) are listed, each
with its request's position and the matcher's reason: they decided nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from reconciliation.amounts import iso_date
from reconciliation.manual_refusal import ManualRefusal
from reconciliation.matching import MICROSECONDS_PER_DAY, ReconciliationResult, ReconciliationState
from reconciliation.statement import Statement, StatementLine


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerBalancePoint:
    """The mirror account's posted balance after one event (bank side: debits - credits)."""

    effective_at_us: int
    balance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceCheck:
    statement_date_days: int
    statement_closing: int
    ledger_balance: int

    @property
    def difference(self) -> int:
        return self.statement_closing - self.ledger_balance


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconciliationReport:
    tenant_id: str
    account_id: str
    from_days: int | None
    to_days: int | None
    lines: int
    lines_by_state: dict[str, int]  # matched / mismatched / unmatched / open
    movements_by_state: dict[str, int]  # matched / mismatched / unmatched
    mismatch_difference: int  # sum of (line - movement) over mismatches, minor units
    balance_check: BalanceCheck | None
    refusals: tuple[ManualRefusal, ...] = ()  # manual requests the matcher refused, in order


def summarize(
    *,
    tenant_id: str,
    account_id: str,
    from_days: int | None,
    to_days: int | None,
    statements: list[Statement],
    lines: list[StatementLine],
    results: list[ReconciliationResult],
    ledger_balances: list[LedgerBalancePoint],
    refusals: Sequence[ManualRefusal] = (),
) -> ReconciliationReport:
    def in_period(day: int | None) -> bool:
        return (
            day is not None
            and (from_days is None or day >= from_days)
            and (to_days is None or day <= to_days)
        )

    chosen_lines = {line.line_id for line in lines if in_period(line.booking_date_days)}
    line_states: Counter[str] = Counter()
    movement_states: Counter[str] = Counter()
    difference = 0
    for result in current_results(results):
        decided = [line_id for line_id in result.line_ids if line_id in chosen_lines]
        line_states[result.state.value] += len(decided)
        chosen_lines.difference_update(decided)
        if decided or not result.line_ids:
            movement_states[result.state.value] += len(result.movement_ids)
        if decided and result.state is ReconciliationState.MISMATCHED:
            difference += result.line_amount - result.movement_amount
    line_states["open"] = len(chosen_lines)
    total = sum(line_states.values())
    return ReconciliationReport(
        tenant_id=tenant_id,
        account_id=account_id,
        from_days=from_days,
        to_days=to_days,
        lines=total,
        lines_by_state={state: count for state, count in line_states.items() if count},
        movements_by_state={state: count for state, count in movement_states.items() if count},
        mismatch_difference=difference,
        balance_check=_balance_check(
            [s for s in statements if in_period(s.to_date_days)], ledger_balances
        ),
        refusals=tuple(refusals),
    )


def current_results(results: list[ReconciliationResult]) -> list[ReconciliationResult]:
    """The results (in decision order) that are still the latest naming their items: a later
    result naming an item supersedes the earlier one (a manual unmatch, decision 0090)."""
    latest_lines: dict[str, int] = {}
    latest_movements: dict[str, int] = {}
    for index, result in enumerate(results):
        latest_lines.update((line_id, index) for line_id in result.line_ids)
        latest_movements.update((movement_id, index) for movement_id in result.movement_ids)
    return [
        result
        for index, result in enumerate(results)
        if any(latest_lines[line_id] == index for line_id in result.line_ids)
        or any(latest_movements[movement_id] == index for movement_id in result.movement_ids)
    ]


def _balance_check(
    statements: list[Statement], ledger_balances: list[LedgerBalancePoint]
) -> BalanceCheck | None:
    closing = [s for s in statements if s.closing_balance is not None]
    if not closing:
        return None
    last = max(closing, key=lambda s: s.closing_balance.date_days if s.closing_balance else 0)
    assert last.closing_balance is not None
    day = last.closing_balance.date_days
    end_us = (day + 1) * MICROSECONDS_PER_DAY
    balance = 0
    for point in ledger_balances:  # in log order: effective times never go back
        if point.effective_at_us >= end_us:
            break
        balance = point.balance
    return BalanceCheck(
        statement_date_days=day,
        statement_closing=last.closing_balance.amount,
        ledger_balance=balance,
    )


def render(report: ReconciliationReport) -> str:
    period = (
        f"{'…' if report.from_days is None else iso_date(report.from_days)}"
        f" to {'…' if report.to_days is None else iso_date(report.to_days)}"
    )
    rows = [
        f"reconciliation of {report.tenant_id}/{report.account_id}, booking dates {period}",
        f"statement lines: {report.lines}",
        *(
            f"  {state}: {report.lines_by_state.get(state, 0)}"
            for state in ("matched", "mismatched", "unmatched", "open")
        ),
        "ledger movements decided:",
        *(
            f"  {state}: {report.movements_by_state.get(state, 0)}"
            for state in ("matched", "mismatched", "unmatched")
        ),
        f"mismatched amount difference (statement - ledger): {report.mismatch_difference}",
    ]
    check = report.balance_check
    if check is None:
        rows.append("balance check: no statement with a closing balance in the period")
    else:
        rows.append(
            f"balance check at the end of {iso_date(check.statement_date_days)}: statement"
            f" {check.statement_closing}, ledger {check.ledger_balance},"
            f" difference {check.difference} (minor units)"
        )
    rows.append(f"manual requests refused by the matcher: {len(report.refusals)}")
    rows += [
        f"  request {refusal.request_id} ({refusal.request_type} by {refusal.actor}):"
        f" {refusal.reason}"
        for refusal in report.refusals
    ]
    return "\n".join(rows) + "\n"
