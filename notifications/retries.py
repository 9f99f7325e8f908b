"""How long to wait before the next attempt of a failed delivery: bounded exponential backoff
with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"). Pure: the random
fraction is an argument, so a seeded test reproduces every wait."""

from __future__ import annotations


def retry_delay_s(failures: int, *, base_ms: int, max_ms: int, random_fraction: float) -> float:
    """The wait after the ``failures``-th consecutive failure (1 = the first).

    The ceiling doubles per failure from ``base_ms`` and stops at ``max_ms``; the wait is a
    uniform draw in [ceiling/2, ceiling] ("equal jitter"): never zero, so a dead receiver is not
    hammered, and spread so that many endpoints failing together do not retry in step."""
    assert failures >= 1, "a delay follows a failure"
    assert 0.0 <= random_fraction <= 1.0
    exponent = min(failures - 1, 32)  # 2**32 * base_ms is past any max_ms: no overflow
    ceiling_ms = min(base_ms << exponent, max_ms)
    return (ceiling_ms / 2 + random_fraction * ceiling_ms / 2) / 1000
