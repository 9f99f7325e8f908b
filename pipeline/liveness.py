"""Is a supervised child making progress? Pure: heartbeat readings in, verdicts out.

A processor's loop sets ``streamledger_processor_loop_heartbeat_timestamp_seconds`` at the top
of every iteration (at least every ``batch_interval_ms``, idle or not) and before each
partition's restore. The supervisor reads it every ``stall_check_interval_s`` and remembers,
on its own monotonic clock, when the value last *moved*. A child whose heartbeat has not moved
for ``stall_timeout_s`` is stalled, whatever the reason: a loop blocked in a librdkafka call, a
wedged interpreter, a ``SIGSTOP``-ed process, or a metrics endpoint that no longer answers.
The child's start counts as its first sign of life, so a child that never reports a heartbeat
(it hangs during start-up) is stalled ``stall_timeout_s`` after it was started. Comparing with
the supervisor's clock, never the child's timestamp, keeps the verdict free of clock steps.
(decision 0023)
"""

from __future__ import annotations

from dataclasses import dataclass

PROCESSOR_HEARTBEAT = "streamledger_processor_loop_heartbeat_timestamp_seconds"
PROJECTION_HEARTBEAT = "streamledger_projection_loop_heartbeat_timestamp_seconds"
NOTIFY_HEARTBEAT = "streamledger_notify_loop_heartbeat_timestamp_seconds"


@dataclass(frozen=True, slots=True)
class Progress:
    """The last heartbeat read from one child and when (supervisor clock) it last moved."""

    heartbeat: float | None
    moved_at: float


def started(now: float) -> Progress:
    """A child just started: that is its first sign of life."""
    return Progress(heartbeat=None, moved_at=now)


def observe(progress: Progress, heartbeat: float | None, now: float) -> Progress:
    """Fold one reading in: ``None`` (no answer, no heartbeat) or an unchanged value is no
    progress; any other value is."""
    if heartbeat is None or heartbeat == progress.heartbeat:
        return progress
    return Progress(heartbeat=heartbeat, moved_at=now)


def silent_s(progress: Progress, now: float) -> float:
    """Seconds since the child last showed progress."""
    return max(now - progress.moved_at, 0.0)


def is_stalled(progress: Progress, now: float, stall_timeout_s: float) -> bool:
    return silent_s(progress, now) >= stall_timeout_s
