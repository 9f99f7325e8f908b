"""The processor's adapter around the core: stored outcomes carry their times in a header, and
a restore from those headers keeps the outcomes encoded yet decides exactly as a decoded one."""

from __future__ import annotations

import ledger
from processors.partition_ledger import (
    WIRE_FORMAT,
    PartitionLedger,
    _encoded_outcomes,
    outcome_times,
)
from tests.unit.ledger_builders import SECOND_US, T0_US, open_account

RETENTION_S = 60


def test_outcomes_restored_from_their_times_header_decide_like_the_originals() -> None:
    original = PartitionLedger(
        0, ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=RETENTION_S)
    )
    original.decide(open_account("cash", key="k1"), T0_US, 0)
    original.decide(open_account("sales", key="k2"), T0_US + SECOND_US, 1)
    outputs = original.staged_outputs()
    original.commit()
    assert len(outputs.outcome_times) == len(outputs.outcomes) == 2
    values = {key: value for key, value in outputs.outcomes if value is not None}
    times = {
        key: t for (key, _), t in zip(outputs.outcomes, outputs.outcome_times, strict=True) if t
    }
    state = ledger.restore(
        list(ledger.export_records(original.state)),
        (),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=RETENTION_S,
        encoded_outcomes=_encoded_outcomes(values, times),
    )
    assert state.stream_time_us == original.state.stream_time_us
    assert state.outcome("acme", "k1") == original.state.outcome("acme", "k1")
    duplicate = ledger.decide(state, open_account("cash", key="k1"), T0_US + 2 * SECOND_US)
    assert isinstance(duplicate, ledger.Duplicate)
    late = T0_US + (RETENTION_S + 1) * SECOND_US
    assert ledger.expired_outcomes(state, late) == ledger.expired_outcomes(original.state, late)


def test_a_key_kept_forever_has_no_expiry_in_its_header() -> None:
    book = PartitionLedger(
        0, ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
    )
    book.decide(open_account("cash", key="k1"), T0_US, 0)
    stored = book.state.outcome("acme", "k1")
    assert stored is not None
    encoded = list(_encoded_outcomes({b"acme/k1": b"v"}, {b"acme/k1": outcome_times(stored)}))
    assert encoded == [("acme", "k1", T0_US, None, b"v")]
