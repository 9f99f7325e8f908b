"""What every peer engine calls per command: the project's pure core, the project's codec.

One ``LedgerState`` per input partition, like the StreamLedger processor (stream time, and so
pending expiry, is per partition). The engine supplies the partition, the record's value and its
timestamp, and gets back what to write: events (keyed by tenant, so one tenant's events stay in
order on one partition), the stored outcome, and the state records the command changed (for the
engine's own state store). The peer commits the core's state after every command: an engine
that re-delivers a record after a crash would rebuild from its store, not from an undo log.
"""

from __future__ import annotations

import ledger
from schemas.codec import (
    decode_command,
    decode_outcome,
    encode_event,
    encode_outcome,
    encode_state,
    seal_event,
)
from schemas.keys import command_key, outcome_key, state_key

Output = tuple[bytes, bytes]
# processors.partition_ledger.WIRE_FORMAT, built here: importing the processor's adapter needs
# confluent-kafka and prometheus-client, which the peers' virtualenvs do not have (both peers
# failed to start in the make bench of 2026-12-06 05:27)
WIRE_FORMAT = ledger.WireFormat(seal=seal_event, decode_outcome=decode_outcome)


class PeerLedger:
    def __init__(self) -> None:
        self.states: dict[int, ledger.LedgerState] = {}

    def handle(
        self, partition: int, value: bytes, timestamp_ms: int
    ) -> tuple[list[Output], list[Output], list[Output]]:
        state = self.states.get(partition)
        if state is None:
            state = self.states[partition] = ledger.LedgerState(wire_format=WIRE_FORMAT)
        command = decode_command(value)
        decision = ledger.step(state, command, timestamp_ms * 1000)
        key = command_key(command.tenant_id)
        encoded = decision.encoded_events or tuple(encode_event(e) for e in decision.events)
        events = [(key, data) for data in encoded]
        outcomes: list[Output] = []
        stored = decision.stored_outcome
        if stored is not None:
            outcomes.append(
                (outcome_key(stored.tenant_id, stored.idempotency_key), encode_outcome(stored))
            )
        records = [(state_key(r), encode_state(r)) for r in state.staged_records()]
        state.commit()
        return events, outcomes, records
