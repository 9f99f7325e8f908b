"""Per-tenant token buckets of one partition: one tenant's flood cannot starve the others.

Pure (no clock, no I/O): time is the command records' timestamps in microseconds (LogAppendTime,
monotonic per partition), so a backlog read late is judged by when it arrived, and a tenant's
bucket depends only on its own commands (decision 0083). A bucket starts full with ``burst``
tokens and refills at ``rate`` tokens per second of record time, up to ``burst``; a command that
would be decided fresh takes one token, and one that finds none is rate limited with the exact
time until the next token.

Exact integer arithmetic: a bucket's level is counted in *micro-tokens* (one token =
``MICROTOKENS_PER_TOKEN``), and one microsecond of record time adds ``rate`` of them, so nothing
rounds until the retry-after is rounded **up** to whole milliseconds.

The table follows the Kafka transaction like the ledger state: what a batch took is staged and
becomes the committed level on ``commit``, or is dropped on ``abort`` (the batch is read again,
and must not pay twice). A full bucket is the same as none, so ``commit`` forgets full buckets:
memory holds only the tenants that spent tokens in the last ``burst / rate`` seconds. After a
restart or a rebalance the buckets start full: at most one extra burst per restore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

MICROTOKENS_PER_TOKEN: Final = 1_000_000  # = microseconds per second: rate x elapsed_us is exact
MICROSECONDS_PER_MILLISECOND: Final = 1_000


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A tenant's command rate: ``commands_per_second`` tokens per second, at most ``burst``."""

    commands_per_second: int
    burst: int

    def __post_init__(self) -> None:
        assert self.commands_per_second >= 1, "a limit of 0 means off: build no TenantQuotas"
        assert self.burst >= 1, "a bucket must hold at least one token"


class Bucket(NamedTuple):
    """A tenant's bucket as of ``updated_at_us``."""

    level: int  # micro-tokens, 0 .. burst x MICROTOKENS_PER_TOKEN
    updated_at_us: int


class Admitted(NamedTuple):
    """The command took a token."""


class RateLimited(NamedTuple):
    """No token: retry after ``retry_after_ms`` of record time (>= 1), when one has refilled."""

    retry_after_ms: int


Verdict = Admitted | RateLimited
ADMITTED: Final = Admitted()


def refilled(bucket: Bucket, limits: QuotaLimits, now_us: int) -> Bucket:
    """The bucket at ``now_us``: refilled by the record time since its update, capped at burst.
    A timestamp before the update (never with LogAppendTime) refills nothing."""
    elapsed_us = max(0, now_us - bucket.updated_at_us)
    capacity = limits.burst * MICROTOKENS_PER_TOKEN
    level = min(capacity, bucket.level + limits.commands_per_second * elapsed_us)
    return Bucket(level, max(now_us, bucket.updated_at_us))


def full_bucket(limits: QuotaLimits, now_us: int) -> Bucket:
    return Bucket(limits.burst * MICROTOKENS_PER_TOKEN, now_us)


def take(bucket: Bucket, limits: QuotaLimits, now_us: int) -> tuple[Bucket, Verdict]:
    """Take one token at ``now_us``: the bucket after, and whether the command may proceed.
    A rate-limited command takes nothing (retrying never digs the hole deeper)."""
    current = refilled(bucket, limits, now_us)
    if current.level >= MICROTOKENS_PER_TOKEN:
        return Bucket(current.level - MICROTOKENS_PER_TOKEN, current.updated_at_us), ADMITTED
    missing = MICROTOKENS_PER_TOKEN - current.level
    wait_us = -(-missing // limits.commands_per_second)  # ceiling: the first whole microsecond
    return current, RateLimited(-(-wait_us // MICROSECONDS_PER_MILLISECOND))


class TenantQuotas:
    """The buckets of one partition's tenants, committed and staged with the batch."""

    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits
        self._committed: dict[str, Bucket] = {}
        self._staged: dict[str, Bucket] = {}
        self._latest_us = 0  # the latest record time seen: what ``commit`` forgets full buckets by

    def take(self, tenant_id: str, now_us: int) -> Verdict:
        """One command of ``tenant_id`` at record time ``now_us`` that would be decided fresh."""
        bucket = self._staged.get(tenant_id)
        if bucket is None:
            bucket = self._committed.get(tenant_id) or full_bucket(self.limits, now_us)
        after, verdict = take(bucket, self.limits, now_us)
        self._staged[tenant_id] = after
        self._latest_us = max(self._latest_us, now_us)
        return verdict

    def commit(self) -> None:
        """The batch committed: its buckets are the committed ones; full buckets are forgotten
        (a missing bucket starts full), so the table holds only tenants still refilling."""
        committed = self._committed
        committed.update(self._staged)
        self._staged = {}
        capacity = self.limits.burst * MICROTOKENS_PER_TOKEN
        latest_us = self._latest_us
        full = [
            tenant_id
            for tenant_id, bucket in committed.items()
            if refilled(bucket, self.limits, latest_us).level == capacity
        ]
        for tenant_id in full:
            del committed[tenant_id]

    def abort(self) -> None:
        """The batch aborted and will be read again: what it took is given back."""
        self._staged = {}

    @property
    def tenant_count(self) -> int:
        """Tenants with a bucket that is not full (committed or staged)."""
        return len(self._committed.keys() | self._staged.keys())


def rate_limited_detail(limits: QuotaLimits, retry_after_ms: int) -> str:
    """The ``detail`` of a ``RATE_LIMITED`` reply (it names ``tenant_id``, as every detail
    starts with the field it names)."""
    return (
        f"tenant_id: rate limited: tenant over {limits.commands_per_second} commands/s"
        f" (burst {limits.burst}); retry after {retry_after_ms} ms"
    )
