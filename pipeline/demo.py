"""``streamledger demo``: the whole ledger end to end on this machine, in a few minutes.

Steps (each announced, each bounded, each saying what it waits for):

1. the local stack: Kafka + PostgreSQL up, topics and migrations applied (idempotent);
2. the pipeline: ``Supervisor`` with 2 processors and 1 projection, in this process;
3. a seeded ``producers.loadgen`` workload with a progress bar: a few tenants, thousands of
   accounts, duplicates, key reuse, overdrafts, unknown accounts, reversals, pending transfers
   that are posted, voided or expire, multi-leg transactions (fee splits, payouts, FX;
   ``FEE_SPLIT_SHARE`` …), plus a few poison records for the DLQ;
4. wait for the processors (their committed offsets reach the end of ``ledger.commands``), then
   for the projection (PostgreSQL's tenant heads reach the last sequence in ``ledger.events``);
5. the summary per tenant, the ``verify`` report, sample balances now and at a point in time;
6. the HTTP API (supervised with the pipeline unless ``--no-api``): one GET against it with an
   API key made for the first tenant, and curl-able examples; then webhooks: a local receiver
   subscribed through the API, a low-balance monitor set on a busy account, three transfers
   posted through it; each transfer and each of the monitor's notifications (triggered, then
   cleared) printed with its signature checked (``pipeline/demo_webhooks.py``; a dispatcher is
   supervised with the API);
7. reconciliation: a synthetic camt.053 statement of the first tenant's ``funding`` account with
   known perturbations (missing, wrong-amount and extra entries), imported, matched, and its
   summary with the balance check (``pipeline/demo_reconciliation.py``); then where to look next.

The local Prometheus (``infra/prometheus_server.py``) scrapes every child while the demo runs and
is stopped with the pipeline at the end (``--keep-running`` keeps both up). It is optional: when it
cannot start (not installed, port taken) the demo says so and goes on without it.

Idempotency (decision): every run uses a fresh tenant namespace derived from the seed and a run
number kept in ``{home}/demo/last_run`` (``run3-s7-tenant-0000``, …). The same seed therefore
generates the same workload shape every time, while a second run never collides with the first
one's idempotency keys (which would turn the whole run into absorbed duplicates). If the counter
file is lost, a namespace already present in PostgreSQL is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import psycopg

from api.api_keys import NewApiKey, create_api_key
from api.signing_keys_cli import grant_without_waiting
from infra import prometheus_server, stack
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import API_PRINCIPAL, PRODUCER_PRINCIPAL
from pipeline.demo_reconciliation import reconciliation_lines
from pipeline.demo_webhooks import webhook_lines
from pipeline.local_prometheus import prometheus_url, scrape_targets
from pipeline.status import StatusReporter, commands_lag_source, dead_letter_source
from pipeline.supervisor import RunSettings, Supervisor, plan_children, supervise
from pipeline.topic_reader import (
    Offsets,
    committed_offsets,
    end_offsets,
    lag,
    records_between,
)
from processors.processor_settings import GROUP_ID_SUFFIX
from producers.cli import Progress
from producers.loadgen import LoadPlan, generate, opening_count, poison_records
from producers.sdk import LedgerProducer
from projections.queries import LedgerReader, reader_dsn
from projections.query_cli import describe_balance
from projections.settings import build_projection_settings
from projections.verify import verify
from schemas.codec import decode_event, decode_outcome, encode_command
from schemas.model import Command
from schemas.topics import COMMANDS_DLQ_TOPIC, COMMANDS_TOPIC, EVENTS_TOPIC, OUTCOMES_TOPIC
from streamledger.errors import InfraError
from streamledger.settings import Settings

FLUSH_TIMEOUT_S = 120.0
WAIT_REPORT_INTERVAL_S = 3.0
WAIT_POLL_S = 0.5
STUCK_AFTER_S = 60.0  # no progress for this long: the wait fails, naming what it waited for
RUN_NUMBER_FILE = "last_run"
ASSET_SCALE = 2  # what loadgen opens accounts with
# Multi-leg transactions in the demo's workload (off in loadgen's default mix, decision 0045):
# shares of the commands that are fee splits, payouts and FX conversions.
FEE_SPLIT_SHARE = 0.05
PAYOUT_SHARE = 0.005
FX_SHARE = 0.02
SAMPLE_ACCOUNTS = ("funding", "acct-0001", "acct-0002")
API_ACCOUNT = "acct-0001"
API_READY_TIMEOUT_S = 30.0  # the API reads ledger.outcomes to its end before it is ready
API_REQUEST_TIMEOUT_S = 5.0

COUNT_ACCOUNTS = (
    "SELECT tenant_id, count(*) FROM ledger.accounts WHERE tenant_id = ANY(%s) GROUP BY 1"
)
# Transfers only: a transaction's postings are transfers rows with id {transaction_id}/{index}
# (migration 0008; no real id contains "/"), counted by the multi-leg lines below.
SUM_TRANSFERS = (
    "SELECT tenant_id, currency, count(*), sum(amount_posted),"
    " count(*) FILTER (WHERE status = 'posted'), count(*) FILTER (WHERE status = 'pending'),"
    " count(*) FILTER (WHERE status = 'voided'), count(*) FILTER (WHERE status = 'expired'),"
    " count(*) FILTER (WHERE reverses IS NOT NULL)"
    " FROM ledger.transfers WHERE tenant_id = ANY(%s) AND strpos(transfer_id, '/') = 0"
    " GROUP BY 1, 2"
)
SUM_TRANSACTIONS = (
    "SELECT tenant_id, count(*), sum(posting_count), count(*) FILTER (WHERE status = 'posted'),"
    " count(*) FILTER (WHERE cardinality(currencies) > 1)"
    " FROM ledger.transactions WHERE tenant_id = ANY(%s) GROUP BY 1"
)
SUM_POSTINGS = (
    "SELECT tenant_id, currency, sum(amount_posted) FROM ledger.transfers"
    " WHERE tenant_id = ANY(%s) AND strpos(transfer_id, '/') > 0 GROUP BY 1, 2 ORDER BY 1, 2"
)
SELECT_HEADS = "SELECT tenant_id, last_sequence FROM ledger.tenant_heads WHERE tenant_id = ANY(%s)"
NAMESPACE_TAKEN = "SELECT count(*) FROM ledger.tenant_heads WHERE starts_with(tenant_id, %s)"


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSettings:
    seed: int = 7
    tenants: int = 4
    accounts_per_tenant: int = 1_000
    commands: int = 16_000  # after the opening phase (which is 2 x accounts per tenant)
    poison: int = 6
    processors: int = 2
    projections: int = 1
    catch_up_timeout_s: float = 600.0
    keep_running: bool = False
    api: bool = True  # supervise `streamledger api` and show it working
    api_port: int = 8080


@dataclass(slots=True)
class SentWorkload:
    tenant_ids: list[str]
    currencies: dict[str, str]
    intents: dict[str, Counter[str]] = field(default_factory=dict)  # tenant -> intent -> count
    poison: list[tuple[bytes, bytes, str]] = field(default_factory=list)
    midpoint: datetime | None = None  # wall time halfway through sending
    seconds: float = 0.0

    @property
    def commands(self) -> int:
        return sum(sum(c.values()) for c in self.intents.values())


@dataclass(slots=True)
class LedgerResults:
    """What the topics say about this run's tenants."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)  # tenant -> status/reason
    heads: dict[str, int] = field(default_factory=dict)  # tenant -> last event sequence
    event_types: dict[str, Counter[str]] = field(default_factory=dict)
    dlq: dict[str, int] = field(default_factory=dict)  # tenant (record key) -> records
    dlq_total: int = 0


class Console:
    """Step headers and timing on stdout; progress on stderr."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out, self.err = out, err
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        self.line(f"\n==> {text}  [{time.monotonic() - self.started:5.1f} s]")

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


# ------------------------------------------------------------------------------ namespace


def next_namespace(settings: Settings, seed: int) -> str:
    """``run<N>-s<seed>``: N from ``{home}/demo/last_run``, skipping namespaces already used."""
    path = settings.home / "demo" / RUN_NUMBER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    number = int(text) if text.isdigit() else 0
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        while True:
            number += 1
            namespace = f"run{number}-s{seed}"
            row = conn.execute(NAMESPACE_TAKEN, (namespace + "-",)).fetchone()
            if row is None or row[0] == 0:
                break
    path.write_text(f"{number}\n", encoding="utf-8")
    return namespace


# ------------------------------------------------------------------------------ workload


def send_workload(
    settings: Settings, demo: DemoSettings, namespace: str, progress_stream: IO[str]
) -> SentWorkload:
    """Generate the seeded workload under ``namespace`` and send it, with a progress bar."""
    plan = LoadPlan(
        seed=demo.seed,
        tenants=demo.tenants,
        accounts_per_tenant=demo.accounts_per_tenant,
        commands=demo.commands,
        start_us=time.time_ns() // 1_000,
        fee_split_share=FEE_SPLIT_SHARE,
        payout_share=PAYOUT_SHARE,
        fx_share=FX_SHARE,
    )
    names = {f"tenant-{i:04d}": f"{namespace}-tenant-{i:04d}" for i in range(plan.tenants)}
    sent = SentWorkload(
        tenant_ids=list(names.values()),
        currencies={
            names[f"tenant-{i:04d}"]: plan.currencies[i % len(plan.currencies)]
            for i in range(plan.tenants)
        },
    )
    total = opening_count(plan) + plan.commands
    progress = Progress(total + demo.poison, progress_stream, enabled=True)
    poison_every = max(total // (demo.poison + 1), 1)
    # librdkafka's retried warnings ("coordinator load in progress") would tear the bar apart:
    # they go to the streamledger.kafka logger instead of stderr.
    producer = LedgerProducer(settings, client_config_overrides={"logger": KAFKA_CLIENT_LOGGER})
    # the demo runs signed (decision 0084): each tenant is granted a key of the stack's upstream
    # principal before its first command, and the API one for the tenant it serves
    producer.signing_keys = grant_without_waiting(
        settings, producer, PRODUCER_PRINCIPAL, sent.tenant_ids
    )
    if demo.api:
        grant_without_waiting(settings, producer, API_PRINCIPAL, sent.tenant_ids[:1])
    started = time.monotonic()
    poison_queue: list[tuple[bytes, bytes, str]] = []
    for number, generated in enumerate(generate(plan), start=1):
        command: Command = dataclasses.replace(
            generated.command, tenant_id=names[generated.command.tenant_id]
        )
        if number == 1 and demo.poison:
            sample = encode_command(command)
            sent.poison = poison_records(demo.seed, demo.poison, tuple(sent.tenant_ids), sample)
            poison_queue = list(sent.poison)
        producer.send(command)
        sent.intents.setdefault(command.tenant_id, Counter())[generated.intent] += 1
        if poison_queue and number % poison_every == 0:
            key, value, _ = poison_queue.pop(0)
            producer.send_raw(key, value)
        if number == total // 2:
            # the broker stamps command time (LogAppendTime): once the first half is
            # acknowledged, every one of its events is effective at or before this moment
            producer.flush(FLUSH_TIMEOUT_S)
            sent.midpoint = datetime.now(UTC)
        progress.update(producer.sent)
    for key, value, _ in poison_queue:
        producer.send_raw(key, value)
    producer.flush(FLUSH_TIMEOUT_S)
    progress.update(producer.sent, final=True)
    sent.seconds = time.monotonic() - started
    return sent


# ------------------------------------------------------------------------------ waiting


def wait_for(
    console: Console,
    what: str,
    remaining: Callable[[], int],
    *,
    timeout_s: float,
    unit: str,
    healthy: Callable[[], str] | None = None,
) -> float:
    """Poll ``remaining()`` until 0, saying every few seconds what is left and how fast it goes."""
    started = last_report = last_progress = time.monotonic()
    left = remaining()
    best = reported = left
    while left > 0:
        now = time.monotonic()
        if now - started > timeout_s or now - last_progress > STUCK_AFTER_S:
            raise InfraError(
                f"gave up waiting for {what}: {left:,} {unit} left after {now - started:.0f} s"
                " (see the logs under {home}/logs)"
            )
        if now - last_report >= WAIT_REPORT_INTERVAL_S:
            rate = max(reported - left, 0) / max(now - last_report, 1e-9)
            extra = f"; {healthy()}" if healthy is not None else ""
            console.line(f"    waiting for {what}: {left:,} {unit} left ({rate:,.0f}/s){extra}")
            last_report, reported = now, left
        if left < best:
            best, last_progress = left, now
        time.sleep(WAIT_POLL_S)
        left = remaining()
    return time.monotonic() - started


def read_results(
    settings: Settings, sent: SentWorkload, before: dict[str, Offsets]
) -> LedgerResults:
    """This run's outcomes, events and dead letters: the topics from ``before`` to their end."""
    mine = set(sent.tenant_ids)
    results = LedgerResults()
    for topic_name, handle in (
        (OUTCOMES_TOPIC, _count_outcome),
        (EVENTS_TOPIC, _count_event),
    ):
        topic = settings.topic(topic_name)
        for record in records_between(settings, topic, before[topic], end_offsets(settings, topic)):
            if record.value is not None:
                handle(results, mine, record.value)
    dlq_topic = settings.topic(COMMANDS_DLQ_TOPIC)
    for record in records_between(
        settings, dlq_topic, before[dlq_topic], end_offsets(settings, dlq_topic)
    ):
        tenant = record.key.decode("utf-8", errors="replace")
        if tenant in mine:
            results.dlq[tenant] = results.dlq.get(tenant, 0) + 1
            results.dlq_total += 1
    return results


def _count_outcome(results: LedgerResults, mine: set[str], value: bytes) -> None:
    outcome = decode_outcome(value)
    if outcome.tenant_id in mine:
        label = outcome.status.value if outcome.reason is None else outcome.reason.value
        results.outcomes.setdefault(outcome.tenant_id, Counter())[label] += 1


def _count_event(results: LedgerResults, mine: set[str], value: bytes) -> None:
    event = decode_event(value)
    if event.tenant_id in mine:
        results.heads[event.tenant_id] = max(results.heads.get(event.tenant_id, 0), event.sequence)
        results.event_types.setdefault(event.tenant_id, Counter())[type(event).__name__] += 1


def projected_heads(settings: Settings, tenant_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        rows: list[Any] = conn.execute(SELECT_HEADS, (tenant_ids,)).fetchall()
    return {tenant: int(sequence) for tenant, sequence in rows}


# ------------------------------------------------------------------------------ the report


def money(minor_units: int) -> str:
    whole, fraction = divmod(abs(minor_units), 10**ASSET_SCALE)
    sign = "-" if minor_units < 0 else ""
    return f"{sign}{whole:,}.{fraction:0{ASSET_SCALE}d}"


def summary_lines(settings: Settings, sent: SentWorkload, results: LedgerResults) -> list[str]:
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        accounts: dict[str, int] = dict(conn.execute(COUNT_ACCOUNTS, (sent.tenant_ids,)).fetchall())
        transfers: list[Any] = conn.execute(SUM_TRANSFERS, (sent.tenant_ids,)).fetchall()
    by_tenant = {row[0]: row for row in transfers}
    header = (
        f"{'tenant':<24} {'accounts':>8} {'transfers':>9} {'posted':>7} {'pending':>7}"
        f" {'voided':>6} {'expired':>7} {'reversal':>8} {'volume posted':>22}"
        f" {'rejected':>8} {'dups':>5} {'reuse':>5} {'dlq':>4}"
    )
    lines = [header, "-" * len(header)]
    for tenant in sent.tenant_ids:
        row = by_tenant.get(tenant)
        _, currency, count, volume, posted, pending, voided, expired, reversals = row or (
            tenant, sent.currencies[tenant], 0, 0, 0, 0, 0, 0, 0,
        )  # fmt: skip
        outcomes = results.outcomes.get(tenant, Counter())
        rejected = sum(n for label, n in outcomes.items() if label != "accepted")
        intents = sent.intents.get(tenant, Counter())
        reuse = intents["key_reuse"]
        absorbed = sum(intents.values()) - sum(outcomes.values()) - reuse
        lines.append(
            f"{tenant:<24} {accounts.get(tenant, 0):>8,} {count:>9,} {posted:>7,} {pending:>7,}"
            f" {voided:>6,} {expired:>7,} {reversals:>8,} {money(int(volume or 0)):>18} {currency}"
            f" {rejected:>8,} {absorbed:>5,} {reuse:>5,} {results.dlq.get(tenant, 0):>4}"
        )
    lines += [
        "",
        "rejections by reason (from ledger.outcomes), per tenant:",
        f"  {'reason':<26} " + "  ".join(f"{t[-6:]:>6}" for t in sent.tenant_ids),
    ]
    reasons = sorted(
        {label for c in results.outcomes.values() for label in c if label != "accepted"}
    )
    for reason in reasons:
        counts = "  ".join(
            f"{results.outcomes.get(t, Counter())[reason]:>6,}" for t in sent.tenant_ids
        )
        lines.append(f"  {reason:<26} {counts}")
    lines.append(
        f"  {'idempotency_key_reused':<26} "
        + "  ".join(f"{sent.intents[t]['key_reuse']:>6,}" for t in sent.tenant_ids)
        + "   (replies only: the key keeps its first outcome)"
    )
    return lines


def multi_leg_lines(settings: Settings, sent: SentWorkload) -> list[str]:
    """Multi-leg volume per tenant: transactions and postings in ``ledger.transactions``, the
    amount their postings moved per currency, and what the workload sent of each kind."""
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        rows: list[Any] = conn.execute(SUM_TRANSACTIONS, (sent.tenant_ids,)).fetchall()
        volumes: list[Any] = conn.execute(SUM_POSTINGS, (sent.tenant_ids,)).fetchall()
    by_tenant = {row[0]: row for row in rows}
    moved: dict[str, list[str]] = {}
    for tenant, currency, volume in volumes:
        moved.setdefault(tenant, []).append(f"{money(int(volume or 0))} {currency}")
    lines = ["", "multi-leg transactions (ledger.transactions), per tenant:"]
    for tenant in sent.tenant_ids:
        _, count, postings, posted, fx = by_tenant.get(tenant) or (tenant, 0, 0, 0, 0)
        intents = sent.intents.get(tenant, Counter())
        sent_kinds = ", ".join(f"{intents[kind]} {kind}" for kind in ("fee_split", "payout", "fx"))
        lines.append(
            f"  {tenant:<24} {count:>6,} transactions ({posted:,} posted, {fx:,} FX),"
            f" {int(postings or 0):>7,} postings, volume posted"
            f" {' + '.join(moved.get(tenant, [])) or '0'}   (sent: {sent_kinds})"
        )
    return lines


def verify_lines(settings: Settings, tenant_ids: list[str]) -> tuple[bool, list[str]]:
    report = verify(settings, group=f"{settings.topic_prefix}streamledger-verify")
    mine = set(tenant_ids)
    lines = [f"  log: {problem}" for problem in report.log_problems]
    others = ok_others = 0
    for tenant_id in sorted(report.audits):
        audit = report.audits[tenant_id]
        if tenant_id not in mine:
            others += 1
            ok_others += not audit.problems
            if audit.problems:
                lines.append(f"  tenant {tenant_id}: {len(audit.problems)} difference(s)")
            continue
        state = "ok" if not audit.problems else f"{len(audit.problems)} difference(s)"
        lines.append(
            f"  tenant {tenant_id}: {audit.events:,} events, hash chain and balances"
            f" re-folded, zero-sum per currency, PostgreSQL = log: {state}"
        )
        lines += [f"    - {problem}" for problem in audit.problems[:10]]
    if others:
        lines.append(f"  {ok_others} of {others} tenants of earlier runs: ok")
    lines.append("verify: ok" if report.ok else "verify: DIFFERENCES FOUND")
    return report.ok, lines


def sample_balance_lines(settings: Settings, sent: SentWorkload) -> list[str]:
    tenant = sent.tenant_ids[0]
    lines: list[str] = []
    with LedgerReader(
        reader_dsn(settings), build_projection_settings(settings, pool_size_max=1)
    ) as reader:
        for account in SAMPLE_ACCOUNTS:
            now = reader.balance(tenant, account)
            if now is not None:
                lines.append(f"  now:   {describe_balance(now)}")
            if sent.midpoint is not None:
                then = reader.balance(tenant, account, as_of=sent.midpoint)
                if then is not None:
                    lines.append(f"  as of: {describe_balance(then)}")
    return lines


def api_get(url: str, token: str, *, timeout_s: float = API_REQUEST_TIMEOUT_S) -> tuple[int, str]:
    """``(status, body)`` of one GET; status 0 when nothing answered."""
    # A loopback http:// URL this module builds itself.
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return int(response.status), response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def wait_for_api(base_url: str, token: str) -> tuple[int, str]:
    """Poll ``/readyz`` for at most ``API_READY_TIMEOUT_S``; the last answer."""
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    status, body = api_get(f"{base_url}/readyz", token)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(WAIT_POLL_S)
        status, body = api_get(f"{base_url}/readyz", token)
    return status, body


def api_lines(base_url: str, key: NewApiKey, sent: SentWorkload) -> tuple[bool, list[str]]:
    """One real GET of a balance through the API, then curl-able examples for this tenant."""
    status, body = wait_for_api(base_url, key.token)
    if status != 200:
        return False, [f"  the API at {base_url} is not ready: {status or 'no answer'} {body}"]
    url = f"{base_url}/v1/accounts/{API_ACCOUNT}/balance"
    status, body = api_get(url, key.token)
    with_key = '-H "Authorization: Bearer $STREAMLEDGER_API_KEY"'
    as_of = (sent.midpoint or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    transfer = json.dumps(
        {
            "transfer_id": "api-demo-1",
            "debit_account_id": "funding",
            "credit_account_id": API_ACCOUNT,
            "amount": 1250,
            "currency": sent.currencies[key.tenant_id],
        }
    )
    lines = [
        f"  GET {url}  ->  {status}",
        f"  {body.strip()}",
        "",
        f"  try it (the key belongs to {key.tenant_id}; it is shown once, only its SHA-256 is",
        "  stored; make more with `streamledger tenants create-key TENANT`):",
        f"    export STREAMLEDGER_API_KEY={key.token}",
        f"    curl -s {with_key} -X POST {base_url}/v1/transfers \\",
        '         -H "Idempotency-Key: api-demo-1" -H "Content-Type: application/json" \\',
        f"         -d '{transfer}'",
        f"    curl -s {with_key} {url}",
        f'    curl -s {with_key} "{url}?as_of={as_of}"',
        f'    curl -s {with_key} "{base_url}/v1/accounts/{API_ACCOUNT}/entries?limit=5"',
        f"    (the same POST again returns the original result; the OpenAPI document is at"
        f" {base_url}/openapi.json)",
    ]
    return status == 200, lines


def next_steps(
    settings: Settings, supervisor: Supervisor, sent: SentWorkload, *, prometheus: bool
) -> list[str]:
    tenant = sent.tenant_ids[0]
    as_of = sent.midpoint.isoformat() if sent.midpoint else "2025-01-01T00:00:00"
    lines = ["metrics (while the demo runs; `streamledger demo --keep-running` keeps it all up):"]
    for child in supervisor.children:
        if child.spec.metrics_url is not None:
            lines.append(f"  {child.spec.name:<14} {child.spec.metrics_url}")
    if prometheus:
        lines.append(
            f"  {'prometheus':<14} {prometheus_url(settings)}/graph  (rules and alerts too)"
        )
    lines += [
        f"logs:            {settings.home / 'logs'}",
        "run the pipeline: streamledger run --with-prometheus   (API on :8080; Ctrl-C stops it)",
        f"a balance:        streamledger balance {tenant} acct-0001",
        f"as of a time:     streamledger balance {tenant} acct-0001 --as-of {as_of}",
        f"the journal:      streamledger history {tenant} acct-0001 --limit 10",
        f"tail events:      streamledger events tail --tenant {tenant} --from-beginning",
        "reconcile:        streamledger verify",
        f"bank statements:  streamledger reconcile report --tenant {tenant} --account funding",
        "another run:      make demo   (a fresh tenant namespace each time)",
        "stop the stack:   streamledger infra down",
    ]
    return lines


# ------------------------------------------------------------------------------ the demo


def run_demo(settings: Settings, demo: DemoSettings, out: IO[str], err: IO[str]) -> int:
    """The whole demo; returns 0 when verify is clean and the DLQ holds exactly the poison."""
    console = Console(out, err)
    console.step("starting Kafka and PostgreSQL, applying topics and migrations")
    for report in stack.up(settings):
        console.line(f"    {report.line()}")
    namespace = next_namespace(settings, demo.seed)
    run = RunSettings(
        processors=demo.processors,
        projections=demo.projections,
        api=demo.api,
        api_port=demo.api_port,
        notifiers=1 if demo.api else 0,  # the webhook step subscribes through the API
    )
    supervisor = Supervisor(settings, run, plan_children(settings, run))
    pipeline = PipelineThread(supervisor, console)
    prometheus = start_prometheus_for(settings, run, console)
    console.step(
        f"starting the pipeline: {demo.processors} processors, {demo.projections} projection"
        + (f", the HTTP API on port {demo.api_port}" if demo.api else "")
        + f" (logs in {settings.home / 'logs'})"
    )
    pipeline.start()
    try:
        api_key = create_api_key(settings, f"{namespace}-tenant-0000") if demo.api else None
        return demo_steps(
            settings,
            demo,
            namespace=namespace,
            supervisor=supervisor,
            console=console,
            pipeline=pipeline,
            api_key=api_key,
            prometheus=prometheus,
        )
    except KeyboardInterrupt:
        console.line("interrupted: stopping the pipeline")
        return 130
    finally:
        console.step("stopping the pipeline (each process commits or aborts its transaction)")
        for line in pipeline.stop(run.shutdown_timeout_s):
            console.line(f"    {line}")
        if prometheus:
            prometheus_server.stop_prometheus(settings)
            console.line(
                f"    prometheus stopped (its data stays in {settings.home / 'prometheus'})"
            )
        console.line(f"demo finished in {time.monotonic() - console.started:.1f} s")


def start_prometheus_for(settings: Settings, run: RunSettings, console: Console) -> bool:
    """The local Prometheus scraping this run's children; False (said, not fatal) if it fails."""
    console.step("starting the local Prometheus (scrapes every pipeline process and the API)")
    try:
        report = prometheus_server.start_prometheus(settings, scrape_targets(settings, run))
    except InfraError as exc:
        console.line(f"    prometheus not started, the demo goes on without it: {exc}")
        return False
    console.line(f"    {report.line()}")
    console.line(f"    prometheus: {prometheus_url(settings)}")
    return True


class PipelineThread:
    """The supervisor, driven by one background thread (it starts, restarts and stops)."""

    def __init__(self, supervisor: Supervisor, console: Console) -> None:
        self.supervisor = supervisor
        self.console = console
        self.stop_requested = threading.Event()
        self.stop_lines: list[str] = []
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.drive, name="pipeline", daemon=True)

    def drive(self) -> None:
        try:
            self.stop_lines = supervise(
                self.supervisor,
                self.stop_requested,
                on_line=lambda line: self.console.line(f"    pipeline: {line}"),
            )
        except BaseException as exc:  # noqa: BLE001 - reported by stop() on the main thread
            self.failure = exc

    def start(self) -> None:
        self.thread.start()

    def health(self) -> str:
        supervisor = self.supervisor
        return (
            f"{supervisor.running_count}/{len(supervisor.children)} pipeline processes up,"
            f" {supervisor.restarts} restarts"
        )

    def stop(self, timeout_s: float) -> list[str]:
        self.stop_requested.set()
        self.thread.join(timeout_s + 10.0)
        if self.failure is not None:
            return [*self.stop_lines, f"the supervisor failed: {self.failure!r}"]
        return self.stop_lines


def demo_steps(
    settings: Settings,
    demo: DemoSettings,
    *,
    namespace: str,
    supervisor: Supervisor,
    console: Console,
    pipeline: PipelineThread,
    api_key: NewApiKey | None,
    prometheus: bool,
) -> int:
    topics = [settings.topic(name) for name in DEMO_TOPICS]
    before = {topic: end_offsets(settings, topic) for topic in topics}
    console.step(
        f"sending the seeded workload (seed {demo.seed}, tenants {namespace}-tenant-*):"
        f" {demo.tenants} tenants x {demo.accounts_per_tenant:,} accounts,"
        f" {demo.commands:,} mixed commands, {demo.poison} poison records"
    )
    sent = send_workload(settings, demo, namespace, console.err)
    console.line(
        f"    sent {sent.commands:,} commands + {len(sent.poison)} poison records"
        f" in {sent.seconds:.1f} s ({sent.commands / max(sent.seconds, 1e-9):,.0f}/s)"
    )
    wait_until_caught_up(settings, demo, console=console, pipeline=pipeline)
    results = read_results(settings, sent, before)
    waited = wait_for(
        console,
        "the projection (PostgreSQL tenant heads reaching ledger.events)",
        lambda: events_left(settings, results.heads),
        timeout_s=demo.catch_up_timeout_s,
        unit="events",
        healthy=pipeline.health,
    )
    console.line(f"    projection caught up ({waited:.1f} s after the processors)")
    return report(
        settings,
        demo,
        sent=sent,
        results=results,
        supervisor=supervisor,
        console=console,
        pipeline=pipeline,
        api_key=api_key,
        prometheus=prometheus,
    )


DEMO_TOPICS = (EVENTS_TOPIC, OUTCOMES_TOPIC, COMMANDS_DLQ_TOPIC)


def wait_until_caught_up(
    settings: Settings,
    demo: DemoSettings,
    *,
    console: Console,
    pipeline: PipelineThread,
) -> None:
    console.step("waiting for the processors to decide every command")
    commands_topic = settings.topic(COMMANDS_TOPIC)
    commands_end = end_offsets(settings, commands_topic)
    group = f"{settings.topic_prefix}{GROUP_ID_SUFFIX}"
    waited = wait_for(
        console,
        "the processors (committed offsets reaching the end of ledger.commands)",
        lambda: lag(committed_offsets(settings, group, commands_topic), commands_end),
        timeout_s=demo.catch_up_timeout_s,
        unit="commands",
        healthy=pipeline.health,
    )
    console.line(f"    every command decided ({waited:.1f} s after the last one was sent)")


def events_left(settings: Settings, heads: dict[str, int]) -> int:
    projected = projected_heads(settings, list(heads))
    return sum(max(head - projected.get(tenant, 0), 0) for tenant, head in heads.items())


def report(
    settings: Settings,
    demo: DemoSettings,
    *,
    sent: SentWorkload,
    results: LedgerResults,
    supervisor: Supervisor,
    console: Console,
    pipeline: PipelineThread,
    api_key: NewApiKey | None,
    prometheus: bool,
) -> int:
    console.step("summary per tenant (PostgreSQL projection + ledger.outcomes + DLQ)")
    for line in summary_lines(settings, sent, results) + multi_leg_lines(settings, sent):
        console.line(line)
    dlq_ok = results.dlq_total == len(sent.poison)
    console.line(
        f"\nDLQ: {results.dlq_total} records for these tenants, {len(sent.poison)} poison sent"
        f" ({', '.join(kind for _, _, kind in sent.poison)}): {'ok' if dlq_ok else 'MISMATCH'}"
    )
    console.step("verify: hash chains, balances re-folded from the log, zero-sum, PostgreSQL = log")
    verified, lines = verify_lines(settings, sent.tenant_ids)
    for line in lines:
        console.line(line)
    console.step(
        "sample balances: now, and as of the moment half the workload had been sent"
        f" ({sent.midpoint.isoformat() if sent.midpoint else '-'})"
    )
    for line in sample_balance_lines(settings, sent):
        console.line(line)
    api_ok = True
    if api_key is not None:
        console.step(f"the HTTP API: a GET with an API key for {api_key.tenant_id}")
        base_url = f"http://127.0.0.1:{demo.api_port}"
        api_ok, lines = api_lines(base_url, api_key, sent)
        for line in lines:
            console.line(line)
        console.step(
            "webhooks: a local receiver subscribed through the API gets the next transfers and"
            f" a low-balance monitor's notifications on {API_ACCOUNT}, signed"
        )
        webhooks_ok, lines = webhook_lines(
            base_url, api_key.token, currency=sent.currencies[api_key.tenant_id],
            debit="funding", credit=API_ACCOUNT,
        )  # fmt: skip
        for line in lines:
            console.line(line)
        api_ok = api_ok and webhooks_ok
    console.step(
        f"reconciliation: a synthetic bank statement of {sent.tenant_ids[0]}'s funding account,"
        " imported (camt.053), matched against the ledger, summarized"
    )
    reconciled, lines = reconciliation_lines(settings, sent.tenant_ids[0], seed=demo.seed)
    for line in lines:
        console.line(line)
    console.step("where to look next")
    for line in next_steps(settings, supervisor, sent, prometheus=prometheus):
        console.line(f"    {line}")
    if demo.keep_running:
        keep_running(console, pipeline)
    return 0 if verified and dlq_ok and api_ok and reconciled else 1


def keep_running(console: Console, pipeline: PipelineThread) -> None:
    settings = pipeline.supervisor.settings
    reporter = StatusReporter(
        pipeline.supervisor,
        lag_source=commands_lag_source(settings),
        dlq_source=dead_letter_source(settings),  # counted from the topic, like `run`
    )
    console.line("\nthe pipeline keeps running; Ctrl-C stops it")
    while pipeline.thread.is_alive():
        console.line(reporter.line())
        time.sleep(pipeline.supervisor.run.status_interval_s)
