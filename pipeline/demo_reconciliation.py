"""The demo's reconciliation (issue 20 §4): a synthetic camt.053 statement of a tenant's
``funding`` account, imported, matched, and the summary of ``streamledger reconcile report``.

The statement is the bank's view of the account's movements in ``ledger.events``
(``reconciliation.synthetic_statement``, seeded by the demo's seed): a few movements missing,
two booked with a wrong amount, three entries the ledger never booked. It is imported with the
importer of ``streamledger statements import`` (decision 0052) and matched by a matcher run in
this process with a date window of 0 days, so every item is decided as soon as the statement is
read (the pipeline's own matchers, under ``run --reconcilers``, keep the 2-day default). The
demo checks that the summary finds exactly the perturbations and that the balance check's
difference is their net amount.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pipeline.topic_reader import committed_offsets, end_offsets
from reconciliation.importer import ImportStatus, import_statement, terms_of
from reconciliation.matcher import Matcher
from reconciliation.matcher_settings import MatcherSettings
from reconciliation.metrics import ReconcilerMetrics
from reconciliation.report import ReconciliationReport, render
from reconciliation.report_reading import account_movements, load_report
from reconciliation.statement import StatementFormat, StatementRejected
from reconciliation.synthetic_statement import Expected, SyntheticStatement, synthetic_camt053
from schemas.topics import EVENTS_TOPIC
from streamledger.settings import Settings

MIRROR_ACCOUNT: Final = "funding"  # loadgen's account every customer is funded from
DEMO_IBAN: Final = "DE00STREAMLEDGERDEMO0000"
MATCHED_TIMEOUT_S: Final = 180.0  # the matcher restores its partitions, then decides
POLL_S: Final = 2.0
STOP_TIMEOUT_S: Final = 30.0
EVENTS_READ_TIMEOUT_S: Final = 60.0  # the matcher reads the ledger's events before the statement
EVENTS_READ_POLL_S: Final = 0.5


@dataclass
class MatcherThread:
    """The demo's matcher: ``streamledger reconcile`` with a 0-day window, in a thread."""

    settings: Settings

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        matcher_settings = MatcherSettings(instance_id="demo", date_window_days=0, batch_wait_ms=50)
        self.matcher = Matcher(self.settings, matcher_settings, ReconcilerMetrics())
        self.thread = threading.Thread(target=self._run, name="demo-matcher", daemon=True)

    def _run(self) -> None:
        try:
            self.matcher.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the step, never lost
            self.failure = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(STOP_TIMEOUT_S)


def decided(report: ReconciliationReport, movements: int) -> bool:
    return (
        report.lines_by_state.get("open", 0) == 0
        and sum(report.movements_by_state.values()) >= movements
    )


def expected_lines(report: ReconciliationReport, expected: Expected) -> tuple[bool, list[str]]:
    found = (
        report.lines,
        report.lines_by_state.get("matched", 0),
        report.lines_by_state.get("unmatched", 0),
        report.movements_by_state.get("matched", 0),
        report.movements_by_state.get("unmatched", 0),
        None if report.balance_check is None else report.balance_check.difference,
    )
    wanted = (
        expected.lines,
        expected.lines_matched,
        expected.lines_unmatched,
        expected.movements_matched,
        expected.movements_unmatched,
        expected.balance_difference,
    )
    ok = found == wanted
    return ok, [
        f"    expected from the perturbations: {expected.lines} lines, {expected.lines_matched}"
        f" matched, {expected.lines_unmatched} lines and {expected.movements_unmatched}"
        f" movements unmatched, balance difference {expected.balance_difference}:"
        f" {'ok' if ok else f'MISMATCH (found {found})'}"
    ]


def reconciliation_lines(
    settings: Settings, tenant_id: str, *, seed: int
) -> tuple[bool, list[str]]:
    """Import, match and summarize; (ok, the lines to print)."""
    movements = account_movements(settings, tenant_id=tenant_id, account_id=MIRROR_ACCOUNT)
    if not movements:
        return False, [f"    {tenant_id}/{MIRROR_ACCOUNT} has no posted movement to reconcile"]
    terms = terms_of(settings, tenant_id, MIRROR_ACCOUNT)
    assert not isinstance(terms, StatementRejected), terms
    synthetic = synthetic_camt053(
        movements, iban=DEMO_IBAN, currency=terms.currency, asset_scale=terms.asset_scale,
        rng=random.Random(seed),  # noqa: S311 - a reproducible workload, not secrets
    )  # fmt: skip
    matcher = MatcherThread(settings)
    matcher.thread.start()
    try:
        return matched_lines(settings, tenant_id, movements, synthetic, matcher)
    finally:
        matcher.close()


def matched_lines(
    settings: Settings,
    tenant_id: str,
    movements: Sequence[object],
    synthetic: SyntheticStatement,
    matcher: MatcherThread,
) -> tuple[bool, list[str]]:
    """The statement imported once the matcher has read every event, then the matcher's summary.

    The bank's statement follows the ledger's day, so a matcher holds the day's movements open
    when its lines arrive. A fresh matcher reading both topics from the start would otherwise
    interleave them as fetched, and a sum rule could pair a line with movements the statement
    lacks before the line's own movement is read: a different summary from run to run."""
    events_read = wait_events_read(settings, matcher)
    imported = import_statement(
        settings, tenant_id=tenant_id, account_id=MIRROR_ACCOUNT, content=synthetic.content,
        statement_format=StatementFormat.CAMT053, bank_account=None,
        imported_at_us=time.time_ns() // 1000,
    )  # fmt: skip
    lines = [
        f"    statement of {len(movements)} ledger movements on {tenant_id}/{MIRROR_ACCOUNT}:"
        f" {imported.summary()}"
    ]
    if not events_read:
        lines.append(
            f"    the matcher had not read every event after {EVENTS_READ_TIMEOUT_S:.0f} s"
        )
    if imported.status is not ImportStatus.IMPORTED:
        return False, lines
    report = wait_decided(settings, tenant_id, len(movements), matcher)
    if report is None:
        return False, [*lines, "    the matcher did not decide every item in time"]
    ok, expected = expected_lines(report, synthetic.expected)
    summary = [f"    {row}" for row in render(report).splitlines()]
    command = f"streamledger reconcile report --tenant {tenant_id} --account {MIRROR_ACCOUNT}"
    return ok, [*lines, *summary, *expected, f"    the same summary: {command}"]


def wait_events_read(settings: Settings, matcher: MatcherThread) -> bool:
    """Until the matcher's committed position on ``ledger.events`` reaches what is there now
    (a processor's transaction ends with a marker, so one short of the end is the end), bounded."""
    topic = settings.topic(EVENTS_TOPIC)
    ends = end_offsets(settings, topic)
    group = matcher.matcher.matcher_settings.group_id(settings.topic_prefix)
    deadline = time.monotonic() + EVENTS_READ_TIMEOUT_S
    while time.monotonic() < deadline and matcher.failure is None:
        committed = committed_offsets(settings, group, topic)
        if all(end == 0 or committed.get(number, -1) >= end - 1 for number, end in ends.items()):
            return True
        time.sleep(EVENTS_READ_POLL_S)
    return False


def wait_decided(
    settings: Settings, tenant_id: str, movements: int, matcher: MatcherThread
) -> ReconciliationReport | None:
    deadline = time.monotonic() + MATCHED_TIMEOUT_S
    while time.monotonic() < deadline and matcher.failure is None:
        report = load_report(
            settings, tenant_id=tenant_id, account_id=MIRROR_ACCOUNT, from_days=None, to_days=None
        )
        if decided(report, movements):
            return report
        time.sleep(POLL_S)
    if matcher.failure is not None:
        raise matcher.failure
    return None
