"""The supervisor's own Prometheus metrics (``streamledger run``), on a registry of its own.

Served on the port after the last child's (``docs/metrics.md``). Every label value is bounded:
``child`` is one of the planned children (at most ``PROCESSES_MAX`` per role), ``dependency``
one of ``kafka`` / ``postgresql``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from pipeline.dependencies import KAFKA, POSTGRESQL
from streamledger import __version__

PREFIX = "streamledger_supervisor_"
DEPENDENCIES = (KAFKA, POSTGRESQL)


class SupervisorMetrics:
    """Stalls, restarts and dependency waits of one supervisor."""

    def __init__(self, children: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("streamledger_build", "StreamLedger version", registry=r).info(
            {"version": __version__, "service": "supervisor"}
        )
        self.stalls = Counter(
            PREFIX + "stalls",
            "Children restarted because their heartbeat stopped moving for stall_timeout_s",
            ["child"],
            registry=r,
        )
        self.restarts = Counter(
            PREFIX + "restarts", "Children started again after they exited", ["child"], registry=r
        )
        self.children_up = Gauge(
            PREFIX + "children_up", "Children running and not stalled", registry=r
        )
        self.waiting = Gauge(
            PREFIX + "waiting_for_dependency",
            "1 while a child is not started because this dependency does not answer",
            ["dependency"],
            registry=r,
        )
        for child in children:  # every series exists at 0 from the first scrape
            self.stalls.labels(child)
            self.restarts.labels(child)
        for dependency in DEPENDENCIES:
            self.waiting.labels(dependency).set(0)
