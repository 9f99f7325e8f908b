"""Reading what ``streamledger reconcile report`` summarizes: the tenant's partition of
``ledger.statements``, ``ledger.reconciliation`` and ``ledger.events`` (read_committed, to their
ends now), filtered to one account; and an account's movements (``account_movements``), which
``streamledger statements synthesize`` and the demo turn into a synthetic statement."""

from __future__ import annotations

from typing import Final

from kafka_adapter.security import RECONCILER_PRINCIPAL, client_config
from reconciliation.manual_refusal import ManualRefusal
from reconciliation.matching import (
    DEFAULT_EXTERNAL_REFERENCE_KEY,
    Movement,
    ReconciliationResult,
    movements_of,
)
from reconciliation.partition_reader import read_partition
from reconciliation.records import decode
from reconciliation.report import LedgerBalancePoint, ReconciliationReport, summarize
from reconciliation.statement import Statement, StatementLine
from reconciliation.topics import RECONCILIATION_TOPIC, STATEMENTS_TOPIC, ensure_topics
from schemas.codec import decode_event
from schemas.keys import command_key, partition_for
from schemas.topics import EVENTS_TOPIC
from streamledger.settings import Settings

READ_TIMEOUT_S: Final = 120.0


def load_report(
    settings: Settings,
    *,
    tenant_id: str,
    account_id: str,
    from_days: int | None,
    to_days: int | None,
) -> ReconciliationReport:
    partitions = ensure_topics(settings)
    partition = partition_for(command_key(tenant_id), partitions)
    connection = client_config(settings, RECONCILER_PRINCIPAL)
    statements: list[Statement] = []
    lines: list[StatementLine] = []
    for record in read_partition(
        connection, settings.topic(STATEMENTS_TOPIC), partition, timeout_s=READ_TIMEOUT_S
    ):
        value = None if record.value is None else decode(record.value)
        if isinstance(value, Statement | StatementLine) and (
            value.tenant_id,
            value.account_id,
        ) == (tenant_id, account_id):
            if isinstance(value, Statement):
                statements.append(value)
            else:
                lines.append(value)
    results: list[ReconciliationResult] = []
    refusals: list[ManualRefusal] = []  # decision 0107
    for record in read_partition(
        connection, settings.topic(RECONCILIATION_TOPIC), partition, timeout_s=READ_TIMEOUT_S
    ):
        value = None if record.value is None else decode(record.value)
        if (
            isinstance(value, ReconciliationResult | ManualRefusal)
            and (value.tenant_id, value.account_id) == (tenant_id, account_id)
        ):  # fmt: skip
            if isinstance(value, ManualRefusal):
                refusals.append(value)
            else:
                results.append(value)
    return summarize(
        tenant_id=tenant_id,
        account_id=account_id,
        from_days=from_days,
        to_days=to_days,
        statements=statements,
        lines=lines,
        results=results,
        ledger_balances=_ledger_balances(settings, connection, partition, tenant_id, account_id),
        refusals=refusals,
    )


def _ledger_balances(
    settings: Settings,
    connection: dict[str, str],
    partition: int,
    tenant_id: str,
    account_id: str,
) -> list[LedgerBalancePoint]:
    points: list[LedgerBalancePoint] = []
    prefix = f"{tenant_id}/".encode()
    for record in read_partition(
        connection, settings.topic(EVENTS_TOPIC), partition, timeout_s=READ_TIMEOUT_S
    ):
        if record.value is None or record.key is None or not record.key.startswith(prefix):
            continue
        event = decode_event(record.value)
        for balance in event.balances:
            if balance.account_id == account_id:
                points.append(
                    LedgerBalancePoint(
                        effective_at_us=event.effective_at_us,
                        balance=balance.debits_posted - balance.credits_posted,
                    )
                )
    return points


def account_movements(
    settings: Settings,
    *,
    tenant_id: str,
    account_id: str,
    reference_key: str = DEFAULT_EXTERNAL_REFERENCE_KEY,
) -> list[Movement]:
    """The posted movements of one account on ``ledger.events``, in log order (what the matcher
    sees of it)."""
    partition = partition_for(command_key(tenant_id), ensure_topics(settings))
    connection = client_config(settings, RECONCILER_PRINCIPAL)
    prefix = f"{tenant_id}/".encode()
    found: list[Movement] = []
    for record in read_partition(
        connection, settings.topic(EVENTS_TOPIC), partition, timeout_s=READ_TIMEOUT_S
    ):
        if record.value is None or record.key is None or not record.key.startswith(prefix):
            continue
        found += [
            movement
            for movement in movements_of(decode_event(record.value), reference_key)
            if movement.account_id == account_id
        ]
    return found
