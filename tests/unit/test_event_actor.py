"""Contract v1.7 (issue 21 part 3, decision 0093): every event names who issued its command.

``ledger.step(state, command, record_timestamp_us, actor)`` writes ``actor`` into the command's
event, inside its hashed bytes; an expiry (caused by time, before a command or on a tick) names
``SYSTEM_ACTOR``; without an actor (an unsigned command) it is ``""``. The actor decides
nothing: a retry under another key id is the same duplicate.
"""

from __future__ import annotations

import hashlib
import io

from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from processors.partition_ledger import WIRE_FORMAT
from projections.event_records import decode_event_record
from schemas.avro_schemas import load_all_versions
from schemas.codec import (
    EVENTS,
    HEADER_BYTES,
    MARKER,
    decode_event,
    encode_event,
    record_canonical_bytes,
    to_avro,
)
from schemas.model import (
    SYSTEM_ACTOR,
    UNSIGNED_ACTOR,
    Command,
    CreateMonitor,
    DeleteMonitor,
    Event,
    PendingExpired,
    Posting,
    PostTransaction,
    TransactionPendingExpired,
)
from tests.unit.ledger_builders import (
    SECOND_US,
    T0_US,
    open_account,
    post_pending,
    transfer,
    void_pending,
)

GATEWAY = "payments-gw:v1"
API = "api:v3"


class SignedBook:
    """A ledger state fed commands with an actor each, 1 µs apart unless told the time."""

    def __init__(self) -> None:
        self.state = ledger.LedgerState(wire_format=WIRE_FORMAT)
        self.now_us = T0_US

    def run(self, command: Command, actor: str, *, at_us: int | None = None) -> ledger.Decision:
        self.now_us = self.now_us + 1 if at_us is None else at_us
        return ledger.step(self.state, command, self.now_us, actor)

    def accept(self, command: Command, actor: str, *, at_us: int | None = None) -> list[Event]:
        decision = self.run(command, actor, at_us=at_us)
        assert isinstance(decision, ledger.Accepted), decision.outcome
        return list(decision.events)


def transaction(transaction_id: str, **fields: object) -> PostTransaction:
    return PostTransaction(
        tenant_id="acme",
        idempotency_key=f"tx-{transaction_id}",
        submitted_at_us=T0_US,
        transaction_id=transaction_id,
        postings=(
            Posting(debit_account_id="cash", credit_account_id="alice", amount=5, currency="USD"),
        ),
        **fields,  # type: ignore[arg-type]
    )


def book_with_accounts() -> SignedBook:
    book = SignedBook()
    book.accept(open_account("cash"), GATEWAY)
    book.accept(open_account("alice"), API)
    return book


def test_every_command_event_names_the_actor_it_was_decided_with() -> None:
    book = SignedBook()
    (opened,) = book.accept(open_account("cash"), GATEWAY)
    (other,) = book.accept(open_account("alice"), API)
    (posted,) = book.accept(transfer("t-1", "cash", "alice", 10), API)
    (pending,) = book.accept(transfer("t-2", "cash", "alice", 20, pending=True), GATEWAY)
    (completed,) = book.accept(post_pending("t-2", 5), API)
    book.accept(transfer("t-3", "cash", "alice", 30, pending=True), GATEWAY)
    (voided,) = book.accept(void_pending("t-3"), API)
    (multi,) = book.accept(transaction("x-1"), GATEWAY)
    monitor = CreateMonitor(
        tenant_id="acme",
        idempotency_key="m-1",
        submitted_at_us=T0_US,
        monitor_id="low",
        account_id="alice",
        field="available",
        operator="<",
        threshold=1,
    )
    (created,) = book.accept(monitor, API)
    deleted_command = DeleteMonitor(
        tenant_id="acme", idempotency_key="m-2", submitted_at_us=T0_US, monitor_id="low"
    )
    (deleted,) = book.accept(deleted_command, GATEWAY)
    assert [event.actor for event in (opened, other, posted, pending, completed, voided)] == [
        GATEWAY,
        API,
        API,
        GATEWAY,
        API,
        API,
    ]
    assert (multi.actor, created.actor, deleted.actor) == (GATEWAY, API, GATEWAY)


def test_an_unsigned_command_has_the_empty_actor() -> None:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    decision = ledger.step(state, open_account("cash"), T0_US)  # no actor given
    assert [event.actor for event in decision.events] == [UNSIGNED_ACTOR] == [""]


def test_expiries_name_the_system_before_a_command_and_on_a_tick() -> None:
    book = book_with_accounts()
    book.accept(transfer("t-1", "cash", "alice", 10, pending=True, pending_timeout_s=1), GATEWAY)
    book.accept(transaction("x-1", pending=True, pending_timeout_s=1), GATEWAY)
    later = book.run(open_account("carol"), API, at_us=book.now_us + 5 * SECOND_US)
    expired = [e for e in later.events if isinstance(e, PendingExpired | TransactionPendingExpired)]
    assert len(expired) == 2 and all(event.actor == SYSTEM_ACTOR for event in expired)
    assert later.events[-1].actor == API  # the command's own event, after the expiries
    book.accept(transfer("t-2", "cash", "alice", 10, pending=True, pending_timeout_s=1), GATEWAY)
    ticked = ledger.step_tick(book.state, book.now_us + 5 * SECOND_US)
    assert [type(event) for event in ticked.events] == [PendingExpired]
    assert ticked.events[0].actor == SYSTEM_ACTOR == "system"


def test_the_actor_decides_nothing_a_retry_under_another_key_id_is_a_duplicate() -> None:
    book = book_with_accounts()
    first = book.run(transfer("t-1", "cash", "alice", 10), GATEWAY)
    again = book.run(transfer("t-1", "cash", "alice", 10), API)
    assert isinstance(again, ledger.Duplicate) and again.outcome == first.outcome
    assert again.events == ()


@settings(max_examples=50, deadline=None)
@given(actor=st.sampled_from(("", SYSTEM_ACTOR, GATEWAY)) | st.text(st.characters(codec="utf-8")))
def test_the_sealed_bytes_carry_the_actor_and_the_hash_covers_it(actor: str) -> None:
    """The bytes the core hands to Kafka decode back to the actor, and the hash is
    SHA-256(prev_hash || those bytes as written), which end with the actor."""
    book = book_with_accounts()
    decision = book.run(transfer("t-1", "cash", "alice", 10), actor)
    (event,) = decision.events
    (encoded,) = decision.encoded_events
    assert decode_event(encoded) == event and event.actor == actor
    canonical = record_canonical_bytes(encoded)
    assert hashlib.sha256(event.prev_hash + canonical).digest() == event.hash
    assert canonical.endswith(actor.encode()) and encoded[HEADER_BYTES:-32].endswith(actor.encode())


def test_a_v1_6_event_reaches_the_projection_with_the_empty_actor() -> None:
    """An event written before v1.7 (no actor in its bytes) decodes for the projection with
    ``actor=""``, what migration 0014's default holds for the rows projected before it."""
    book = book_with_accounts()
    (event,) = book.accept(transfer("t-1", "cash", "alice", 10), UNSIGNED_ACTOR)
    old = load_all_versions()["v1.6"]["EventEnvelope"]
    branch = EVENTS.by_type[type(event)]
    buffer = io.BytesIO()
    record = {"event": (branch.full_name, to_avro(event, branch.field_names))}
    schemaless_writer(buffer, parse_schema(dict(old.expanded)), record)
    written = MARKER + old.fingerprint + buffer.getvalue()
    projected = decode_event_record(written)
    assert projected["actor"] == "" and projected["hash"] == event.hash
    assert decode_event(written) == event
    # the same event written now is one byte longer: the empty actor's length
    assert (
        len(record_canonical_bytes(encode_event(event))) == len(record_canonical_bytes(written)) + 1
    )
