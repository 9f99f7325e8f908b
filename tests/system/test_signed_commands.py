"""Issue 21 §2 on the real broker: signed commands (decisions 0084, 0085).

One processor (``--command-signatures enrolled``, the default) and the operator CLI's functions
(``streamledger tenants grant|rotate|revoke``): a command for tenant B signed with tenant A's key
is rejected and moves nothing; a replayed signature on another body fails; a revocation takes
effect at the revoke record's position; a rotation keeps both keys valid during the overlap; the
registry survives a processor restart (restored from ledger.balances).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from api.signing_keys_cli import grant, list_keys, revoke, rotate
from processors.partition_ledger import REPLY_TO_HEADER
from processors.signing_master import key_file_path
from producers.replies import OutcomeWaiter, Reply
from producers.sdk import LedgerProducer, SigningKey, read_signing_key
from schemas.codec import decode_event, encode_command
from schemas.keys import command_key
from schemas.model import (
    Command,
    OpenAccount,
    OutcomeStatus,
    RejectReason,
    Transfer,
    TransferPosted,
)
from schemas.signing_keys import signature_headers
from streamledger.settings import Settings
from tests.conftest import run_streamledger
from tests.system.processor_harness import ProcessorProcess, read_topic

pytestmark = pytest.mark.system
REPLY_TIMEOUT_S = 120.0
PRINCIPAL = "gateway"
RUN = uuid.uuid4().hex[:6]  # key files live in the stack home: fresh tenants each run
TENANT_A = f"signed-a-{RUN}"
TENANT_B = f"signed-b-{RUN}"
OVERLAP_S = 3_600


def open_account(tenant_id: str, account_id: str) -> OpenAccount:
    return OpenAccount(
        tenant_id=tenant_id,
        idempotency_key=f"open-{account_id}",
        submitted_at_us=1,
        account_id=account_id,
        currency="EUR",
        asset_scale=2,
    )


def transfer(tenant_id: str, key: str, amount: int = 100) -> Transfer:
    return Transfer(
        tenant_id=tenant_id,
        idempotency_key=key,
        submitted_at_us=1,
        transfer_id=key,
        debit_account_id="cash",
        credit_account_id="revenue",
        amount=amount,
        currency="EUR",
    )


def request(settings: Settings, command: Command, keys: dict[str, SigningKey]) -> Reply:
    """Send ``command`` signed with ``keys`` (tenant -> key; none: unsigned), wait for its reply."""
    with LedgerProducer(settings, signing_keys=keys) as producer:
        waiter = OutcomeWaiter(settings, producer)
        try:
            return waiter.request_reply(command, timeout_s=REPLY_TIMEOUT_S)
        finally:
            waiter.close()


def request_with_headers(
    settings: Settings, command: Command, headers: list[tuple[str, bytes]]
) -> Reply:
    """Send ``command``'s bytes with exactly ``headers`` (e.g. another record's signature)."""
    value = encode_command(command)
    with LedgerProducer(settings) as producer:
        waiter = OutcomeWaiter(settings, producer)
        try:
            return waiter.request_record(
                command.tenant_id,
                command.idempotency_key,
                lambda: producer.submit_signed(command_key(command.tenant_id), value, headers),
                timeout_s=REPLY_TIMEOUT_S,
            )
        finally:
            waiter.close()


def assert_unauthenticated(reply: Reply, why: str) -> None:
    assert reply.kind == "not_stored", reply
    assert reply.outcome.status is OutcomeStatus.REJECTED
    assert reply.outcome.reason is RejectReason.UNAUTHENTICATED, reply.outcome
    assert reply.outcome.detail.startswith("tenant_id: unauthenticated: "), reply.outcome.detail
    assert why in reply.outcome.detail, reply.outcome.detail


def assert_accepted(reply: Reply) -> None:
    assert reply.outcome.status is OutcomeStatus.ACCEPTED, reply.outcome
    assert reply.kind == "decided", reply


def reply_offset(settings: Settings, tenant_id: str, idempotency_key: str) -> int:
    """The ledger.commands offset of the record a reply answers."""
    wanted = f"{tenant_id}/{idempotency_key}".encode()
    for record in read_topic(settings, settings.topic("ledger.replies")):
        if record.key == wanted:
            reply_to = dict(record.headers)[REPLY_TO_HEADER]
            return int(reply_to.split(b":")[1])
    raise AssertionError(f"no reply for {wanted!r}")


def grant_and_open(settings: Settings, tenant_id: str) -> SigningKey:
    result = grant(settings, PRINCIPAL, tenant_id)
    assert result.accepted and result.reply.kind == "decided", result
    assert f"granted at offset {result.offset}" in result.reply.outcome.detail
    path = key_file_path(settings.home, PRINCIPAL, tenant_id)
    assert path.stat().st_mode & 0o777 == 0o600
    file_tenant, key = read_signing_key(path)
    assert file_tenant == tenant_id and key.key_id == f"{PRINCIPAL}:v1"
    for account_id in ("cash", "revenue"):
        assert_accepted(request(settings, open_account(tenant_id, account_id), {tenant_id: key}))
    return key


def test_signed_commands_on_the_real_broker(ledger_settings: Settings, tmp_path: Path) -> None:
    settings = ledger_settings
    processor = ProcessorProcess(settings, "a", tmp_path)
    try:
        key_a = grant_and_open(settings, TENANT_A)
        key_b = grant_and_open(settings, TENANT_B)
        _cross_tenant_and_replay(settings, key_a, key_b)
        revoked_at = _rotation_and_revocation(settings, key_a)
    finally:
        assert processor.stop() == 0, processor.log()
    # the registry is state: a new processor restores it from ledger.balances
    restarted = ProcessorProcess(settings, "a", tmp_path)
    try:
        _, key_v2 = read_signing_key(key_file_path(settings.home, PRINCIPAL, TENANT_A))
        assert_accepted(request(settings, transfer(TENANT_A, "after-restart"), {TENANT_A: key_v2}))
        reply = request(settings, transfer(TENANT_A, "v1-after-restart"), {TENANT_A: key_a})
        assert_unauthenticated(reply, f"offset {revoked_at}")
        assert_unauthenticated(
            request(settings, transfer(TENANT_A, "unsigned-after-restart"), {}), "not signed"
        )
        _the_command_line(settings)
    finally:
        assert restarted.stop() == 0, restarted.log()
    _assert_nothing_moved_for_b(settings)
    _assert_the_actors_of_a(settings)
    for tenant_id in (TENANT_A, TENANT_B):
        for path in key_file_path(settings.home, PRINCIPAL, tenant_id).parent.glob(f"{tenant_id}*"):
            path.unlink()


def _cross_tenant_and_replay(settings: Settings, key_a: SigningKey, key_b: SigningKey) -> None:
    # tenant B's command signed with tenant A's key (same key id, A's secret): rejected
    reply = request(settings, transfer(TENANT_B, "b-with-a-key"), {TENANT_B: key_a})
    assert_unauthenticated(reply, "the signature does not match")
    # unsigned, for an enrolled tenant: rejected
    assert_unauthenticated(request(settings, transfer(TENANT_B, "b-unsigned"), {}), "not signed")
    # the key stays free: the same key, properly signed, is decided normally
    assert_accepted(request(settings, transfer(TENANT_B, "b-unsigned", 7), {TENANT_B: key_b}))
    # a valid signature of one body, replayed on another body
    signed_body = transfer(TENANT_A, "a-original")
    headers = signature_headers(key_a.secret, key_a.key_id, encode_command(signed_body))
    assert_accepted(request_with_headers(settings, signed_body, headers))
    forged = transfer(TENANT_A, "a-forged", amount=1_000_000)
    assert_unauthenticated(request_with_headers(settings, forged, headers), "does not match")
    # the replayed original itself is a duplicate: the original outcome, nothing new
    replayed = request_with_headers(settings, signed_body, headers)
    assert replayed.kind == "duplicate" and replayed.outcome.status is OutcomeStatus.ACCEPTED


def _rotation_and_revocation(settings: Settings, key_v1: SigningKey) -> int:
    """Rotate (both keys valid during the overlap), then revoke v1 at once; return the
    revoke record's offset."""
    granted, revoked_later = rotate(settings, PRINCIPAL, TENANT_A, OVERLAP_S)
    assert granted.accepted and revoked_later is not None and revoked_later.accepted
    _, key_v2 = read_signing_key(key_file_path(settings.home, PRINCIPAL, TENANT_A))
    assert key_v2.key_id == f"{PRINCIPAL}:v2"
    assert_accepted(request(settings, transfer(TENANT_A, "overlap-v1"), {TENANT_A: key_v1}))
    assert_accepted(request(settings, transfer(TENANT_A, "overlap-v2"), {TENANT_A: key_v2}))
    revoked = revoke(settings, PRINCIPAL, TENANT_A, key_v1.key_id)
    assert revoked.accepted and revoked.reply.kind == "decided", revoked
    assert f"revoked at offset {revoked.offset}" in revoked.reply.outcome.detail
    reply = request(settings, transfer(TENANT_A, "v1-after-revoke"), {TENANT_A: key_v1})
    assert_unauthenticated(reply, f"offset {revoked.offset}")
    # the known position: accepted before the revoke record, rejected after it
    assert reply_offset(settings, TENANT_A, "overlap-v1") < revoked.offset
    assert reply_offset(settings, TENANT_A, "v1-after-revoke") > revoked.offset
    assert_accepted(request(settings, transfer(TENANT_A, "v2-after-revoke"), {TENANT_A: key_v2}))
    # a revoked key id is never granted again
    assert not grant(settings, PRINCIPAL, TENANT_A).accepted
    # the registry as `streamledger tenants list` reads it back from ledger.balances
    listed = {state.key_id: state for state in list_keys(settings, TENANT_A)}
    assert sorted(listed) == [f"{PRINCIPAL}:v1", f"{PRINCIPAL}:v2"]
    assert listed[key_v1.key_id].revoked_offset == revoked.offset
    assert listed[key_v2.key_id].revoked_at_us is None
    return revoked.offset


def _assert_nothing_moved_for_b(settings: Settings) -> None:
    """Tenant B's only transfer is the properly signed one (7), and no rejected command left
    an outcome in ledger.outcomes."""
    events = [
        decode_event(record.value)
        for record in read_topic(settings, settings.topic("ledger.events"))
        if record.key.startswith(f"{TENANT_B}/".encode()) and record.value is not None
    ]
    transfers = [event for event in events if isinstance(event, TransferPosted)]
    assert [event.transfer_id for event in transfers] == ["b-unsigned"]
    assert transfers[0].amount == 7
    # every event carries the key that signed its command (issue 21 §3)
    assert {event.actor for event in events} == {f"{PRINCIPAL}:v1"}
    stored = {record.key for record in read_topic(settings, settings.topic("ledger.outcomes"))}
    assert f"{TENANT_B}/b-with-a-key".encode() not in stored
    assert f"{TENANT_A}/a-forged".encode() not in stored
    assert f"{TENANT_A}/v1-after-revoke".encode() not in stored


def _assert_the_actors_of_a(settings: Settings) -> None:
    """Each transfer of tenant A names the key that signed it, across the rotation."""
    actors = {
        event.transfer_id: event.actor
        for event in (
            decode_event(record.value)
            for record in read_topic(settings, settings.topic("ledger.events"))
            if record.key.startswith(f"{TENANT_A}/".encode()) and record.value is not None
        )
        if isinstance(event, TransferPosted)
    }
    assert actors == {
        "a-original": f"{PRINCIPAL}:v1",
        "overlap-v1": f"{PRINCIPAL}:v1",
        "overlap-v2": f"{PRINCIPAL}:v2",
        "v2-after-revoke": f"{PRINCIPAL}:v2",
        "after-restart": f"{PRINCIPAL}:v2",
    }, actors


def _the_command_line(settings: Settings) -> None:
    """``streamledger tenants revoke`` and ``list`` as an operator runs them."""
    revoked = run_streamledger(["tenants", "revoke", PRINCIPAL, TENANT_B], settings)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert f"revoked {PRINCIPAL}:v1: ok (decided) at ledger.commands[" in revoked.stdout
    listed = run_streamledger(["tenants", "list", TENANT_A], settings)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{PRINCIPAL}:v1: granted at offset ")
    assert "revoked from record time" in lines[0] and lines[1].endswith(", valid"), lines
    again = run_streamledger(["tenants", "grant", PRINCIPAL, TENANT_B], settings)
    assert again.returncode == 1, again.stdout + again.stderr  # a revoked key id: never again
    assert "REJECTED (not_stored)" in again.stdout and "never granted twice" in again.stdout
