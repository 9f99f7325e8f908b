"""The per-tenant token bucket (processors.tenant_quotas, decision 0083): exact, by record time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.tenant_quotas import (
    MICROTOKENS_PER_TOKEN,
    Admitted,
    QuotaLimits,
    RateLimited,
    TenantQuotas,
    full_bucket,
    rate_limited_detail,
    take,
)

EXAMPLES = settings(max_examples=200, deadline=None)
T0_US = 1_700_000_000_000_000
limits_strategy = st.builds(
    QuotaLimits, commands_per_second=st.integers(1, 5_000), burst=st.integers(1, 50)
)
# gaps between a tenant's commands: mostly bursts (0-2 ms), sometimes pauses (up to 3 s)
gaps_us = st.lists(
    st.one_of(st.integers(0, 2_000), st.integers(0, 3_000_000)), min_size=1, max_size=300
)


def _times(gaps: list[int]) -> list[int]:
    times, now = [], T0_US
    for gap in gaps:
        now += gap
        times.append(now)
    return times


@EXAMPLES
@given(limits=limits_strategy, gaps=gaps_us)
def test_never_admits_more_than_burst_plus_rate_times_elapsed(
    limits: QuotaLimits, gaps: list[int]
) -> None:
    """In every window [t_i, t_j] of one tenant's commands, admitted <= burst + rate x elapsed
    (exactly, in integers)."""
    quotas = TenantQuotas(limits)
    times = _times(gaps)
    admitted = [isinstance(quotas.take("acme", at_us), Admitted) for at_us in times]
    for first in range(len(times)):
        count = 0
        for last in range(first, len(times)):
            count += admitted[last]
            allowed = limits.burst * MICROTOKENS_PER_TOKEN + limits.commands_per_second * (
                times[last] - times[first]
            )
            assert count * MICROTOKENS_PER_TOKEN <= allowed


@EXAMPLES
@given(limits=limits_strategy, flood=st.integers(1, 200))
def test_an_idle_tenant_refills_to_its_burst(limits: QuotaLimits, flood: int) -> None:
    """A tenant that emptied its bucket gets its whole burst again after burst / rate seconds
    of record time, and not a command more."""
    quotas = TenantQuotas(limits)
    for _ in range(flood):
        quotas.take("acme", T0_US)
    refill_us = -(-limits.burst * MICROTOKENS_PER_TOKEN // limits.commands_per_second)
    later_us = T0_US + refill_us
    verdicts = [quotas.take("acme", later_us) for _ in range(limits.burst + 1)]
    assert all(isinstance(verdict, Admitted) for verdict in verdicts[:-1])
    assert isinstance(verdicts[-1], RateLimited)


@EXAMPLES
@given(limits=limits_strategy, gaps=gaps_us)
def test_retry_after_is_exact(limits: QuotaLimits, gaps: list[int]) -> None:
    """A rate-limited command retried exactly ``retry_after_ms`` later gets the token; one
    millisecond earlier it would not (the retry-after is the least whole number of ms)."""
    bucket = full_bucket(limits, T0_US)
    for at_us in _times(gaps):
        before = bucket
        bucket, verdict = take(bucket, limits, at_us)
        if not isinstance(verdict, RateLimited):
            continue
        retry_after_us = verdict.retry_after_ms * 1_000
        assert verdict.retry_after_ms >= 1
        assert isinstance(take(before, limits, at_us + retry_after_us)[1], Admitted)
        if verdict.retry_after_ms > 1:
            early = take(before, limits, at_us + retry_after_us - 1_000)[1]
            assert isinstance(early, RateLimited)
        assert bucket.level < MICROTOKENS_PER_TOKEN  # a limited command took nothing


def test_one_tenants_flood_leaves_another_tenant_alone() -> None:
    quotas = TenantQuotas(QuotaLimits(commands_per_second=10, burst=5))
    flood = [quotas.take("loud", T0_US + offset) for offset in range(1_000)]
    assert sum(isinstance(verdict, Admitted) for verdict in flood) == 5
    quiet = [quotas.take("quiet", T0_US + 1_000 * n) for n in range(5)]
    assert all(isinstance(verdict, Admitted) for verdict in quiet)


def test_the_retry_after_and_its_detail() -> None:
    limits = QuotaLimits(commands_per_second=3, burst=1)
    quotas = TenantQuotas(limits)
    assert isinstance(quotas.take("acme", T0_US), Admitted)
    verdict = quotas.take("acme", T0_US + 100_000)  # 0.3 of a token back: 233,334 us to go
    assert verdict == RateLimited(retry_after_ms=234)
    assert rate_limited_detail(limits, 234) == (
        "tenant_id: rate limited: tenant over 3 commands/s (burst 1); retry after 234 ms"
    )
    assert isinstance(quotas.take("acme", T0_US + 100_000 + 234_000), Admitted)


def test_abort_gives_the_batch_tokens_back_and_commit_keeps_them() -> None:
    quotas = TenantQuotas(QuotaLimits(commands_per_second=1, burst=2))
    assert isinstance(quotas.take("acme", T0_US), Admitted)
    assert isinstance(quotas.take("acme", T0_US), Admitted)
    quotas.abort()  # the batch is read again: it must not pay twice
    assert isinstance(quotas.take("acme", T0_US), Admitted)
    quotas.commit()
    assert isinstance(quotas.take("acme", T0_US), Admitted)
    assert isinstance(quotas.take("acme", T0_US), RateLimited)


def test_commit_forgets_full_buckets() -> None:
    quotas = TenantQuotas(QuotaLimits(commands_per_second=1_000, burst=2))
    quotas.take("early", T0_US)
    quotas.commit()
    assert quotas.tenant_count == 1
    quotas.take("late", T0_US + 5_000)  # "early" has refilled by now
    quotas.commit()
    assert quotas.tenant_count == 1


def test_a_timestamp_that_goes_back_refills_nothing() -> None:
    limits = QuotaLimits(commands_per_second=1, burst=1)
    bucket, verdict = take(full_bucket(limits, T0_US), limits, T0_US)
    assert isinstance(verdict, Admitted)
    earlier, verdict = take(bucket, limits, T0_US - 10_000_000)
    assert verdict == RateLimited(retry_after_ms=1_000)
    assert earlier.updated_at_us == T0_US


def test_a_limit_of_zero_is_off_not_a_bucket() -> None:
    with pytest.raises(AssertionError):
        QuotaLimits(commands_per_second=0, burst=1)
