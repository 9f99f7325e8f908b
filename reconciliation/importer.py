"""``streamledger statements import``: one statement file onto ``ledger.statements``, once.

The order, and why it makes an import all-or-nothing and idempotent (decision 0052):

1. read the account's currency and asset scale from ``ledger.balances`` (its ``AccountState``);
2. parse the whole file (pure); a problem anywhere refuses it, nothing is written;
3. start a transactional producer whose ``transactional.id`` is the tenant and account: this
   fences (aborts) any other import of the same account still in flight;
4. read what was imported for the account before (read_committed, so no half import is seen):
   the same file hash → nothing to do; otherwise only lines whose identity is new;
5. write the new ``StatementLine`` records and then the file's ``Statement`` record in one Kafka
   transaction, to the tenant's partition. A crash before the commit leaves nothing.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Final

from confluent_kafka import KafkaException, Message, Producer

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER, kafka_error_text
from kafka_adapter.security import RECONCILER_PRINCIPAL, client_config
from reconciliation import bai2, camt053, camt054, statement_csv
from reconciliation.matching import ManualMatch, ManualUnmatch
from reconciliation.partition_reader import read_partition
from reconciliation.records import decode, encode
from reconciliation.statement import (
    AccountTerms,
    ParsedStatement,
    Statement,
    StatementFormat,
    StatementLine,
    StatementRejected,
    file_sha256,
    statement_lines,
)
from reconciliation.topics import STATEMENTS_TOPIC, ensure_topics
from schemas.codec import decode_state
from schemas.keys import account_state_key, command_key, partition_for
from schemas.model import AccountState
from schemas.topics import BALANCES_TOPIC
from streamledger.errors import InfraError
from streamledger.settings import Settings

IMPORT_TIMEOUT_S: Final = 60.0  # each Kafka step of one import (read, init, commit)
STATEMENT_BYTES_MAX: Final = 64 * 1024 * 1024  # a larger file is refused before parsing
TRANSACTION_TIMEOUT_MS: Final = 120_000


class ImportStatus(enum.Enum):
    IMPORTED = "imported"
    ALREADY_IMPORTED = "already_imported"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    status: ImportStatus
    file_sha256: str
    lines_in_file: int = 0
    lines_new: int = 0
    rejected: StatementRejected | None = None

    def summary(self) -> str:
        if self.rejected is not None:
            return f"rejected, nothing imported: {self.rejected.message()}"
        return (
            f"{self.status.value}: {self.lines_in_file} lines in the file,"
            f" {self.lines_new} new (file sha256 {self.file_sha256})"
        )


def parse_file(
    content: bytes,
    statement_format: StatementFormat,
    account: AccountTerms,
    bank_account: str | None,
) -> ParsedStatement | StatementRejected:
    if len(content) > STATEMENT_BYTES_MAX:
        return StatementRejected(location="file", reason=f"larger than {STATEMENT_BYTES_MAX} bytes")
    if statement_format is StatementFormat.CAMT053:
        return camt053.parse(content, account, bank_account=bank_account)
    if statement_format is StatementFormat.CAMT054:
        return camt054.parse(content, account, bank_account=bank_account)
    if statement_format is StatementFormat.BAI2:
        return bai2.parse(content, account, bank_account=bank_account)
    return statement_csv.parse(content, account)


def import_statement(
    settings: Settings,
    *,
    tenant_id: str,
    account_id: str,
    content: bytes,
    statement_format: StatementFormat,
    bank_account: str | None,
    imported_at_us: int,
) -> ImportReport:
    sha256 = file_sha256(content)
    partitions = ensure_topics(settings)
    partition = partition_for(command_key(tenant_id), partitions)
    connection = client_config(settings, RECONCILER_PRINCIPAL)
    account = account_terms(settings, connection, tenant_id, account_id, partition)
    if isinstance(account, StatementRejected):
        return ImportReport(status=ImportStatus.REJECTED, file_sha256=sha256, rejected=account)
    parsed = parse_file(content, statement_format, account, bank_account)
    if isinstance(parsed, StatementRejected):
        return ImportReport(status=ImportStatus.REJECTED, file_sha256=sha256, rejected=parsed)
    lines = statement_lines(account, parsed, sha256)
    producer = _transactional_producer(connection, tenant_id, account_id)
    imported_files, imported_lines = _imported_before(settings, connection, account, partition)
    if sha256 in imported_files:
        return ImportReport(
            status=ImportStatus.ALREADY_IMPORTED, file_sha256=sha256, lines_in_file=len(lines)
        )
    new_lines = [line for line in lines if line.line_id not in imported_lines]
    statement = Statement(
        tenant_id=tenant_id,
        account_id=account_id,
        file_sha256=sha256,
        format=statement_format,
        statement_id=parsed.statement_id,
        currency=parsed.currency,
        opening_balance=parsed.opening_balance,
        closing_balance=parsed.closing_balance,
        from_date_days=parsed.from_date_days,
        to_date_days=parsed.to_date_days,
        line_count=len(lines),
        new_line_count=len(new_lines),
        entries_not_booked=parsed.entries_not_booked,
        imported_at_us=imported_at_us,
    )
    _write(producer, settings.topic(STATEMENTS_TOPIC), partition, statement, new_lines)
    return ImportReport(
        status=ImportStatus.IMPORTED,
        file_sha256=sha256,
        lines_in_file=len(lines),
        lines_new=len(new_lines),
    )


def terms_of(
    settings: Settings, tenant_id: str, account_id: str
) -> AccountTerms | StatementRejected:
    """``account_terms`` on the tenant's partition, with the reconciler's connection."""
    partition = partition_for(command_key(tenant_id), ensure_topics(settings))
    connection = client_config(settings, RECONCILER_PRINCIPAL)
    return account_terms(settings, connection, tenant_id, account_id, partition)


def account_terms(
    settings: Settings,
    connection: dict[str, str],
    tenant_id: str,
    account_id: str,
    partition: int,
) -> AccountTerms | StatementRejected:
    """The account's currency and scale, from its latest ``AccountState`` in ``ledger.balances``."""
    key = account_state_key(tenant_id, account_id)
    latest = None
    records = read_partition(
        connection, settings.topic(BALANCES_TOPIC), partition, timeout_s=IMPORT_TIMEOUT_S
    )
    for record in records:
        if record.key == key and record.value is not None:
            latest = record.value
    if latest is None:
        return StatementRejected(
            location="account", reason=f"tenant {tenant_id!r} has no account {account_id!r}"
        )
    state = decode_state(latest)
    assert isinstance(state, AccountState), state
    return AccountTerms(
        tenant_id=tenant_id,
        account_id=account_id,
        currency=state.currency,
        asset_scale=state.asset_scale,
    )


def _imported_before(
    settings: Settings, connection: dict[str, str], account: AccountTerms, partition: int
) -> tuple[set[str], set[str]]:
    files: set[str] = set()
    lines: set[str] = set()
    records = read_partition(
        connection, settings.topic(STATEMENTS_TOPIC), partition, timeout_s=IMPORT_TIMEOUT_S
    )
    for record in records:
        if record.value is None or record.key != command_key(account.tenant_id):
            continue
        value = decode(record.value)
        if isinstance(value, Statement | StatementLine) and value.account_id == account.account_id:
            if isinstance(value, Statement):
                files.add(value.file_sha256)
            else:
                lines.add(value.line_id)
    return files, lines


def _transactional_producer(
    connection: dict[str, str], tenant_id: str, account_id: str
) -> Producer:
    producer = Producer(
        {
            **connection,
            "transactional.id": f"streamledger-statements-import/{tenant_id}/{account_id}",
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "enable.idempotence": True,
            "acks": "all",
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    try:
        producer.init_transactions(IMPORT_TIMEOUT_S)
    except KafkaException as exc:
        raise InfraError(f"starting the import's transaction: {kafka_error_text(exc)}") from exc
    return producer


def _write(
    producer: Producer,
    topic: str,
    partition: int,
    statement: Statement,
    lines: list[StatementLine],
) -> None:
    key = command_key(statement.tenant_id)
    try:
        producer.begin_transaction()
        for line in lines:
            producer.produce(topic, value=encode(line), key=key, partition=partition)
            producer.poll(0)
        # the header last: the matcher takes its period as "the statements now cover these
        # days", which closes movements; the lines must be there before that
        producer.produce(topic, value=encode(statement), key=key, partition=partition)
        producer.commit_transaction(IMPORT_TIMEOUT_S)
    except KafkaException as exc:
        # a fenced or failed producer cannot abort: the broker aborts its transaction then
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(IMPORT_TIMEOUT_S)
        raise InfraError(
            f"writing the statement: {kafka_error_text(exc)}; nothing imported"
        ) from exc


def request_manual_match(settings: Settings, request: ManualMatch | ManualUnmatch) -> str:
    """Write a ``ManualMatch`` or ``ManualUnmatch`` record to the tenant's partition of
    ``ledger.statements`` and return its position ``"{partition}:{offset}"``: the matcher decides
    it in order with the records before it (and refuses it if an item is not open, or not
    decided, respectively)."""
    partitions = ensure_topics(settings)
    partition = partition_for(command_key(request.tenant_id), partitions)
    producer = Producer(
        {
            **client_config(settings, RECONCILER_PRINCIPAL),
            "enable.idempotence": True,
            "acks": "all",
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    delivered: list[str] = []

    def on_delivery(error: object, message: Message) -> None:
        if error is None:
            delivered.append(f"{message.partition()}:{message.offset()}")
        else:
            delivered.append(f"error: {error}")

    key = command_key(request.tenant_id)
    producer.produce(
        settings.topic(STATEMENTS_TOPIC),
        value=encode(request),
        key=key,
        partition=partition,
        on_delivery=on_delivery,
    )
    if producer.flush(IMPORT_TIMEOUT_S) != 0:
        raise InfraError(f"the request was not acknowledged within {IMPORT_TIMEOUT_S:g} s")
    if not delivered or delivered[0].startswith("error: "):
        raise InfraError(f"the request was not written: {delivered[0] if delivered else '?'}")
    return delivered[0]
