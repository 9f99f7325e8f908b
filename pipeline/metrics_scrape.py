"""Reading a child's ``/metrics`` from the supervisor: one bounded HTTP GET, summed samples.

Used by the status line (counters and lag gauges) and by the stall check (the processor's
loop heartbeat). A child that does not answer within ``timeout_s`` reads as ``None``.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 1.0


def scrape(url: str, *, timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[str, float] | None:
    """Sum of each sample name's values at ``url``; None if the child did not answer, or
    answered something that is not whole Prometheus text (a child killed mid-answer sends a
    short body: ``http.client.IncompleteRead``). Never raises: the supervisor calls it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            text = response.read().decode("utf-8", errors="replace")
        return sum_samples(text)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return None


def sum_samples(text: str) -> dict[str, float]:
    """Prometheus text → {sample name: sum over all label sets}."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals
