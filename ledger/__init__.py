"""The pure ledger core: one partition's state, ``decide`` and the fold ``apply``.

No I/O, no clock, no randomness, no codec: time comes in as the command record's timestamp, ids
derive from (tenant, sequence), and bytes come in through the ``WireFormat`` the partition
adapter (``processors.partition_ledger``) hands each state. It imports the standard library,
the contract's value types (``schemas.model``, ``schemas.limits``) and the project's error tree.

How the loop uses it (one partition, one batch at a time)::

    state = restore(records, outcomes, events, wire_format=..., ...)   # on assignment
    for command, timestamp_us in batch:
        decision = step(state, command, timestamp_us)     # decide + stage, never raises on input
        produce(decision.encoded_events); produce(decision.stored_outcome); reply(decision.outcome)
        produce(decision.notifications)                    # ledger.notifications (decision 0058)
    tombstones = expired_outcomes(state, state.stream_time_us)
    state.forget_outcomes(tombstones)
    produce(state.staged_records())                        # ledger.balances
    commit the Kafka transaction, then state.commit()      # or: abort it, then state.abort()

The modules, by job (read them in this order):

=========================  ===================================================================
``ledger.decisions``       what ``decide`` returns: Accepted / Rejected / Duplicate / Ticked
``ledger.state``           ``LedgerState`` (records, stream time, undo log) and ``WireFormat``
``ledger.expiry``          the expiry indexes of pending transfers and stored outcomes
``ledger.effects``         what an event does: postings and status transitions (the one
                           definition, shared with ``projections.batch``)
``ledger.fingerprints``    command fingerprints (idempotency: "the same command")
``ledger.rules``           contract checks the rules rely on, rejections per command type
``ledger.draft``           a decision's draft: the records it changes, its sealed events
``ledger.execution``       the events an accepted command (or stream time) causes
``ledger.transactions``    multi-leg transactions: rules, events, fold (decision 0040)
``ledger.monitors``        balance monitors: fields, operators, the comparison (decision 0058)
``ledger.monitor_steps``   monitor commands' rules and events; ``watch``: the edges a
                           decision's events cause (notifications, the ``holds`` flags)
``ledger.decider``         ``decide``/``step``, ``decide_tick``/``step_tick``, time
``ledger.fold``            ``apply``: fold a logged event into a state, verifying it
``ledger.invariants``      ``assert_invariants``: the full check after a restore
``ledger.snapshot``        ``export_records``, ``outcomes_of``, ``restore``
=========================  ===================================================================

The names below are the public surface; everything else is the package's own.
"""

from ledger.decider import (
    decide,
    decide_tick,
    expired_outcomes,
    next_deadline_us,
    step,
    step_tick,
)
from ledger.decisions import Accepted, Decision, Duplicate, Rejected, StateChanges, Ticked
from ledger.effects import PostingKind, counter_changes, next_status, postings
from ledger.fingerprints import (
    FINGERPRINT_FIELDS,
    command_fingerprint,
    field_fingerprint_pairs,
    fingerprint_source,
    first_differing_field,
    reference_command_fingerprint,
)
from ledger.fold import apply
from ledger.invariants import assert_invariants
from ledger.rules import command_violation
from ledger.snapshot import (
    KEPT_FOREVER_US,
    EncodedOutcomes,
    EncodedTransfers,
    export_records,
    outcomes_of,
    restore,
)
from ledger.state import DEFAULT_IDEMPOTENCY_RETENTION_S, LedgerState, WireFormat

__all__ = [
    "DEFAULT_IDEMPOTENCY_RETENTION_S",
    "FINGERPRINT_FIELDS",
    "KEPT_FOREVER_US",
    "Accepted",
    "Decision",
    "Duplicate",
    "EncodedOutcomes",
    "EncodedTransfers",
    "LedgerState",
    "PostingKind",
    "Rejected",
    "StateChanges",
    "Ticked",
    "WireFormat",
    "apply",
    "assert_invariants",
    "command_fingerprint",
    "command_violation",
    "counter_changes",
    "decide",
    "decide_tick",
    "expired_outcomes",
    "export_records",
    "field_fingerprint_pairs",
    "fingerprint_source",
    "first_differing_field",
    "next_deadline_us",
    "next_status",
    "outcomes_of",
    "postings",
    "reference_command_fingerprint",
    "restore",
    "step",
    "step_tick",
]
