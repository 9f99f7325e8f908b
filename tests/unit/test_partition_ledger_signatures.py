"""The processor's adapter with signatures on (decisions 0084, 0085): the registry's commands,
their replies and state records, and UNAUTHENTICATED commands as replies only, checked before
idempotency so a forged command never reads a stored outcome nor burns its key."""

from __future__ import annotations

from pathlib import Path

import ledger
from processors.command_signatures import KeyRegistry, SignatureMode
from processors.partition_ledger import (
    REPLY_DECIDED,
    REPLY_DUPLICATE,
    REPLY_KIND_HEADER,
    REPLY_NOT_STORED,
    WIRE_FORMAT,
    PartitionLedger,
    ledger_from_snapshot,
)
from processors.processor_settings import build_processor_settings
from processors.restore import PartitionSnapshot
from processors.signing_master import master_path
from schemas.codec import decode_event, decode_outcome, encode_command
from schemas.model import OutcomeStatus, RejectReason
from schemas.signing_keys import (
    OPERATOR_KEY_ID,
    SigningKeyAction,
    SigningKeyCommand,
    SigningKeyState,
    decode_signing_key_state,
    encode_signing_key_command,
    encode_signing_key_state,
    is_signing_key_state,
    operator_secret,
    signature_headers,
    tenant_key_secret,
)
from streamledger.settings import Settings
from tests.unit.ledger_builders import SECOND_US, T0_US, open_account

MASTER = bytes(32)
KEY_ID = "gw:v1"


def book_with_a_granted_key() -> PartitionLedger:
    book = PartitionLedger(
        0,
        ledger.LedgerState(wire_format=WIRE_FORMAT),
        signatures=KeyRegistry(MASTER, SignatureMode.ENROLLED),
    )
    grant = SigningKeyCommand(
        tenant_id="acme", idempotency_key="grant", action=SigningKeyAction.GRANT, key_id=KEY_ID
    )
    value = encode_signing_key_command(grant)
    headers = signature_headers(operator_secret(MASTER), OPERATOR_KEY_ID, value)
    book.decide_signing_key(grant, value, headers, T0_US, 0)
    book.decide_signing_key(grant, value, headers, T0_US, 1)  # the same again: nothing new
    outputs = book.staged_outputs()
    kinds = [dict(headers)[REPLY_KIND_HEADER] for headers in outputs.reply_headers]
    assert kinds == [REPLY_DECIDED, REPLY_DUPLICATE]
    assert decode_outcome(outputs.replies[0][1]).command_type == "SigningKeyCommand"
    ((state_key, state_value),) = outputs.states
    assert state_key == b"acme/signing-key/gw:v1" and state_value is not None
    assert is_signing_key_state(state_value)
    assert decode_signing_key_state(state_value).granted_offset == 0
    assert outputs.outcomes == [] and outputs.events == []
    book.commit()
    return book


def signed(value: bytes, tenant_id: str = "acme") -> list[tuple[str, bytes]]:
    return signature_headers(tenant_key_secret(MASTER, tenant_id, KEY_ID), KEY_ID, value)


def test_signed_commands_are_decided_and_forged_ones_are_replies_only() -> None:
    book = book_with_a_granted_key()
    command = open_account("cash", key="k1")
    value = encode_command(command)
    book.decide(command, T0_US + SECOND_US, 2, value, signed(value))
    # the same key, forged (another tenant's secret): not the stored outcome, not a key reuse
    forged = open_account("other", key="k1")
    forged_value = encode_command(forged)
    book.decide(forged, T0_US + SECOND_US, 3, forged_value, signed(forged_value, "evil"))
    # unsigned, for a tenant with a key
    book.decide(open_account("x", key="k2"), T0_US + SECOND_US, 4, b"", None)
    outputs = book.staged_outputs()
    replies = [decode_outcome(value) for _, value in outputs.replies]
    kinds = [dict(headers)[REPLY_KIND_HEADER] for headers in outputs.reply_headers]
    assert kinds == [REPLY_DECIDED, REPLY_NOT_STORED, REPLY_NOT_STORED]
    assert replies[0].status is OutcomeStatus.ACCEPTED
    for reply in replies[1:]:
        assert reply.reason is RejectReason.UNAUTHENTICATED
        assert reply.detail.startswith("tenant_id: unauthenticated: ")
    assert len(outputs.outcomes) == 1 and len(outputs.events) == 1
    assert decode_event(outputs.events[0][1]).actor == KEY_ID  # the verified key id
    assert outputs.rejections_by_reason == {"unauthenticated": 2}
    book.commit()
    # the key k2 was not burnt: signed now, it is decided
    retry = open_account("x", key="k2")
    retry_value = encode_command(retry)
    book.decide(retry, T0_US + 2 * SECOND_US, 5, retry_value, signed(retry_value))
    (reply,) = book.staged_outputs().replies
    assert decode_outcome(reply[1]).status is OutcomeStatus.ACCEPTED


def test_a_tenant_without_keys_may_send_unsigned_commands_when_enrolled() -> None:
    book = book_with_a_granted_key()
    command = open_account("cash", key="k1", tenant="other")
    book.decide(command, T0_US + SECOND_US, 2, encode_command(command), None)
    outputs = book.staged_outputs()
    (reply,) = outputs.replies
    assert decode_outcome(reply[1]).status is OutcomeStatus.ACCEPTED
    assert decode_event(outputs.events[0][1]).actor == ""  # accepted unsigned


def test_the_master_secret_lives_in_the_stack_home_and_nowhere_else(tmp_path: Path) -> None:
    settings = build_processor_settings(Settings(home=tmp_path, topic_prefix="p."))
    path = master_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600 and len(settings.signing_master) == 32
    assert build_processor_settings(Settings(home=tmp_path)).signing_master == (
        settings.signing_master
    )
    missing = tmp_path / "no-such-home"
    assert build_processor_settings(Settings(home=missing)).signing_master == b""
    assert not missing.exists()


def test_a_restore_splits_the_registry_from_the_ledger_state(tmp_path: Path) -> None:
    settings = build_processor_settings(Settings(home=tmp_path, topic_prefix="p."))
    book = PartitionLedger(
        0,
        ledger.LedgerState(wire_format=WIRE_FORMAT),
        signatures=KeyRegistry(settings.signing_master, SignatureMode.ENROLLED),
    )
    grant = SigningKeyCommand(
        tenant_id="acme", idempotency_key="grant", action=SigningKeyAction.GRANT, key_id=KEY_ID
    )
    value = encode_signing_key_command(grant)
    operator = signature_headers(operator_secret(settings.signing_master), OPERATOR_KEY_ID, value)
    book.decide_signing_key(grant, value, operator, T0_US, 0)
    book.decide(open_account("cash"), T0_US, 1, b"", None)  # unsigned: refused, nothing staged
    book.staged_outputs()
    book.commit()
    command = open_account("cash")
    signed_value = encode_command(command)
    secret = tenant_key_secret(settings.signing_master, "acme", KEY_ID)
    book.decide(command, T0_US, 2, signed_value, signature_headers(secret, KEY_ID, signed_value))
    outputs = book.staged_outputs()
    balances = {key: value for key, value in outputs.states if value is not None}
    balances[b"acme/signing-key/gw:v1"] = encode_signing_key_state(
        SigningKeyState(tenant_id="acme", key_id=KEY_ID, granted_at_us=T0_US, granted_offset=0)
    )
    snapshot = PartitionSnapshot(
        partition=0,
        records={settings.topics.balances: balances, settings.topics.outcomes: {}},
        header_values={settings.topics.balances: {}, settings.topics.outcomes: {}},
        records_read=len(balances),
        duration_s=0.0,
    )
    restored = ledger_from_snapshot(snapshot, settings)
    assert restored.signatures is not None
    assert restored.signatures.key("acme", KEY_ID) is not None
    assert restored.signatures.enrolled("acme")
