"""The demo's synthetic camt.053 (pure): it parses with the real parser, and the pure matcher
run over it and the ledger's movements finds exactly the perturbations it was built with."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation import bai2, camt053
from reconciliation.matching import MICROSECONDS_PER_DAY, MatchingRules, Movement, Reconciler
from reconciliation.report import LedgerBalancePoint, summarize
from reconciliation.statement import (
    AccountTerms,
    Direction,
    ParsedStatement,
    Statement,
    StatementFormat,
    file_sha256,
    statement_lines,
)
from reconciliation.synthetic_statement import synthetic_bai2, synthetic_camt053

DAY = 20_400
ACCOUNT = AccountTerms(tenant_id="acme", account_id="funding", currency="EUR", asset_scale=2)
# every amount is BASE + a power of two of its own: no sum of movements equals one amount, so a
# perturbed entry can only be found by what it was built from (the generator's documented limit)
BASE_AMOUNT = 1 << 41
amounts_without_coincidences = st.lists(
    st.integers(0, 39).map(lambda exponent: BASE_AMOUNT + (1 << exponent)),
    min_size=1,
    max_size=40,
    unique=True,
)


def movements(amounts: list[int]) -> list[Movement]:
    return [
        Movement(
            tenant_id="acme",
            account_id="funding",
            movement_id=f"acme:{index + 1}#0",
            amount=amount,
            direction=Direction.DEBIT if index % 3 == 0 else Direction.CREDIT,
            date_days=DAY,
            external_reference=None,
        )
        for index, amount in enumerate(amounts)
    ]


def header_of(parsed: ParsedStatement, sha: str, line_count: int) -> Statement:
    """The ``Statement`` record the importer writes after a file's lines."""
    return Statement(
        tenant_id="acme", account_id="funding", file_sha256=sha, format=StatementFormat.CAMT053,
        statement_id=parsed.statement_id, currency="EUR", opening_balance=parsed.opening_balance,
        closing_balance=parsed.closing_balance, from_date_days=parsed.from_date_days,
        to_date_days=parsed.to_date_days, line_count=line_count, new_line_count=line_count,
        entries_not_booked=0, imported_at_us=0,
    )  # fmt: skip


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    amounts=amounts_without_coincidences,
    seed=st.integers(0, 2**32),
    mismatched=st.integers(0, 3),
    late=st.integers(0, 3),
)
def test_matching_finds_exactly_the_perturbations(
    amounts: list[int], seed: int, mismatched: int, late: int
) -> None:
    ledger = [
        replace(movement, date_days=DAY + index % 4)
        for index, movement in enumerate(movements(amounts))
    ]
    synthetic = synthetic_camt053(
        ledger, iban="DE00SYNTHETIC", currency="EUR", asset_scale=2, rng=random.Random(seed),
        missing_share=0.1, mismatched=mismatched, extra=2, late=late,
    )  # fmt: skip
    parsed = camt053.parse(synthetic.content, ACCOUNT)
    assert isinstance(parsed, ParsedStatement), parsed
    sha = file_sha256(synthetic.content)
    lines = statement_lines(ACCOUNT, parsed, sha)
    header = header_of(parsed, sha, len(lines))
    reconciler = Reconciler(MatchingRules(date_window_days=0, movement_retention_days=0))
    at = DAY * MICROSECONDS_PER_DAY
    results = []
    for offset, movement in enumerate(ledger):
        results += reconciler.add_movement(movement, offset, at)
    for offset, line in enumerate(lines):
        results += reconciler.add_line(line, offset, at)
    results += reconciler.add_statement(header, at)
    results += reconciler.advance_ledger_time("acme", (DAY + 4) * MICROSECONDS_PER_DAY, at)
    assert reconciler.open_items == 0
    assert sorted(
        movement_id
        for result in results
        if result.reason == "not_on_statement"
        for movement_id in result.movement_ids
    ) == list(synthetic.expected.unmatched_movement_ids)
    balance = sum(m.amount if m.direction is Direction.CREDIT else -m.amount for m in ledger)
    report = summarize(
        tenant_id="acme", account_id="funding", from_days=None, to_days=None,
        statements=[header], lines=list(lines), results=results,
        ledger_balances=[LedgerBalancePoint(effective_at_us=at, balance=balance)],
    )  # fmt: skip
    expected = synthetic.expected
    assert report.lines == expected.lines == len(lines)
    assert Counter(report.lines_by_state) == Counter(
        {"matched": expected.lines_matched, "unmatched": expected.lines_unmatched}
    )
    assert Counter(report.movements_by_state) == Counter(
        {"matched": expected.movements_matched, "unmatched": expected.movements_unmatched}
    )
    assert report.balance_check is not None
    assert report.balance_check.difference == expected.balance_difference


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    amounts=amounts_without_coincidences,
    seed=st.integers(0, 2**32),
    mismatched=st.integers(0, 3),
    late=st.integers(0, 3),
)
def test_the_bai2_files_parse_day_by_day_and_match_to_exactly_the_perturbations(
    amounts: list[int], seed: int, mismatched: int, late: int
) -> None:
    """One BAI2 file per day (BAI2 books a file's lines on its as-of date), every one accepted by
    the real parser, balances chained from 0; matched with a 0-day window, the same perturbations
    as the camt.053 of the same seed."""
    ledger = [
        replace(movement, date_days=DAY + index % 3)
        for index, movement in enumerate(movements(amounts))
    ]
    synthetic = synthetic_bai2(
        ledger, bank_account="4000000001", currency="EUR", rng=random.Random(seed),
        missing_share=0.1, mismatched=mismatched, extra=2, late=late,
    )  # fmt: skip
    camt = synthetic_camt053(
        ledger, iban="DE00SYNTHETIC", currency="EUR", asset_scale=2, rng=random.Random(seed),
        missing_share=0.1, mismatched=mismatched, extra=2, late=late,
    )  # fmt: skip
    assert synthetic.expected == camt.expected
    days = [day for day, _ in synthetic.files]
    assert days == list(range(days[0], days[-1] + 1))
    reconciler = Reconciler(MatchingRules(date_window_days=0, movement_retention_days=0))
    at = DAY * MICROSECONDS_PER_DAY
    results = [
        result
        for offset, movement in enumerate(ledger)
        for result in reconciler.add_movement(movement, offset, at)
    ]
    opening, line_count = 0, 0
    for day, content in synthetic.files:
        parsed = bai2.parse(content, ACCOUNT)
        assert isinstance(parsed, ParsedStatement), parsed
        assert parsed.from_date_days == parsed.to_date_days == day
        assert parsed.opening_balance is not None and parsed.closing_balance is not None
        assert parsed.opening_balance.amount == opening
        opening = parsed.closing_balance.amount
        sha = file_sha256(content)
        lines = statement_lines(ACCOUNT, parsed, sha)
        for line in lines:
            results += reconciler.add_line(line, line_count, at)
            line_count += 1
        results += reconciler.add_statement(header_of(parsed, sha, len(lines)), at)  # as imported
    results += reconciler.advance_ledger_time("acme", (DAY + 4) * MICROSECONDS_PER_DAY, at)
    balance = sum(m.amount if m.direction is Direction.CREDIT else -m.amount for m in ledger)
    expected = synthetic.expected
    assert opening - balance == expected.balance_difference
    assert line_count == expected.lines
    lines_by_state = Counter(r.state.value for r in results for _ in r.line_ids)
    assert (
        lines_by_state
        == Counter({"matched": expected.lines_matched, "unmatched": expected.lines_unmatched})
        - Counter()
    )
    matched_movements = {m for r in results if r.state.value == "matched" for m in r.movement_ids}
    assert matched_movements == {m.movement_id for m in ledger} - set(
        expected.unmatched_movement_ids
    )
