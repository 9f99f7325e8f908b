"""``bench.reports_suite`` at a tiny size on the test stack: the fill is consistent (the
statement's opening + entries = closing, every trial balance nets to zero, each searched
``order_id`` is found, all checked by the product's own code) and every figure is measured."""

from __future__ import annotations

from bench import reports_suite
from bench.results import BenchRun
from streamledger.settings import Settings

TINY = reports_suite.ReportsSize(
    statement_entries=3_000, trial_accounts=300, search_transfers=5_000, repeats=5, trial_repeats=2
)


def test_the_reports_bench_fills_consistent_rows_and_times_the_real_reads(
    stack_settings: Settings,
) -> None:
    run = BenchRun(size="tiny", seed=19, repetitions=1)
    said: list[str] = []
    reports_suite.run_reports(run, stack_settings, size_name="small", say=said.append, size=TINY)
    figures = [figure for figure in run.figures if figure.group == "reports"]
    assert len(figures) == 4
    assert all(len(figure.values) == 1 and figure.values[0] > 0 for figure in figures)
    assert all("load" in figure.note for figure in figures)
    assert [figure.note.startswith("target") for figure in figures] == [True, True, True, False]
    assert run.sizes["reports_search_transfers"] == TINY.search_transfers
    assert len(said) == 5  # one line per filled part
