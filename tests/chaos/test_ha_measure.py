"""The arithmetic of ``make chaos-ha`` (tests/chaos/ha_measure.py): no stack needed."""

from __future__ import annotations

import pytest

from tests.chaos.ha import parse_arguments
from tests.chaos.ha_measure import (
    Sample,
    longest_failing,
    longest_stall,
    percentile,
    window_figures,
)


def test_a_steadily_rising_value_has_no_stall_longer_than_its_sampling():
    points = [(at / 4, at * 10) for at in range(40)]
    assert longest_stall(points, 2.0, 9.0) == pytest.approx(0.25)


def test_a_stall_counts_from_the_last_rise_before_the_fault_to_the_next_rise():
    points = [(0.0, 1), (1.0, 2), (2.0, None), (3.0, 2), (4.0, None), (5.5, 3), (6.0, 4)]
    assert longest_stall(points, 1.5, 8.0) == pytest.approx(4.5)  # 1.0 -> 5.5


def test_a_value_that_never_rises_again_stalls_to_the_end_of_the_window():
    points = [(0.0, 5), (1.0, 6), (2.0, 6), (3.0, None)]
    assert longest_stall(points, 1.5, 10.0) == pytest.approx(9.0)


def test_no_answer_at_all_is_a_stall_of_the_whole_window():
    assert longest_stall([(1.0, None), (2.0, None)], 0.5, 4.5) == pytest.approx(4.0)


def test_failing_reads_are_measured_as_the_longest_consecutive_stretch():
    samples = [
        Sample(at, 0, 0, None, ok)
        for at, ok in [(0.0, True), (1.0, False), (2.0, False), (3.0, True), (4.0, False)]
    ]
    assert longest_failing(samples, 0.0, 5.0) == pytest.approx(2.0)
    assert longest_failing(samples, 0.0, 3.5) == pytest.approx(2.0)
    assert longest_failing(samples[:1], 0.0, 5.0) == 0.0


def test_percentile_is_nearest_rank():
    assert percentile([], 0.99) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(value) for value in range(1, 101)], 0.99) == 99.0


def test_window_figures_use_only_the_window_for_ages_and_reads():
    samples = [Sample(float(at), at, at, float(at % 3), at != 5) for at in range(10)]
    figures = window_figures(samples, 2.0, 7.0)
    assert figures.seconds == 5.0
    assert figures.committed_stall_s == pytest.approx(1.0)
    assert figures.api_failing_s == pytest.approx(1.0)
    assert figures.head_age_p99_s == 2.0
    assert "no committed progress 1.0 s" in figures.line()


def test_the_options_are_bounded():
    assert parse_arguments([]).rate == 250
    with pytest.raises(SystemExit):
        parse_arguments(["--rate", "1"])
