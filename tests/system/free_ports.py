"""Free local ports for the metrics endpoints of pipeline processes started by tests."""

from __future__ import annotations

import os
import socket


def free_port_range(count: int) -> int:
    """A base port with ``count`` free consecutive ports above it (for the metrics endpoints)."""
    for base in range(31_000 + os.getpid() % 5_000 * 4, 65_000, count + 7):
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
    raise AssertionError("no free port range for the metrics endpoints")
