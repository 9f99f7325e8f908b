"""``streamledger reconcile project``: ``ledger.statements`` and ``ledger.reconciliation`` into
PostgreSQL (migration 0012, decision 0074; refused manual requests, migration 0016, decision 0107).

A projection like the ledger's: it reads both topics ``read_committed`` (so an import or a
matcher batch that was aborted never shows), and writes each batch's rows **and** the next
offset of every partition in the batch in ONE database transaction:

    consume a batch → rows (pure: ``rows_of``) → BEGIN → lock this projection's offset rows and
    check they still hold where this process started reading → insert the rows → store the next
    offsets → COMMIT

so a row is written once whatever crashes when. If the stored offsets moved (another instance
wrote, or a rebuild swapped in a fresh schema whose offsets start at 0), nothing is written and
every partition is sought again to what the database holds; an idle projection compares them
every ``OFFSET_CHECK_INTERVAL_S``, so a rebuild is refilled without waiting for a new record.
The partitions are assigned, not shared through a group: one instance is meant to run; a second
one is harmless (it loses the offset check and re-seeks), never a duplicate.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import RECONCILER_PRINCIPAL, client_config
from reconciliation.manual_refusal import ManualRefusal
from reconciliation.matching import ManualMatch, ManualUnmatch, ReconciliationResult
from reconciliation.metrics import ReconciliationProjectionMetrics
from reconciliation.records import decode
from reconciliation.statement import Statement, StatementLine
from reconciliation.topics import RECONCILIATION_TOPIC, STATEMENTS_TOPIC, ensure_topics
from streamledger.errors import InfraError
from streamledger.settings import Settings

LOGGER = logging.getLogger("streamledger.reconciliation.projection")
PROJECTION_NAME: Final = "reconciliation"
STATEMENT_TIMEOUT_MS: Final = 60_000  # one statement of a batch's transaction
CONNECT_TIMEOUT_S: Final = 10
OFFSET_CHECK_INTERVAL_S: Final = 5.0  # an idle projection re-reads its stored offsets this often
EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
EPOCH_DATE: Final = datetime.date(1970, 1, 1)

SELECT_OFFSETS_FOR_UPDATE: Final = (
    "SELECT topic, partition, next_offset FROM ledger.projection_offsets"
    " WHERE projection_name = %s ORDER BY topic, partition FOR UPDATE"
)
SELECT_OFFSETS: Final = (
    "SELECT topic, partition, next_offset FROM ledger.projection_offsets WHERE projection_name = %s"
)
UPSERT_OFFSET: Final = (
    "INSERT INTO ledger.projection_offsets (projection_name, topic, partition, next_offset)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (projection_name, topic, partition) DO UPDATE"
    " SET next_offset = excluded.next_offset, updated_at = now()"
)
# A statement's lines and header come once per import (decision 0052); a line id written twice
# (by hand) keeps its first record, as the matcher does.
INSERT_STATEMENT: Final = (
    "INSERT INTO ledger.statements (tenant_id, account_id, file_sha256, format, statement_id,"
    " currency, opening_balance, opening_balance_date, closing_balance, closing_balance_date,"
    " from_date, to_date, line_count, new_line_count, entries_not_booked, imported_at,"
    " record_partition, record_offset)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (tenant_id, account_id, file_sha256) DO NOTHING"
)
INSERT_LINE: Final = (
    "INSERT INTO ledger.statement_lines (tenant_id, account_id, line_id, file_sha256,"
    " statement_id, line_number, amount, currency, direction, reversal, booking_date,"
    " value_date, bank_reference, entry_reference, end_to_end_reference, counterparty_name,"
    " counterparty_account, remittance_information, record_partition, record_offset)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (tenant_id, line_id) DO NOTHING"
)
# A result's position is its identity: the same position twice is a broken offset check, and the
# primary key stops the batch loudly.
INSERT_RESULT: Final = (
    "INSERT INTO ledger.reconciliation_results (tenant_id, account_id, record_partition,"
    " record_offset, state, rule, reason, line_ids, movement_ids, line_amount, movement_amount,"
    " decided_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

INSERT_REFUSAL: Final = (
    "INSERT INTO ledger.reconciliation_refusals (tenant_id, account_id, record_partition,"
    " record_offset, request_id, request_type, actor, line_ids, movement_ids, reason, refused_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

Position = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class BatchRows:
    """One batch's rows, by table (pure: ``rows_of``)."""

    statements: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[tuple[Any, ...]] = field(default_factory=list)
    results: list[tuple[Any, ...]] = field(default_factory=list)
    refusals: list[tuple[Any, ...]] = field(default_factory=list)

    def count(self) -> int:
        return len(self.statements) + len(self.lines) + len(self.results) + len(self.refusals)

    def by_table(self) -> dict[str, int]:
        return {
            "statements": len(self.statements),
            "statement_lines": len(self.lines),
            "reconciliation_results": len(self.results),
            "reconciliation_refusals": len(self.refusals),
        }


def timestamp(microseconds: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(microseconds=microseconds)


def day(days: int | None) -> datetime.date | None:
    return None if days is None else EPOCH_DATE + datetime.timedelta(days=days)


def statement_row(record: Statement, partition: int, offset: int) -> tuple[Any, ...]:
    opening, closing = record.opening_balance, record.closing_balance
    return (
        record.tenant_id,
        record.account_id,
        record.file_sha256,
        record.format.value,
        record.statement_id,
        record.currency,
        None if opening is None else opening.amount,
        None if opening is None else day(opening.date_days),
        None if closing is None else closing.amount,
        None if closing is None else day(closing.date_days),
        day(record.from_date_days),
        day(record.to_date_days),
        record.line_count,
        record.new_line_count,
        record.entries_not_booked,
        timestamp(record.imported_at_us),
        partition,
        offset,
    )


def line_row(record: StatementLine, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        record.tenant_id,
        record.account_id,
        record.line_id,
        record.file_sha256,
        record.statement_id,
        record.line_number,
        record.amount,
        record.currency,
        record.direction.value,
        record.reversal,
        day(record.booking_date_days),
        day(record.value_date_days),
        record.bank_reference,
        record.entry_reference,
        record.end_to_end_reference,
        record.counterparty_name,
        record.counterparty_account,
        record.remittance_information,
        partition,
        offset,
    )


def result_row(record: ReconciliationResult, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        record.tenant_id,
        record.account_id,
        partition,
        offset,
        record.state.value,
        None if record.rule is None else record.rule.value,
        record.reason,
        list(record.line_ids),
        list(record.movement_ids),
        record.line_amount,
        record.movement_amount,
        timestamp(record.decided_at_us),
    )


def refusal_row(record: ManualRefusal, partition: int, offset: int) -> tuple[Any, ...]:
    return (
        record.tenant_id,
        record.account_id,
        partition,
        offset,
        record.request_id,
        record.request_type,
        record.actor,
        list(record.line_ids),
        list(record.movement_ids),
        record.reason,
        timestamp(record.refused_at_us),
    )


def rows_of(records: Iterable[tuple[bytes, int, int]]) -> BatchRows:
    """(value, partition, offset) of both topics → rows. A ``ManualMatch`` or ``ManualUnmatch`` is
    a request, not a state: its outcome is the result the matcher writes (rule ``manual``)."""
    rows = BatchRows()
    for value, partition, offset in records:
        record = decode(value)
        if isinstance(record, Statement):
            rows.statements.append(statement_row(record, partition, offset))
        elif isinstance(record, StatementLine):
            rows.lines.append(line_row(record, partition, offset))
        elif isinstance(record, ReconciliationResult):
            rows.results.append(result_row(record, partition, offset))
        elif isinstance(record, ManualRefusal):
            rows.refusals.append(refusal_row(record, partition, offset))
        else:
            assert isinstance(record, ManualMatch | ManualUnmatch), record
    return rows


class ReconciliationProjection:
    """The loop: see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        batch_records_max: int,
        batch_wait_ms: int,
        metrics: ReconciliationProjectionMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = ReconciliationProjectionMetrics() if metrics is None else metrics
        self.batch_records_max = batch_records_max
        self.batch_wait_s = batch_wait_ms / 1000
        self.topics = (settings.topic(STATEMENTS_TOPIC), settings.topic(RECONCILIATION_TOPIC))
        self.partitions = 0
        self.positions: dict[Position, int] = {}  # where this process started reading
        self.rows_written = 0

    def run(self, stop: threading.Event) -> None:
        self.partitions = ensure_topics(self.settings)
        consumer = Consumer(
            {
                **client_config(self.settings, RECONCILER_PRINCIPAL),
                "group.id": f"{self.settings.topic_prefix}streamledger-reconciler-projection",
                "enable.auto.commit": False,  # the offsets live in PostgreSQL
                "isolation.level": "read_committed",
            },
            logger=KAFKA_CLIENT_LOGGER,
        )
        try:
            with self._connect() as connection:
                self._seek(consumer, self._stored(connection))
                self.metrics.set_ready()
                checked_at = time.monotonic()
                while not stop.is_set():
                    self.metrics.heartbeat()
                    messages = consumer.consume(self.batch_records_max, self.batch_wait_s)
                    moved = bool(messages) and not self.write_batch(connection, messages)
                    if not messages and time.monotonic() - checked_at > OFFSET_CHECK_INTERVAL_S:
                        checked_at = time.monotonic()
                        stored = self._stored(connection)
                        moved = any(stored.get(p, 0) != o for p, o in self.positions.items())
                    if moved:
                        LOGGER.warning("stored offsets moved: seeking to what PostgreSQL holds")
                        self.metrics.seeks.inc()
                        self._seek(consumer, self._stored(connection))
        finally:
            consumer.close()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.settings.database_dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                application_name="streamledger-reconciler-projection",
            )
        except psycopg.Error as exc:
            raise InfraError(f"cannot connect to PostgreSQL: {exc}") from exc

    def _stored(self, connection: psycopg.Connection[Any]) -> dict[Position, int]:
        try:
            rows = connection.execute(SELECT_OFFSETS, (PROJECTION_NAME,)).fetchall()
        except psycopg.Error as exc:
            raise InfraError(f"reading the projection's offsets: {exc}") from exc
        return {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}

    def _seek(self, consumer: Consumer, stored: dict[Position, int]) -> None:
        self.positions = {
            (topic, partition): stored.get((topic, partition), 0)
            for topic in self.topics
            for partition in range(self.partitions)
        }
        consumer.assign(
            [
                TopicPartition(topic, partition, offset or OFFSET_BEGINNING)
                for (topic, partition), offset in sorted(self.positions.items())
            ]
        )

    def write_batch(self, connection: psycopg.Connection[Any], messages: list[Message]) -> bool:
        """Write one batch with its next offsets; False (nothing written) if the stored offsets
        are not where this process started reading."""
        next_offsets: dict[Position, int] = {}
        records: list[tuple[bytes, int, int]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise InfraError(f"consumer: {error.str()}")
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            value = message.value()
            assert topic is not None and partition is not None and offset is not None
            next_offsets[(topic, partition)] = offset + 1
            if value is not None:
                records.append((value, partition, offset))
        if not next_offsets:
            return True
        rows = rows_of(records)
        try:
            written = self._transaction(connection, rows, next_offsets)
        except psycopg.Error as exc:
            raise InfraError(f"writing reconciliation rows: {exc}") from exc
        if written:
            self.positions.update(next_offsets)
            self.rows_written += rows.count()
            self.metrics.committed(rows.by_table())
        return written

    def _transaction(
        self,
        connection: psycopg.Connection[Any],
        rows: BatchRows,
        next_offsets: dict[Position, int],
    ) -> bool:
        with connection.transaction(), connection.cursor() as cursor:
            locked = cursor.execute(SELECT_OFFSETS_FOR_UPDATE, (PROJECTION_NAME,)).fetchall()
            stored = {(str(t), int(p)): int(o) for t, p, o in locked}
            for position in next_offsets:
                if stored.get(position, 0) != self.positions.get(position, 0):
                    return False
            for statement, batch in (
                (INSERT_STATEMENT, rows.statements),
                (INSERT_LINE, rows.lines),
                (INSERT_RESULT, rows.results),
                (INSERT_REFUSAL, rows.refusals),
            ):
                if batch:
                    cursor.executemany(statement, batch)
            cursor.executemany(
                UPSERT_OFFSET,
                [
                    (PROJECTION_NAME, topic, partition, offset)
                    for (topic, partition), offset in sorted(next_offsets.items())
                ],
            )
        return True
