"""One partition's ledger as the loop sees it: the pure core plus the bytes to produce.

``PartitionLedger`` is the thin adapter between ``processors.ledger`` (pure decisions over a
``LedgerState``) and the transactional loop: it encodes each decision's events and stored outcome
as the decision is made, and at the end of a batch adds the outcome tombstones that stream time
expired and the latest version of every state record the batch changed (one record per key per
batch: ``ledger.balances`` is compacted, so intermediate versions would only be read and thrown
away by a restore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from processors import ledger
from processors.metrics import ProcessorMetrics
from processors.processor_settings import ProcessorSettings
from processors.restore import PartitionSnapshot, read_partition
from schemas.codec import (
    decode_outcome,
    decode_state,
    encode_outcome,
    encode_state,
)
from schemas.keys import event_key, outcome_key, state_key
from schemas.model import Command, OutcomeStatus, RejectReason

Record = tuple[bytes, bytes | None]  # key, value (None = tombstone)


@dataclass(slots=True)
class StagedOutputs:
    """What one partition's share of a batch writes, plus counts for the metrics."""

    events: list[Record] = field(default_factory=list)
    outcomes: list[Record] = field(default_factory=list)
    states: list[Record] = field(default_factory=list)
    events_by_type: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    rejections_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    key_reuse_conflicts: int = 0
    tombstones: int = 0

    def count_into(self, metrics: ProcessorMetrics) -> None:
        for event_type, count in self.events_by_type.items():
            metrics.events_produced.labels(event_type).inc(count)
        for reason, count in self.rejections_by_reason.items():
            metrics.rejections.labels(reason).inc(count)
        if self.accepted:
            metrics.outcomes_produced.labels(OutcomeStatus.ACCEPTED.value).inc(self.accepted)
        rejected = sum(self.rejections_by_reason.values())
        if rejected:
            metrics.outcomes_produced.labels(OutcomeStatus.REJECTED.value).inc(rejected)
        if self.duplicates:
            metrics.duplicates.inc(self.duplicates)
        if self.key_reuse_conflicts:
            metrics.key_reuse_conflicts.inc(self.key_reuse_conflicts)
        if self.tombstones:
            metrics.tombstones.inc(self.tombstones)


class PartitionLedger:
    """The committed state of one partition plus the open batch's staged outputs."""

    def __init__(self, partition: int, state: ledger.LedgerState) -> None:
        self.partition = partition
        self.state = state
        self.outputs = StagedOutputs()

    def decide(self, command: Command, record_timestamp_us: int) -> None:
        """Decide one command and stage its state changes and output records."""
        decision = ledger.step(self.state, command, record_timestamp_us)
        outputs = self.outputs
        # the core encoded each event while hashing it: produce those bytes (no second encode)
        for event, encoded in zip(decision.events, decision.encoded_events, strict=True):
            outputs.events.append((event_key(event.tenant_id, event.sequence), encoded))
            name = type(event).__name__
            outputs.events_by_type[name] = outputs.events_by_type.get(name, 0) + 1
        stored = decision.stored_outcome
        if stored is not None:
            key = outcome_key(stored.tenant_id, stored.idempotency_key)
            outputs.outcomes.append((key, encode_outcome(stored)))
        if isinstance(decision, ledger.Duplicate):
            outputs.duplicates += 1
        elif isinstance(decision, ledger.Accepted):
            outputs.accepted += 1
        else:
            reason = decision.outcome.reason
            assert reason is not None
            outputs.rejections_by_reason[reason.value] = (
                outputs.rejections_by_reason.get(reason.value, 0) + 1
            )
            if reason is RejectReason.IDEMPOTENCY_KEY_REUSED:
                outputs.key_reuse_conflicts += 1

    def staged_outputs(self) -> StagedOutputs:
        """Close the batch: add expired outcomes' tombstones and the changed state records."""
        outputs = self.outputs
        expired = ledger.expired_outcomes(self.state, self.state.stream_time_us)
        self.state.forget_outcomes(expired)
        for outcome in expired:
            outputs.outcomes.append((outcome_key(outcome.tenant_id, outcome.idempotency_key), None))
        outputs.tombstones += len(expired)
        outputs.states = [(state_key(r), encode_state(r)) for r in self.state.staged_records()]
        return outputs

    def confirm(self) -> None:
        """The batch's transaction committed."""
        self.state.commit()
        self.outputs = StagedOutputs()

    def rollback(self) -> None:
        """The batch's transaction aborted: back to the last committed state."""
        self.state.abort()
        self.outputs = StagedOutputs()

    def live_idempotency_keys(self) -> int:
        return self.state.outcome_count


def restore_ledger(
    reader: Consumer, admin: AdminClient, processor_settings: ProcessorSettings, partition: int
) -> tuple[PartitionLedger, PartitionSnapshot]:
    """Read one partition's state topics and rebuild its ``LedgerState``."""
    topics = processor_settings.topics
    snapshot = read_partition(
        reader,
        admin,
        topics=(topics.balances, topics.outcomes),
        partition=partition,
        timeout_s=processor_settings.restore_timeout_s,
    )
    records = [decode_state(value) for value in snapshot.records[topics.balances].values()]
    outcomes = [decode_outcome(value) for value in snapshot.records[topics.outcomes].values()]
    state = ledger.restore(
        records,
        outcomes,
        (),
        idempotency_retention_s=processor_settings.idempotency_retention_s,
    )
    return PartitionLedger(partition, state), snapshot
