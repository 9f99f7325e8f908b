"""Deciding: ``decide`` a command or a tick against a state, ``step`` = decide + stage.

``decide(state, command, record_timestamp_us)`` reads the state and never changes it: it checks
the contract, looks the idempotency key up, expires what stream time made due, applies the rules
of the command's type (``ledger.rules``) and, if none is broken, builds the events
(``ledger.execution``). The result is a value (``ledger.decisions``); ``step`` stages its
changes into the open batch, the only write.

Time
----
*Stream time* is the highest timestamp among the partition's records that produced a stored
outcome or were ticks; it never goes back. A command is effective at its record timestamp, but
never before its tenant's last event (``TenantHead.last_effective_at_us``), so a tenant's
effective times never decrease whatever producers' clocks do. Before a stored decision or a
tick, pending transfers whose ``expires_at_us <= stream time`` expire, in (expires_at_us,
tenant_id, transfer_id) order, each **effective at its own deadline** — never at the time of the
record that happened to move stream time, so a tenant's events are a function of its own
commands and their timestamps. Tick records (``decide_tick``) move stream time on a partition
where nobody writes, so a deadline is met within a bounded delay. Replies (duplicates, key reuse)
leave stream time alone. ``restore`` recovers stream time as the largest ``decided_at_us`` of the
stored outcomes and ``last_effective_at_us`` of the heads. An outcome whose ``expires_at_us <=
stream time`` is treated as absent by ``decide`` whether or not its tombstone has been written,
so where batch boundaries fall never changes a decision.
"""

from __future__ import annotations

from ledger._generated_records import new_accepted, new_duplicate, new_rejected, new_ticked
from ledger.decisions import (
    Decision,
    Rejection,
    Ticked,
)
from ledger.draft import Draft
from ledger.execution import execute, expire_pendings
from ledger.fingerprints import Fingerprint, command_fingerprint, first_differing_field
from ledger.monitor_steps import (
    MonitorChanges,
    execute_monitor_command,
    merged,
    watch,
    with_monitor_changes,
)
from ledger.rules import SCOPE_FIELDS, command_violation, invalid, rule_rejection
from ledger.state import LedgerState
from schemas._generated_records import new_outcome
from schemas.model import (
    INT64_MAX,
    SYSTEM_ACTOR,
    UNSIGNED_ACTOR,
    Command,
    CreateMonitor,
    DeleteMonitor,
    Outcome,
    OutcomeStatus,
    RejectReason,
)


def _new_outcome(
    state: LedgerState,
    command: Command,
    fingerprint: Fingerprint,
    decided_at_us: int,
    *,
    sequences: tuple[int, ...] = (),
    rejection: Rejection | None = None,
) -> Outcome:
    retention_us = state.idempotency_retention_us
    expires_at_us = None if retention_us == 0 else min(decided_at_us + retention_us, INT64_MAX)
    return new_outcome(
        tenant_id=command.tenant_id,
        idempotency_key=command.idempotency_key,
        command_type=type(command).__name__,
        fingerprint=fingerprint[0],
        field_fingerprints=fingerprint[1],
        status=OutcomeStatus.ACCEPTED if rejection is None else OutcomeStatus.REJECTED,
        event_sequences=sequences,
        reason=None if rejection is None else rejection[0],
        detail="" if rejection is None else rejection[1],
        decided_at_us=decided_at_us,
        expires_at_us=expires_at_us,
    )


def _against_stored(
    state: LedgerState,
    stored: Outcome,
    command: Command,
    fingerprint: Fingerprint,
    *,
    violation: tuple[str, str] | None,
    record_timestamp_us: int,
) -> Decision:
    """The key holds a live outcome: a duplicate, or a reply-only rejection."""
    if stored.fingerprint == fingerprint[0] and stored.command_type == type(command).__name__:
        return new_duplicate(outcome=stored)
    if violation is not None:
        rejection = invalid(violation)
    else:
        field = first_differing_field(stored, command)
        rejection = (
            RejectReason.IDEMPOTENCY_KEY_REUSED,
            (f"{field}: differs from the command first decided under this idempotency key"),
        )
    outcome = _new_outcome(state, command, fingerprint, record_timestamp_us, rejection=rejection)
    return new_rejected(events=(), outcome=outcome, changes=None)


def decide(
    state: LedgerState, command: Command, record_timestamp_us: int, actor: str = UNSIGNED_ACTOR
) -> Decision:
    """Decide one command at the given record timestamp. Reads ``state``, never changes it.

    ``actor`` is who issued the command (the signing key id the processor verified; contract
    v1.7, decision 0093): the command's event carries it, inside its hashed bytes. Expiries
    the decision writes first carry ``SYSTEM_ACTOR``. It plays no part in the decision."""
    stream_time_us = max(state._stream_time_us, record_timestamp_us)
    violation = command_violation(command)
    fingerprint = command_fingerprint(command)
    if violation is not None and violation[0] in SCOPE_FIELDS:
        outcome = _new_outcome(
            state, command, fingerprint, record_timestamp_us, rejection=invalid(violation)
        )
        return new_rejected(events=(), outcome=outcome, changes=None)
    stored = state.outcome(command.tenant_id, command.idempotency_key)
    if stored is not None and (
        stored.expires_at_us is None or stored.expires_at_us > stream_time_us
    ):
        return _against_stored(
            state,
            stored,
            command,
            fingerprint,
            violation=violation,
            record_timestamp_us=record_timestamp_us,
        )
    draft = Draft(state, actor)
    expire_pendings(draft, stream_time_us)
    expired_count = len(draft.events)
    # never before the tenant's last event (a producer whose clock is behind, or two producers
    # of one tenant whose batches interleave): time is monotonic per tenant (decision 0026)
    effective_at_us = max(record_timestamp_us, draft.effective_floor_us(command.tenant_id))
    rejection = (
        invalid(violation)
        if violation is not None
        else rule_rejection(draft, command, effective_at_us)
    )
    if rejection is not None:
        outcome = _new_outcome(state, command, fingerprint, effective_at_us, rejection=rejection)
        watched = watch(state, draft.events)  # the expiries' edges
        return new_rejected(
            events=tuple(draft.events),
            outcome=outcome,
            changes=with_monitor_changes(draft.changes(outcome, stream_time_us), watched),
            encoded_events=tuple(draft.encoded_events),
            notifications=watched.notifications,
        )
    watched = _execute(draft, command, effective_at_us)
    sequences = tuple(event.sequence for event in draft.events[expired_count:])
    outcome = _new_outcome(state, command, fingerprint, effective_at_us, sequences=sequences)
    return new_accepted(
        events=tuple(draft.events),
        outcome=outcome,
        changes=with_monitor_changes(draft.changes(outcome, stream_time_us), watched),
        encoded_events=tuple(draft.encoded_events),
        notifications=watched.notifications,
    )


def _execute(draft: Draft, command: Command, effective_at_us: int) -> MonitorChanges:
    """Build the accepted command's event into ``draft``; return what the decision's events
    (expiries first, then the command's) do to balance monitors, in sequence order."""
    if isinstance(command, CreateMonitor | DeleteMonitor):
        expiries = watch(draft.state, draft.events)
        return merged(expiries, execute_monitor_command(draft, command, effective_at_us))
    execute(draft, command, effective_at_us)
    return watch(draft.state, draft.events)


def step(
    state: LedgerState, command: Command, record_timestamp_us: int, actor: str = UNSIGNED_ACTOR
) -> Decision:
    """Decide one command (issued by ``actor``) and stage its changes into the open batch."""
    decision = decide(state, command, record_timestamp_us, actor)
    state.stage(decision.changes)
    return decision


def decide_tick(state: LedgerState, record_timestamp_us: int) -> Ticked:
    """A tick record (no command, see ``processors.ticks``): stream time moves to its timestamp
    and every pending transfer due by then expires, effective at its deadline. Reads ``state``.

    Ticks are records of the command log, so a replay expires the same transfers at the same
    point of the log: the log still decides everything."""
    stream_time_us = max(state._stream_time_us, record_timestamp_us)
    draft = Draft(state, SYSTEM_ACTOR)  # a tick is no command: only expiries, caused by time
    expire_pendings(draft, stream_time_us)
    watched = watch(state, draft.events)
    return new_ticked(
        events=tuple(draft.events),
        changes=with_monitor_changes(draft.changes(None, stream_time_us), watched),
        encoded_events=tuple(draft.encoded_events),
        notifications=watched.notifications,
    )


def step_tick(state: LedgerState, record_timestamp_us: int) -> Ticked:
    """Decide one tick and stage its changes into the open batch."""
    decision = decide_tick(state, record_timestamp_us)
    state.stage(decision.changes)
    return decision


def next_deadline_us(state: LedgerState) -> int | None:
    """The earliest deadline of a live pending transfer (committed or staged), or None: when a
    tick would expire something. Prunes ended transfers off the top of the index first."""
    index = state._pending_index
    index.prune(state._pending_is_live)
    tops = [heap[0][0] for heap in (index.committed, index.staged) if heap]
    return min(tops) if tops else None


def expired_outcomes(
    state: LedgerState, stream_time_us: int, *, limit: int | None = None
) -> tuple[Outcome, ...]:
    """Stored outcomes with ``expires_at_us <= stream_time_us``, in (expires_at, tenant, key)
    order, at most ``limit``: the tombstones to write. Pure; ``forget_outcomes`` drops them."""
    index = state._outcome_index
    if not index.any_due(stream_time_us):
        return ()
    entries = index.due(stream_time_us, state._outcome_is_live)
    if limit is not None:
        entries = entries[:limit]
    found = tuple(state.outcome(tenant_id, key) for _, tenant_id, key in entries)
    assert all(
        outcome is not None and outcome.expires_at_us == entry[0]
        for outcome, entry in zip(found, entries, strict=True)
    )
    return found  # type: ignore[return-value]
