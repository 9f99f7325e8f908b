"""One partition's ledger as the loop sees it: the pure core plus the bytes to produce.

``PartitionLedger`` is the thin adapter between the pure core ``ledger`` (decisions over a
``LedgerState``) and the transactional loop. The bytes live here, not in the core: ``WIRE_FORMAT``
gives each state the codec's one-pass event sealer (hash and encoding from one encode) and its
outcome decoder (outcomes restored from ``ledger.outcomes`` stay encoded until a command with
their key arrives, they expire or are exported). It produces each decision's event bytes (made
by the sealer), encodes its stored outcome as the decision is made, and at the end of a batch
adds the outcome tombstones that stream time expired and the latest version of every state
record the batch changed (one record per key per batch: ``ledger.balances`` is compacted, so
intermediate versions would only be read and thrown away by a restore).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

import ledger
from processors.metrics import ProcessorMetrics
from processors.processor_settings import ProcessorSettings
from processors.restore import PartitionSnapshot, read_partition
from processors.tenant_quotas import RateLimited, TenantQuotas, rate_limited_detail
from schemas.codec import (
    decode_outcome,
    decode_state,
    encode_notification,
    encode_outcome,
    encode_state,
    seal_event,
)
from schemas.keys import (
    KEY_SEPARATOR,
    event_key,
    monitor_state_key,
    notification_key,
    outcome_key,
    state_key,
)
from schemas.model import (
    INT64_MAX,
    Command,
    Outcome,
    OutcomeStatus,
    PostTransaction,
    RejectReason,
)

# The codec as the core sees it: the core never imports schemas.codec (decision 0028).
WIRE_FORMAT = ledger.WireFormat(seal=seal_event, decode_outcome=decode_outcome)
Record = tuple[bytes, bytes | None]  # key, value (None = tombstone)
# Every stored outcome carries its decided_at_us and expires_at_us in this header (two signed
# 64-bit big-endian integers, INT64_MIN = kept forever), so a restore can index its expiry and
# recover stream time without decoding it; it is decoded when a command with its key arrives.
OUTCOME_TIMES_HEADER = "streamledger.outcome.times"
_OUTCOME_TIMES = struct.Struct(">qq")
_NEVER = -(2**63)
# Every decided command gets exactly one record on ledger.replies (decision 0027): key
# ``{tenant}/{idempotency_key}``, value the encoded ``Outcome`` the client should act on, and
# these headers (ASCII): the command record it answers, and what kind of answer it is.
REPLY_TO_HEADER = "streamledger.reply.to"  # "{partition}:{offset}" of the command record
REPLY_KIND_HEADER = "streamledger.reply.kind"
REPLY_DECIDED = b"decided"  # decided now; the same outcome is stored in ledger.outcomes
REPLY_DUPLICATE = b"duplicate"  # the original outcome stored under the key (nothing new)
REPLY_NOT_STORED = b"not_stored"  # key reuse, an invalid tenant/key, rate limited: a reply only
# On a RATE_LIMITED reply only (decision 0083): ms of record time until the tenant's bucket
# holds a token again, decimal ASCII.
REPLY_RETRY_AFTER_HEADER = "streamledger.reply.retry_after_ms"
SCOPE_FIELDS = ("tenant_id", "idempotency_key")  # a violation of these is never stored
ReplyHeaders = list[tuple[str, str | bytes | None]]


@dataclass(slots=True)
class StagedOutputs:
    """What one partition's share of a batch writes, plus counts for the metrics."""

    events: list[Record] = field(default_factory=list)
    outcomes: list[Record] = field(default_factory=list)
    # OUTCOME_TIMES_HEADER per record of ``outcomes``, in order (None for a tombstone)
    outcome_times: list[bytes | None] = field(default_factory=list)
    states: list[Record] = field(default_factory=list)
    replies: list[Record] = field(default_factory=list)
    reply_headers: list[ReplyHeaders] = field(default_factory=list)  # per record of ``replies``
    # balance monitors' edges (decision 0058), in sequence order, for ledger.notifications
    notifications: list[Record] = field(default_factory=list)
    notifications_by_type: dict[str, int] = field(default_factory=dict)
    events_by_type: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    # postings of each accepted PostTransaction, for the postings-per-transaction histogram
    transaction_postings: list[int] = field(default_factory=list)
    rejections_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    key_reuse_conflicts: int = 0
    tombstones: int = 0
    rate_limited_by_tenant: dict[str, int] = field(default_factory=dict)

    def count_into(self, metrics: ProcessorMetrics) -> None:
        for event_type, count in self.events_by_type.items():
            metrics.events_produced.labels(event_type).inc(count)
        for kind, count in self.notifications_by_type.items():
            metrics.notifications_produced.labels(kind).inc(count)
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
        for postings in self.transaction_postings:
            metrics.ledger_transaction_postings.observe(postings)
        for tenant_id, count in self.rate_limited_by_tenant.items():
            metrics.count_rate_limited(tenant_id, count)


class PartitionLedger:
    """The committed state of one partition plus the open batch's staged outputs."""

    def __init__(
        self, partition: int, state: ledger.LedgerState, quotas: TenantQuotas | None = None
    ) -> None:
        self.partition = partition
        self.state = state
        self.outputs = StagedOutputs()
        self.quotas = quotas  # per-tenant token buckets (decision 0083); None = off

    def decide(self, command: Command, record_timestamp_us: int, offset: int) -> None:
        """Decide the command at ``offset`` and stage its state changes, output records and its
        one reply. With quotas on, a command that would be decided fresh first takes a token
        of its tenant's bucket; without one it gets a RATE_LIMITED reply and nothing else."""
        key = outcome_key(command.tenant_id, command.idempotency_key)
        reply_to = f"{self.partition}:{offset}"
        quotas = self.quotas
        if quotas is not None and self._decided_fresh(command, record_timestamp_us):
            verdict = quotas.take(command.tenant_id, record_timestamp_us)
            if isinstance(verdict, RateLimited):
                self._stage_rate_limited(command, record_timestamp_us, verdict, key, reply_to)
                return
        decision = ledger.step(self.state, command, record_timestamp_us)
        outputs = self.outputs
        self._stage_events(decision)
        stored = decision.stored_outcome
        if stored is not None:
            encoded = encode_outcome(stored)
            outputs.outcomes.append((key, encoded))
            outputs.outcome_times.append(outcome_times(stored))
            self._stage_reply(key, encoded, reply_to, REPLY_DECIDED)
        elif isinstance(decision, ledger.Duplicate):
            self._stage_reply(key, encode_outcome(decision.outcome), reply_to, REPLY_DUPLICATE)
        else:
            self._stage_reply(key, encode_outcome(decision.outcome), reply_to, REPLY_NOT_STORED)
        if isinstance(decision, ledger.Duplicate):
            outputs.duplicates += 1
        elif isinstance(decision, ledger.Accepted):
            outputs.accepted += 1
            if isinstance(command, PostTransaction):
                outputs.transaction_postings.append(len(command.postings))
        else:
            reason = decision.outcome.reason
            assert reason is not None
            outputs.rejections_by_reason[reason.value] = (
                outputs.rejections_by_reason.get(reason.value, 0) + 1
            )
            if reason is RejectReason.IDEMPOTENCY_KEY_REUSED:
                outputs.key_reuse_conflicts += 1

    def _decided_fresh(self, command: Command, record_timestamp_us: int) -> bool:
        """Whether the core would decide and store ``command`` now (precedence 2 of the
        contract's rules): its key holds no live outcome and its scope fields are valid.
        Duplicates, key reuse and invalid scope fields are replies that take no token."""
        state = self.state
        stored = state.outcome(command.tenant_id, command.idempotency_key)
        if stored is not None:
            stream_time_us = max(state.stream_time_us, record_timestamp_us)
            if stored.expires_at_us is None or stored.expires_at_us > stream_time_us:
                return False
        violation = ledger.command_violation(command)
        return violation is None or violation[0] not in SCOPE_FIELDS

    def _stage_rate_limited(
        self,
        command: Command,
        record_timestamp_us: int,
        verdict: RateLimited,
        key: bytes,
        reply_to: str,
    ) -> None:
        """A RATE_LIMITED reply (kind not_stored, with the retry-after header): no outcome, no
        event, no sequence, stream time unchanged; the key stays free for the retry."""
        assert self.quotas is not None
        fingerprint, field_fingerprints = ledger.command_fingerprint(command)
        retention_us = self.state.idempotency_retention_us
        outcome = Outcome(
            tenant_id=command.tenant_id,
            idempotency_key=command.idempotency_key,
            command_type=type(command).__name__,
            fingerprint=fingerprint,
            field_fingerprints=field_fingerprints,
            status=OutcomeStatus.REJECTED,
            event_sequences=(),
            reason=RejectReason.RATE_LIMITED,
            detail=rate_limited_detail(self.quotas.limits, verdict.retry_after_ms),
            decided_at_us=record_timestamp_us,
            expires_at_us=(
                None if retention_us == 0 else min(record_timestamp_us + retention_us, INT64_MAX)
            ),
        )
        self._stage_reply(key, encode_outcome(outcome), reply_to, REPLY_NOT_STORED)
        self.outputs.reply_headers[-1].append(
            (REPLY_RETRY_AFTER_HEADER, str(verdict.retry_after_ms).encode())
        )
        outputs = self.outputs
        reason = RejectReason.RATE_LIMITED.value
        outputs.rejections_by_reason[reason] = outputs.rejections_by_reason.get(reason, 0) + 1
        tenants = outputs.rate_limited_by_tenant
        tenants[command.tenant_id] = tenants.get(command.tenant_id, 0) + 1

    def tick(self, record_timestamp_us: int) -> None:
        """A tick record (``processors.ticks``): expire what is due by its timestamp."""
        self._stage_events(ledger.step_tick(self.state, record_timestamp_us))

    def next_deadline_us(self) -> int | None:
        """The earliest deadline of a pending transfer of this partition, if any."""
        return ledger.next_deadline_us(self.state)

    def _stage_events(self, decision: ledger.Decision | ledger.Ticked) -> None:
        outputs = self.outputs
        # the core encoded each event while hashing it: produce those bytes (no second encode)
        for event, encoded in zip(decision.events, decision.encoded_events, strict=True):
            outputs.events.append((event_key(event.tenant_id, event.sequence), encoded))
            name = type(event).__name__
            outputs.events_by_type[name] = outputs.events_by_type.get(name, 0) + 1
        # each notification after the events that caused it, in the same transaction
        for notification in decision.notifications:
            outputs.notifications.append(
                (notification_key(notification), encode_notification(notification))
            )
            kind = type(notification).__name__
            outputs.notifications_by_type[kind] = outputs.notifications_by_type.get(kind, 0) + 1

    def _stage_reply(self, key: bytes, value: bytes, reply_to: str, kind: bytes) -> None:
        self.outputs.replies.append((key, value))
        self.outputs.reply_headers.append(
            [(REPLY_TO_HEADER, reply_to.encode()), (REPLY_KIND_HEADER, kind)]
        )

    def staged_outputs(self) -> StagedOutputs:
        """Close the batch: add expired outcomes' tombstones and the changed state records."""
        outputs = self.outputs
        expired = ledger.expired_outcomes(self.state, self.state.stream_time_us)
        self.state.forget_outcomes(expired)
        for outcome in expired:
            outputs.outcomes.append((outcome_key(outcome.tenant_id, outcome.idempotency_key), None))
            outputs.outcome_times.append(None)
        outputs.tombstones += len(expired)
        outputs.states = [(state_key(r), encode_state(r)) for r in self.state.staged_records()]
        outputs.states.extend(  # a deleted monitor's tombstone
            (monitor_state_key(tenant_id, monitor_id), None)
            for tenant_id, monitor_id in self.state.staged_deleted_monitors()
        )
        return outputs

    def commit(self) -> None:
        """The batch's transaction committed."""
        self.state.commit()
        if self.quotas is not None:
            self.quotas.commit()
        self.outputs = StagedOutputs()

    def abort(self) -> None:
        """The batch's transaction aborted: back to the last committed state."""
        self.state.abort()
        if self.quotas is not None:
            self.quotas.abort()
        self.outputs = StagedOutputs()

    def live_idempotency_keys(self) -> int:
        return self.state.outcome_count


def restore_ledger(
    reader: Consumer, admin: AdminClient, processor_settings: ProcessorSettings, partition: int
) -> tuple[PartitionLedger, PartitionSnapshot]:
    """Read one partition's state topics and rebuild its ``LedgerState``; outcomes that carry
    ``OUTCOME_TIMES_HEADER`` stay encoded until first use, the others are decoded now."""
    topics = processor_settings.topics
    snapshot = read_partition(
        reader,
        admin,
        topics=(topics.balances, topics.outcomes),
        partition=partition,
        timeout_s=processor_settings.restore_timeout_s,
        header_name=OUTCOME_TIMES_HEADER,
    )
    return ledger_from_snapshot(snapshot, processor_settings), snapshot


def ledger_from_snapshot(
    snapshot: PartitionSnapshot, processor_settings: ProcessorSettings
) -> PartitionLedger:
    """Rebuild one partition's ``LedgerState`` from its state topics as read back
    (``read_partition`` with ``header_name=OUTCOME_TIMES_HEADER``): outcomes that carry the
    header stay encoded until first use, the others are decoded now."""
    topics = processor_settings.topics
    records = [decode_state(value) for value in snapshot.records[topics.balances].values()]
    values = snapshot.records[topics.outcomes]
    times = snapshot.header_values[topics.outcomes]
    decoded = [decode_outcome(value) for key, value in values.items() if key not in times]
    state = ledger.restore(
        records,
        decoded,
        (),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=processor_settings.idempotency_retention_s,
        encoded_outcomes=_encoded_outcomes(values, times),
    )
    limits = processor_settings.tenant_quota_limits
    # the buckets start full after every restore: at most one extra burst (decision 0083)
    quotas = None if limits is None else TenantQuotas(limits)
    return PartitionLedger(snapshot.partition, state, quotas)


def outcome_times(outcome: Outcome) -> bytes:
    """The ``OUTCOME_TIMES_HEADER`` value of a stored outcome."""
    expires_at_us = _NEVER if outcome.expires_at_us is None else outcome.expires_at_us
    return _OUTCOME_TIMES.pack(outcome.decided_at_us, expires_at_us)


def _encoded_outcomes(
    values: dict[bytes, bytes], times: dict[bytes, bytes]
) -> Iterator[ledger.EncodedOutcome]:
    """(tenant, key, decided_at, expires_at, bytes) per outcome record with a times header; the
    record key is ``outcome_key`` (the tenant id cannot contain the separator)."""
    unpack = _OUTCOME_TIMES.unpack
    for key, header in times.items():
        tenant_id, idempotency_key = key.decode().split(KEY_SEPARATOR, 1)
        decided_at_us, expires_at_us = unpack(header)
        yield (
            tenant_id,
            idempotency_key,
            decided_at_us,
            None if expires_at_us == _NEVER else expires_at_us,
            values[key],
        )
