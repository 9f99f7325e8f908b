"""The projection pipeline's ramp (decision 0111): a short first batch after the pipeline ran
dry, then each batch at most 1.5 times the one being written, never above batch_records_max."""

from __future__ import annotations

from projections.sink import PIPELINE_RAMP_DIVISOR, ramp_records_max


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
