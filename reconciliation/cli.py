"""``streamledger statements import`` and ``streamledger reconcile`` (issue 20)."""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reconciliation.amounts import date_days, iso_date
from reconciliation.camt054 import xml_format
from reconciliation.importer import (
    ImportStatus,
    import_statement,
    request_manual_match,
    terms_of,
)
from reconciliation.manual_match import RequestProblem, manual_match_request
from reconciliation.matcher import Matcher
from reconciliation.matcher_settings import MatcherSettings
from reconciliation.metrics import ReconcilerMetrics, ReconciliationProjectionMetrics
from reconciliation.projection import ReconciliationProjection
from reconciliation.report import render
from reconciliation.report_reading import account_movements, load_report
from reconciliation.statement import StatementFormat, StatementRejected
from reconciliation.synthetic_statement import (
    EXTRA_DEFAULT,
    LATE_DAYS_DEFAULT,
    LATE_DEFAULT,
    MISMATCHED_DEFAULT,
    MISSING_SHARE_DEFAULT,
    Expected,
    synthetic_bai2,
    synthetic_camt053,
)
from reconciliation.unmatch import prepared_match, prepared_unmatch
from streamledger.cli_parser import (
    EXIT_FAILURE,
    EXIT_OK,
    add_declared_arguments,
    given_settings,
)
from streamledger.errors import SettingError
from streamledger.metrics_endpoint import MetricsEndpoint
from streamledger.setting_fields import build_declared
from streamledger.settings import Settings

if TYPE_CHECKING:
    from streamledger.cli_parser import Subparsers

DEST_PREFIX: Final = "reconcile_"
FORMATS_BY_SUFFIX: Final = {
    ".xml": StatementFormat.CAMT053,
    ".csv": StatementFormat.CSV,
    ".bai": StatementFormat.BAI2,
    ".bai2": StatementFormat.BAI2,
}
FORMATS_BY_NAME: Final = {
    "camt053": StatementFormat.CAMT053,
    "camt054": StatementFormat.CAMT054,
    "csv": StatementFormat.CSV,
    "bai2": StatementFormat.BAI2,
}
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SYNTHETIC_IBAN: Final = "DE00STREAMLEDGERSYNTHETIC"
SYNTHETIC_BAI2_ACCOUNT: Final = "4000000001"
SYNTHETIC_FORMATS: Final = ("camt053", "bai2")
PERTURBATIONS_MAX: Final = 10_000  # wrong-amount, extra or late entries asked for
LATE_DAYS_MAX: Final = 366


def register(subparsers: Subparsers) -> None:
    statements = subparsers.add_parser("statements", help="bank statements (reconciliation)")
    parts = statements.add_subparsers(dest="statements_command", metavar="ACTION", required=True)
    importing = parts.add_parser(
        "import",
        help="import a bank statement file onto ledger.statements (once; all or nothing)",
        description=(
            "Parse a camt.053 statement, camt.054 notification, BAI2 or CSV statement"
            " (docs/reconciliation.md) for a bank-mirror"
            " account and write each booked line as a StatementLine record. The same file twice"
            " imports nothing; a malformed file is refused whole, naming the element or line."
        ),
    )
    importing.add_argument("file", type=Path, metavar="FILE")
    importing.add_argument("--tenant", required=True, help="the tenant")
    importing.add_argument("--account", required=True, help="the ledger's bank-mirror account")
    importing.add_argument(
        "--format",
        choices=sorted(FORMATS_BY_NAME),
        help="the file's format (default from its suffix: .xml camt053 or camt054 by its"
        " namespace, .csv csv, .bai/.bai2 bai2)",
    )
    importing.add_argument(
        "--bank-account",
        help="the IBAN / account number of the statement to take from a multi-account file",
    )
    importing.set_defaults(handler=run_import)
    matching = parts.add_parser(
        "match",
        help="match statement lines with ledger movements by hand, open or unmatched (audited)",
        description=(
            "Write a ManualMatch record to ledger.statements; the matcher decides the items as"
            " matched (rule manual) if every one is still open or currently unmatched (its"
            " unmatched result is superseded, decision 0106), else writes a ManualRefusal"
            " naming the request and the reason (decision 0107). Matched or mismatched items"
            " need an unmatch first."
        ),
    )
    matching.add_argument("--tenant", required=True, help="the tenant")
    matching.add_argument("--account", required=True, help="the bank-mirror account")
    matching.add_argument("--line", action="append", required=True, help="a line id (repeat)")
    matching.add_argument(
        "--movement", action="append", required=True, help="a movement id {tenant}:{seq}#{n}"
    )
    matching.add_argument("--actor", required=True, help="who matches them")
    matching.add_argument("--note", default="", help="why")
    matching.set_defaults(handler=run_manual_match)
    unmatching = parts.add_parser(
        "unmatch",
        help="undo a decided match by hand (an audited record; the items end unmatched)",
        description=(
            "Check the result (PARTITION:OFFSET on ledger.reconciliation, the API's result_id)"
            " is a current match or mismatch of the account and write a ManualUnmatch record to"
            " ledger.statements; the matcher writes an unmatched result (rule manual, reason"
            " manual_unmatch) naming the same items, which supersedes it."
        ),
    )
    unmatching.add_argument("--tenant", required=True, help="the tenant")
    unmatching.add_argument("--account", required=True, help="the bank-mirror account")
    unmatching.add_argument("--result", required=True, help="the result id PARTITION:OFFSET")
    unmatching.add_argument("--actor", required=True, help="who unmatches it")
    unmatching.add_argument("--note", default="", help="why")
    unmatching.set_defaults(handler=run_manual_unmatch)
    register_synthesize(parts)
    reconcile = subparsers.add_parser(
        "reconcile",
        help="run the reconciliation matcher (statement lines against ledger movements)",
        description=(
            "Consume ledger.statements and ledger.events, match lines with movements on each"
            " bank-mirror account, and write every final state to ledger.reconciliation in one"
            " Kafka transaction per batch with the input offsets."
        ),
    )
    reconcile.add_argument(
        "action",
        nargs="?",
        choices=("run", "report", "project"),
        default="run",
        help=(
            "run the matcher (default), print a report of one account (--tenant, --account), or"
            " project statements and results into PostgreSQL (decision 0074)"
        ),
    )
    report = reconcile.add_argument_group("report")
    report.add_argument("--tenant", help="report: the tenant")
    report.add_argument("--account", help="report: the bank-mirror account")
    report.add_argument("--from", dest="from_date", help="report: first booking date, YYYY-MM-DD")
    report.add_argument("--to", dest="to_date", help="report: last booking date, YYYY-MM-DD")
    add_declared_arguments(reconcile, MatcherSettings, dest_prefix=DEST_PREFIX)
    reconcile.set_defaults(handler=run_reconcile)


def statement_format(arguments: argparse.Namespace, content: bytes) -> StatementFormat:
    """--format, else the suffix's; an .xml file is camt.053 or camt.054 by its namespace."""
    if arguments.format is not None:
        return FORMATS_BY_NAME[arguments.format]
    found = FORMATS_BY_SUFFIX.get(arguments.file.suffix.lower())
    if found is None:
        raise SettingError(
            f"{arguments.file}: unknown suffix, give --format camt053, camt054, bai2 or csv"
        )
    return xml_format(content) if found is StatementFormat.CAMT053 else found


def run_manual_match(arguments: argparse.Namespace, settings: Settings) -> int:
    request = manual_match_request(
        tenant_id=arguments.tenant,
        account_id=arguments.account,
        line_ids=arguments.line,
        movement_ids=arguments.movement,
        actor=arguments.actor,
        note=arguments.note,
        requested_at_us=time.time_ns() // 1000,
    )
    if not isinstance(request, RequestProblem):
        request = prepared_match(settings, request)
    if isinstance(request, RequestProblem):
        sys.stderr.write(f"refused: {request.message()}\n")
        return EXIT_FAILURE
    position = request_manual_match(settings, request)
    sys.stdout.write(
        f"manual match of {len(request.line_ids)} lines and {len(request.movement_ids)}"
        f" movements written at ledger.statements {position}; the matcher decides it"
        " (see ledger.reconciliation)\n"
    )
    return EXIT_OK


def run_manual_unmatch(arguments: argparse.Namespace, settings: Settings) -> int:
    request = prepared_unmatch(
        settings,
        tenant_id=arguments.tenant,
        account_id=arguments.account,
        result_id=arguments.result,
        actor=arguments.actor,
        note=arguments.note,
        requested_at_us=time.time_ns() // 1000,
    )
    if isinstance(request, RequestProblem):
        sys.stderr.write(f"refused: {request.message()}\n")
        return EXIT_FAILURE
    position = request_manual_match(settings, request)
    sys.stdout.write(
        f"manual unmatch of result {request.result_id} ({len(request.line_ids)} lines,"
        f" {len(request.movement_ids)} movements) written at ledger.statements {position};"
        " the matcher decides it\n"
    )
    return EXIT_OK


def run_import(arguments: argparse.Namespace, settings: Settings) -> int:
    content = arguments.file.read_bytes()
    report = import_statement(
        settings,
        tenant_id=arguments.tenant,
        account_id=arguments.account,
        content=content,
        statement_format=statement_format(arguments, content),
        bank_account=arguments.bank_account,
        imported_at_us=time.time_ns() // 1000,
    )
    if report.status is ImportStatus.REJECTED:
        sys.stderr.write(f"streamledger: {arguments.file}: {report.summary()}\n")
        return EXIT_FAILURE
    sys.stdout.write(f"{arguments.file}: {report.summary()}\n")
    return EXIT_OK


def report_day(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    days = date_days(text)
    if isinstance(days, str):
        raise SettingError(f"{flag}: {days}")
    return days


def run_report(arguments: argparse.Namespace, settings: Settings) -> int:
    if not arguments.tenant or not arguments.account:
        raise SettingError("reconcile report needs --tenant and --account")
    report = load_report(
        settings,
        tenant_id=arguments.tenant,
        account_id=arguments.account,
        from_days=report_day(arguments.from_date, "--from"),
        to_days=report_day(arguments.to_date, "--to"),
    )
    sys.stdout.write(render(report))
    return EXIT_OK


def run_reconcile(arguments: argparse.Namespace, settings: Settings) -> int:
    if arguments.action == "report":
        return run_report(arguments, settings)
    given = given_settings(arguments, MatcherSettings, dest_prefix=DEST_PREFIX)
    matcher_settings = build_declared(MatcherSettings, given)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    stop = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, frame: stop.set())
    if arguments.action == "project":
        return run_projection(settings, matcher_settings, stop)
    metrics = ReconcilerMetrics()
    endpoint = None
    if matcher_settings.metrics_port:
        endpoint = MetricsEndpoint(
            metrics.registry,
            lambda: metrics.is_ready,
            matcher_settings.metrics_port,
            host=settings.metrics_host,
        )
        endpoint.start()
    matcher = Matcher(settings, matcher_settings, metrics)
    logging.getLogger("streamledger.reconciler").info(
        "matcher %s starting (group %s)",
        matcher_settings.instance_id,
        matcher_settings.group_id(settings.topic_prefix),
    )
    try:
        matcher.run(stop)
    finally:
        if endpoint is not None:
            endpoint.stop()
    return EXIT_OK


def run_projection(
    settings: Settings, matcher_settings: MatcherSettings, stop: threading.Event
) -> int:
    """The PostgreSQL projection of the reconciliation topics; its batches are bounded by the
    matcher's ``--batch-records-max`` and ``--batch-wait-ms``, its metrics on ``--metrics-port``."""
    metrics = ReconciliationProjectionMetrics()
    endpoint = None
    if matcher_settings.metrics_port:
        endpoint = MetricsEndpoint(
            metrics.registry,
            lambda: metrics.is_ready,
            matcher_settings.metrics_port,
            host=settings.metrics_host,
        )
        endpoint.start()
    projection = ReconciliationProjection(
        settings,
        batch_records_max=matcher_settings.batch_records_max,
        batch_wait_ms=matcher_settings.batch_wait_ms,
        metrics=metrics,
    )
    logging.getLogger("streamledger.reconciliation.projection").info("projection starting")
    try:
        projection.run(stop)
    finally:
        if endpoint is not None:
            endpoint.stop()
    return EXIT_OK


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in [0, 1)")
    return value


def perturbations(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= PERTURBATIONS_MAX):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number in 0..{PERTURBATIONS_MAX}"
        )
    return int(text)


def late_days(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= LATE_DAYS_MAX):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in 1..{LATE_DAYS_MAX}")
    return int(text)


def add_perturbation_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The synthetic statement's perturbation flags (``statements synthesize``, and ``loadgen
    --statement`` through ``pipeline.loadgen_statement``)."""
    parser.add_argument(
        "--missing-share", type=share, default=MISSING_SHARE_DEFAULT,
        help="fraction of the movements the bank never booked, 0..0.99"
        f" (default {MISSING_SHARE_DEFAULT})",
    )  # fmt: skip
    parser.add_argument(
        "--mismatched", type=perturbations, default=MISMATCHED_DEFAULT,
        help=f"movements booked one minor unit higher, a day early, 0..{PERTURBATIONS_MAX}",
    )  # fmt: skip
    parser.add_argument(
        "--extra", type=perturbations, default=EXTRA_DEFAULT,
        help=f"entries the ledger never booked, 0..{PERTURBATIONS_MAX}",
    )  # fmt: skip
    parser.add_argument(
        "--late", type=perturbations, default=LATE_DEFAULT,
        help=f"movements the bank booked --late-days later, 0..{PERTURBATIONS_MAX}"
        f" (default {LATE_DEFAULT})",
    )  # fmt: skip
    parser.add_argument(
        "--late-days", type=late_days, default=LATE_DAYS_DEFAULT,
        help=f"how many days later a late entry is booked, 1..{LATE_DAYS_MAX}"
        f" (default {LATE_DAYS_DEFAULT}: unmatched by a 0-day window)",
    )  # fmt: skip


def register_synthesize(parts: Subparsers) -> None:
    synthesize = parts.add_parser(
        "synthesize",
        help="write a synthetic camt.053 or BAI2 statement of an account's ledger movements",
        description=(
            "The bank's view of the account's posted movements on ledger.events, with seeded"
            " perturbations: a share missing, some booked one minor unit higher a day early,"
            " some the ledger never booked, some booked late. Opening balance 0, closing = the"
            " entries. Import it with `statements import`; `reconcile report` must show what"
            " this prints. BAI2 books one day per file: --format bai2 writes OUTPUT's name +"
            " -YYYY-MM-DD per day of the period (import them in day order)."
        ),
    )
    synthesize.add_argument(
        "--format", choices=SYNTHETIC_FORMATS, default="camt053",
        help="camt053 (one file, default) or bai2 (one file per day)",
    )  # fmt: skip
    synthesize.add_argument("--tenant", required=True, help="the tenant")
    synthesize.add_argument("--account", required=True, help="the ledger's bank-mirror account")
    synthesize.add_argument("--output", type=Path, required=True, help="the file to write")
    synthesize.add_argument("--seed", type=int, default=20, help="the perturbations' seed")
    add_perturbation_arguments(synthesize)
    synthesize.set_defaults(handler=run_synthesize)


def perturbations_of(arguments: argparse.Namespace) -> dict[str, Any]:
    """The perturbation flags' values, as ``synthetic_camt053``/``synthetic_bai2`` take them."""
    return {
        "missing_share": arguments.missing_share, "mismatched": arguments.mismatched,
        "extra": arguments.extra, "late": arguments.late, "late_days": arguments.late_days,
    }  # fmt: skip


def run_synthesize(arguments: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(
        write_synthetic_statement(
            settings,
            tenant_id=arguments.tenant,
            account_id=arguments.account,
            output=arguments.output,
            statement_format=arguments.format,
            seed=arguments.seed,
            perturbed=perturbations_of(arguments),
        )
    )
    return EXIT_OK


def write_synthetic_statement(
    settings: Settings,
    *,
    tenant_id: str,
    account_id: str,
    output: Path,
    statement_format: str,
    seed: int,
    perturbed: dict[str, Any],
) -> str:
    """Write the account's synthetic statement (camt.053: ``output``; BAI2: one file a day) and
    return what to print: the BAI2 files' paths, then what reconciliation must find."""
    movements = account_movements(settings, tenant_id=tenant_id, account_id=account_id)
    if not movements:
        raise SettingError(f"{tenant_id}/{account_id} has no posted movement")
    # the account's terms, as the importer reads them: the amounts are its minor units
    terms = terms_of(settings, tenant_id, account_id)
    if isinstance(terms, StatementRejected):
        raise SettingError(terms.message())
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not secrets
    if statement_format == "bai2":
        files = synthetic_bai2(
            movements, bank_account=SYNTHETIC_BAI2_ACCOUNT, currency=terms.currency, rng=rng,
            **perturbed,
        )  # fmt: skip
        written = []
        for day, content in files.files:
            path = bai2_path(output, day)
            path.write_bytes(content)
            written.append(str(path))
        listing = "".join(f"{path}\n" for path in written)
        return listing + expected_text(f"{len(written)} BAI2 files", files.expected, len(movements))
    synthetic = synthetic_camt053(
        movements, iban=SYNTHETIC_IBAN, currency=terms.currency, asset_scale=terms.asset_scale,
        rng=rng, **perturbed,
    )  # fmt: skip
    output.write_bytes(synthetic.content)
    return expected_text(str(output), synthetic.expected, len(movements))


def bai2_path(output: Path, day: int) -> Path:
    """OUTPUT's name + -YYYY-MM-DD, its suffix (.bai when it has none): sorts in day order."""
    return output.with_name(f"{output.stem}-{iso_date(day)}{output.suffix or '.bai'}")


def expected_text(written: str, expected: Expected, movements: int) -> str:
    return (
        f"{written}: {expected.lines} entries from {movements} movements;"
        f" reconciliation must find {expected.lines_matched} matched,"
        f" {expected.lines_unmatched} lines and {expected.movements_unmatched} movements"
        f" unmatched, a balance difference of {expected.balance_difference}\n"
    )
