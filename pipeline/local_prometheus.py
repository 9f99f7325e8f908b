"""The local Prometheus for ``streamledger run --with-prometheus`` and the demo.

Prometheus is not a supervised child: it is the detached server of ``infra/prometheus_server.py``
(it keeps its TSDB between runs). ``observed_by_prometheus`` writes the scrape targets for the
children ``plan_children`` planned, starts the server before the pipeline and stops it after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from infra.prometheus_server import (
    LISTEN_HOST,
    ScrapeTargets,
    port_plan,
    start_prometheus,
    stop_prometheus,
)
from infra.service import ServiceReport
from pipeline.supervisor import RunSettings
from streamledger.settings import Settings


def scrape_targets(settings: Settings, run: RunSettings) -> ScrapeTargets:
    """The ports ``plan_children(settings, run)`` gives its children, per Prometheus job."""
    return port_plan(
        settings,
        processors=run.processors,
        projections=run.projections,
        verifiers=run.verifiers,
        api_port=run.api_port if run.api else None,
        supervisor=True,  # `streamledger run` serves its own /metrics after the children's
        notifiers=run.notifiers,
        reconcilers=run.reconcilers,
    )


def prometheus_url(settings: Settings) -> str:
    return f"http://{LISTEN_HOST}:{settings.prometheus_port}"


@contextmanager
def observed_by_prometheus(settings: Settings, run: RunSettings) -> Iterator[ServiceReport]:
    """Start (or keep) the local Prometheus scraping this run's children; stop it afterwards."""
    report = start_prometheus(settings, scrape_targets(settings, run))
    try:
        yield report
    finally:
        stop_prometheus(settings)
