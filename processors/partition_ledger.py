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
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

import ledger
from processors.command_signatures import (
    Headers,
    KeyRegistry,
    RegistryChange,
    SignatureMode,
    Unauthenticated,
)
from processors.metrics import ProcessorMetrics
from processors.processor_settings import ProcessorSettings
from processors.restore import PartitionSnapshot, read_partitions
from processors.tenant_quotas import RateLimited, TenantQuotas, rate_limited_detail
from schemas.codec import (
    decode_outcome,
    decode_state,
    encode_notification,
    encode_outcome,
    encode_state,
    seal_event,
    split_settled_transfers,
)
from schemas.keys import (
    event_key,
    monitor_state_key,
    notification_key,
    outcome_key,
    state_key,
)
from schemas.model import (
    INT64_MAX,
    UNSIGNED_ACTOR,
    Command,
    Outcome,
    OutcomeStatus,
    PostTransaction,
    RejectReason,
    StateRecord,
)
from schemas.signing_keys import (
    STATE_SCHEMA,
    SigningKeyCommand,
    SigningKeyState,
    decode_signing_key_state,
    sha256_of,
)

SIGNING_KEY_STATE_HEADER = STATE_SCHEMA.header  # marker + fingerprint of a SigningKeyState
# The codec as the core sees it: the core never imports schemas.codec (decision 0028).
WIRE_FORMAT = ledger.WireFormat(
    seal=seal_event, decode_outcome=decode_outcome, decode_state=decode_state
)
Record = tuple[bytes, bytes | None]  # key, value (None = tombstone)
# Every stored outcome carries its decided_at_us and expires_at_us in this header (two signed
# 64-bit big-endian integers, INT64_MIN = kept forever), so a restore can index its expiry and
# recover stream time without decoding it; it is decoded when a command with its key arrives.
OUTCOME_TIMES_HEADER = "streamledger.outcome.times"
_OUTCOME_TIMES = struct.Struct(">qq")
_NEVER = ledger.KEPT_FOREVER_US  # INT64_MIN
# Every decided command gets exactly one record on ledger.replies (decision 0027): key
# ``{tenant}/{idempotency_key}``, value the encoded ``Outcome`` the client should act on, and
# these headers (ASCII): the command record it answers, and what kind of answer it is.
REPLY_TO_HEADER = "streamledger.reply.to"  # "{partition}:{offset}" of the command record
REPLY_KIND_HEADER = "streamledger.reply.kind"
REPLY_DECIDED = b"decided"  # decided now; the same outcome is stored in ledger.outcomes
REPLY_DUPLICATE = b"duplicate"  # the original outcome stored under the key (nothing new)
# key reuse, an invalid tenant/key, rate limited, unauthenticated: a reply only
REPLY_NOT_STORED = b"not_stored"
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
        self,
        partition: int,
        state: ledger.LedgerState,
        quotas: TenantQuotas | None = None,
        signatures: KeyRegistry | None = None,
    ) -> None:
        self.partition = partition
        self.state = state
        self.outputs = StagedOutputs()
        self.quotas = quotas  # per-tenant token buckets (decision 0083); None = off
        # the signing-key registry (decision 0084); None: no master secret, nothing verified
        self.signatures = signatures

    def decide(
        self,
        command: Command,
        record_timestamp_us: int,
        offset: int,
        value: bytes = b"",
        headers: Headers = None,
    ) -> None:
        """Decide the command at ``offset`` and stage its state changes, output records and its
        one reply. With signatures on, the record (``value`` as read, its ``headers``) must
        first prove it may act for its tenant, else it gets an UNAUTHENTICATED reply and
        nothing else (decision 0085). With quotas on, a command that would be decided fresh
        then takes a token of its tenant's bucket; without one it gets a RATE_LIMITED reply."""
        key = outcome_key(command.tenant_id, command.idempotency_key)
        reply_to = f"{self.partition}:{offset}"
        signatures = self.signatures
        actor = UNSIGNED_ACTOR
        if signatures is not None and signatures.mode is not SignatureMode.OFF:
            verified = signatures.verify(command.tenant_id, value, headers, record_timestamp_us)
            if isinstance(verified, Unauthenticated):
                self._stage_reply_only(
                    command,
                    record_timestamp_us,
                    reason=RejectReason.UNAUTHENTICATED,
                    detail=verified.detail,
                    key=key,
                    reply_to=reply_to,
                )
                return
            actor = verified
        quotas = self.quotas
        if quotas is not None and self._decided_fresh(command, record_timestamp_us):
            verdict = quotas.take(command.tenant_id, record_timestamp_us)
            if isinstance(verdict, RateLimited):
                self._stage_rate_limited(command, record_timestamp_us, verdict, key, reply_to)
                return
        # the verified key id is the actor of the command's events (issue 21 §3)
        decision = ledger.step(self.state, command, record_timestamp_us, actor)
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
        detail = rate_limited_detail(self.quotas.limits, verdict.retry_after_ms)
        self._stage_reply_only(
            command,
            record_timestamp_us,
            reason=RejectReason.RATE_LIMITED,
            detail=detail,
            key=key,
            reply_to=reply_to,
        )
        self.outputs.reply_headers[-1].append(
            (REPLY_RETRY_AFTER_HEADER, str(verdict.retry_after_ms).encode())
        )
        tenants = self.outputs.rate_limited_by_tenant
        tenants[command.tenant_id] = tenants.get(command.tenant_id, 0) + 1

    def _stage_reply_only(
        self,
        command: Command,
        record_timestamp_us: int,
        *,
        reason: RejectReason,
        detail: str,
        key: bytes,
        reply_to: str,
    ) -> None:
        """A rejection that is a reply only (kind not_stored): no outcome, no event, no
        sequence, stream time unchanged; the key stays free."""
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
            reason=reason,
            detail=detail,
            decided_at_us=record_timestamp_us,
            expires_at_us=(
                None if retention_us == 0 else min(record_timestamp_us + retention_us, INT64_MAX)
            ),
        )
        self._stage_reply(key, encode_outcome(outcome), reply_to, REPLY_NOT_STORED)
        self._count_rejection(reason)

    def _count_rejection(self, reason: RejectReason) -> None:
        rejections = self.outputs.rejections_by_reason
        rejections[reason.value] = rejections.get(reason.value, 0) + 1

    def decide_signing_key(
        self,
        command: SigningKeyCommand,
        value: bytes,
        headers: Headers,
        record_timestamp_us: int,
        offset: int,
    ) -> None:
        """A GRANT or REVOKE of the tenant's key registry (decision 0084), decided at its
        position of the log, with one reply: ``decided`` (the registry changed; its state record
        goes to ledger.balances with the batch), ``duplicate`` (already so) or ``not_stored``
        (rejected INVALID_COMMAND, or UNAUTHENTICATED without the operator's signature)."""
        assert self.signatures is not None
        decision = self.signatures.decide(command, value, headers, record_timestamp_us, offset)
        rejected = decision.change is RegistryChange.REJECTED
        reason = None
        if rejected:
            reason = (
                RejectReason.UNAUTHENTICATED
                if decision.unauthenticated
                else RejectReason.INVALID_COMMAND
            )
            self._count_rejection(reason)
        outcome = Outcome(
            tenant_id=command.tenant_id,
            idempotency_key=command.idempotency_key,
            command_type=type(command).__name__,
            fingerprint=sha256_of(value),
            field_fingerprints=b"",
            status=OutcomeStatus.REJECTED if rejected else OutcomeStatus.ACCEPTED,
            reason=reason,
            detail=decision.detail,
            decided_at_us=record_timestamp_us,
            expires_at_us=None,
        )
        kind = {
            RegistryChange.CHANGED: REPLY_DECIDED,
            RegistryChange.UNCHANGED: REPLY_DUPLICATE,
            RegistryChange.REJECTED: REPLY_NOT_STORED,
        }[decision.change]
        key = outcome_key(command.tenant_id, command.idempotency_key)
        self._stage_reply(key, encode_outcome(outcome), f"{self.partition}:{offset}", kind)

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
        if self.signatures is not None:
            outputs.states.extend(self.signatures.staged_records())
        return outputs

    def commit(self) -> None:
        """The batch's transaction committed."""
        self.state.commit()
        if self.quotas is not None:
            self.quotas.commit()
        if self.signatures is not None:
            self.signatures.commit()
        self.outputs = StagedOutputs()

    def abort(self) -> None:
        """The batch's transaction aborted: back to the last committed state."""
        self.state.abort()
        if self.quotas is not None:
            self.quotas.abort()
        if self.signatures is not None:
            self.signatures.abort()
        self.outputs = StagedOutputs()

    def live_idempotency_keys(self) -> int:
        return self.state.outcome_count


def restore_ledgers(
    reader: Consumer,
    admin: AdminClient,
    processor_settings: ProcessorSettings,
    partitions: Sequence[int],
    known_topics: set[str] | None = None,
) -> Iterator[tuple[PartitionLedger, PartitionSnapshot]]:
    """Read the state topics of ``partitions`` and rebuild each one's ``LedgerState``, yielded in
    order, as the processor's loop restores an assignment: small partitions are read in one pass
    (``read_partitions``, decision 0124)."""
    topics = processor_settings.topics
    for snapshot in read_partitions(
        reader,
        admin,
        topics=(topics.balances, topics.outcomes),
        partitions=partitions,
        timeout_s=processor_settings.restore_timeout_s,
        header_name=OUTCOME_TIMES_HEADER,
        known_topics=known_topics,
    ):
        yield ledger_from_snapshot(snapshot, processor_settings), snapshot


def ledger_from_snapshot(
    snapshot: PartitionSnapshot, processor_settings: ProcessorSettings
) -> PartitionLedger:
    """Rebuild one partition's ``LedgerState`` from its state topics as read back
    (``read_partition`` with ``header_name=OUTCOME_TIMES_HEADER``): outcomes that carry the
    header stay encoded until first use, the others are decoded now."""
    topics = processor_settings.topics
    signing_keys, records, transfers = _split_balances(snapshot.records[topics.balances])
    values = snapshot.records[topics.outcomes]
    times = snapshot.header_values[topics.outcomes]
    # the keys with a header are among the values' (``read_partition``): as many means all, and
    # the scan for the others (~0.1 s per million keys) is skipped
    decoded = (
        []
        if len(times) == len(values)
        else [decode_outcome(value) for key, value in values.items() if key not in times]
    )
    state = ledger.restore(
        records,
        decoded,
        (),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=processor_settings.idempotency_retention_s,
        encoded_outcomes=encoded_outcomes_of(values, times),
        encoded_transfers=transfers,
    )
    limits = processor_settings.tenant_quota_limits
    # the buckets start full after every restore: at most one extra burst (decision 0083)
    quotas = None if limits is None else TenantQuotas(limits)
    master = processor_settings.signing_master
    # no master secret (settings built without a stack home): no registry, nothing verified
    signatures = (
        KeyRegistry(
            master,
            processor_settings.signature_mode,
            signing_keys,
            stream_time_us=state.stream_time_us,
        )
        if master
        else None
    )
    return PartitionLedger(snapshot.partition, state, quotas, signatures)


def _split_balances(
    balances: dict[bytes, bytes],
) -> tuple[list[SigningKeyState], list[StateRecord], ledger.EncodedTransfers]:
    """One pass over the ``ledger.balances`` records: the signing-key registry's (decision
    0084: told apart by their 10-byte header, compared in place), the settled transfers to keep
    encoded (decision 0102: read without decoding them, with each tenant's highest sequence
    among them), and every other record decoded."""
    header = SIGNING_KEY_STATE_HEADER
    settled, last_sequences, others = split_settled_transfers(balances)
    signing_keys: list[SigningKeyState] = []
    records: list[StateRecord] = []
    for value in others:
        if value.startswith(header):
            signing_keys.append(decode_signing_key_state(value))
        else:
            records.append(decode_state(value))
    encoded = ledger.EncodedTransfers(values=settled, last_sequences=last_sequences)
    return signing_keys, records, encoded


def outcome_times(outcome: Outcome) -> bytes:
    """The ``OUTCOME_TIMES_HEADER`` value of a stored outcome."""
    expires_at_us = _NEVER if outcome.expires_at_us is None else outcome.expires_at_us
    return _OUTCOME_TIMES.pack(outcome.decided_at_us, expires_at_us)


def encoded_outcomes_of(
    values: dict[bytes, bytes], times: dict[bytes, bytes]
) -> ledger.EncodedOutcomes:
    """The outcome records that carry their times header, for ``ledger.restore`` to keep
    encoded (decision 0102): their values by record key, and the headers' two integers read
    all at once (one join and one ``array``, no call per record)."""
    # every record has its header as the processor writes them; the core keeps a copy
    kept = values if len(times) == len(values) else {key: values[key] for key in times}
    keys = list(times)
    headers = b"".join(times.values())
    if len(headers) != _OUTCOME_TIMES.size * len(keys):
        raise ValueError(f"a {OUTCOME_TIMES_HEADER} header is not {_OUTCOME_TIMES.size} bytes")
    integers = array("q", headers)
    if sys.byteorder == "little":
        integers.byteswap()  # the header's integers are big-endian
    return ledger.EncodedOutcomes(values=kept, keys=keys, times=integers)
