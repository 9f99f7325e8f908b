"""Free local ports for the metrics endpoints of pipeline processes started by tests.

The ports are searched in ``STREAMLEDGER_TEST_FREE_PORTS`` (``MIN-MAX``, default
``10000-15000``), so two test runs on one machine can be given ranges that do not meet.
"""

from __future__ import annotations

import os
import socket

FREE_PORTS_VARIABLE = "STREAMLEDGER_TEST_FREE_PORTS"
FREE_PORTS_DEFAULT = (10_000, 15_000)
PROCESS_SPREAD = 5_000  # different test processes start their search at different places


def free_port_bounds(text: str | None = None) -> tuple[int, int]:
    """(lowest, highest) port to search; a bad ``STREAMLEDGER_TEST_FREE_PORTS`` names itself."""
    text = os.environ.get(FREE_PORTS_VARIABLE, "") if text is None else text
    if not text.strip():
        return FREE_PORTS_DEFAULT
    low, separator, high = text.strip().partition("-")
    if not (separator and low.isdigit() and high.isdigit() and 1 <= int(low) < int(high) <= 65_535):
        raise ValueError(f"{FREE_PORTS_VARIABLE}={text!r}: expected MIN-MAX, e.g. 10000-15000")
    return int(low), int(high)


def free_port_range(count: int) -> int:
    """A base port with ``count`` free consecutive ports above it (for the metrics endpoints)."""
    low, high = free_port_bounds()
    spread = max((high - low) // 4 - count, 1)
    start = low + os.getpid() % min(PROCESS_SPREAD, spread) * 4
    bases: list[int] = [*range(start, high - count, count + 7), *range(low, start, count + 7)]
    for base in bases:
        sockets = []
        try:
            for port in range(base, base + count):
                candidate = socket.socket()
                sockets.append(candidate)
                candidate.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for candidate in sockets:
                candidate.close()
    raise AssertionError(
        f"no {count} free consecutive ports in {low}-{high} ({FREE_PORTS_VARIABLE})"
    )
