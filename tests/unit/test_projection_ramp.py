"""The projection pipeline's ramp (decision 0111): a short first batch after the pipeline ran
dry, then each batch at most 1.5 times the one being written, never above batch_records_max."""

from __future__ import annotations

import gc
import sys

import pytest

from projections.sink import (
    GC_THRESHOLDS,
    PIPELINE_RAMP_DIVISOR,
    THREAD_SWITCH_INTERVAL_S,
    ramp_records_max,
    tune_interpreter,
)


def test_the_first_batch_after_a_dry_pipeline_is_short() -> None:
    assert ramp_records_max(10_000, None) == 10_000 // PIPELINE_RAMP_DIVISOR
    assert ramp_records_max(5, None) == 1  # never zero


def test_batches_grow_to_the_maximum_and_stay_there() -> None:
    sizes = [ramp_records_max(10_000, None)]
    while sizes[-1] < 10_000:
        sizes.append(ramp_records_max(10_000, sizes[-1]))
    assert sizes == [1_250, 1_875, 2_812, 4_218, 6_327, 9_490, 10_000]
    assert ramp_records_max(10_000, 10_000) == 10_000


def test_a_trickle_may_still_take_the_first_batch_size() -> None:
    assert ramp_records_max(10_000, 3) == 1_250


def test_the_interpreter_hands_the_writer_the_gil_back_promptly() -> None:
    """``tune_interpreter`` (decision 0119): the writer thread waits at most the short switch
    interval for the GIL after each round trip to PostgreSQL, not CPython's 5 ms."""
    switch_interval_s, thresholds = sys.getswitchinterval(), gc.get_threshold()
    try:
        tune_interpreter()
        assert sys.getswitchinterval() == pytest.approx(THREAD_SWITCH_INTERVAL_S)
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        sys.setswitchinterval(switch_interval_s)
        gc.set_threshold(*thresholds)
