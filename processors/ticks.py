"""Tick records: how a pending transfer expires on a partition where nobody writes.

A tick is a record on ``ledger.commands`` with key ``_tick`` and an empty value (no tenant can
be called ``_tick``: a tenant id starts with a letter or a digit). It carries only its
timestamp, which the broker stamps (``message.timestamp.type=LogAppendTime``). The processor
reads it like any command record: partition stream time moves to its timestamp and every pending
transfer due by then expires, effective at its own deadline (``ledger.decide_tick``). Because the
tick is in the log, a replay expires the same transfers at the same point: the log still decides
everything, and no wall clock enters the core.

Who writes ticks: the partition's owner, between batches, when the earliest pending deadline of
a partition is in the past by the wall clock and it has not ticked that partition for
``expiry_tick_interval_ms``. Extra ticks (two owners during a rebalance, a restart) are harmless:
a tick that finds nothing due changes nothing but stream time.
"""

from __future__ import annotations

from typing import Final

TICK_KEY: Final = b"_tick"
TICK_VALUE: Final = b""


def is_tick(key: bytes | None, value: bytes | None) -> bool:
    return key == TICK_KEY and value == TICK_VALUE


def partitions_to_tick(
    deadlines_us: dict[int, int | None],
    last_tick_us: dict[int, int],
    *,
    now_us: int,
    interval_us: int,
) -> list[int]:
    """The partitions whose earliest pending deadline has passed at ``now_us`` and which were not
    ticked within the last ``interval_us``, in partition order. Pure."""
    due = []
    for partition, deadline_us in sorted(deadlines_us.items()):
        if deadline_us is None or deadline_us > now_us:
            continue
        if now_us - last_tick_us.get(partition, -interval_us) < interval_us:
            continue
        due.append(partition)
    return due
