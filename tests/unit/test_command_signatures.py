"""Signed commands (issue 21 §2, decision 0084): the HMAC as documented, the key registry."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from processors.command_signatures import (
    KeyRegistry,
    RegistryChange,
    SignatureMode,
    Unauthenticated,
    keyed_hexdigest,
    keyed_sha256,
    signature_of,
)
from schemas.signing_keys import (
    KEY_ID_HEADER,
    OPERATOR_KEY_ID,
    SIGNATURE_HEADER,
    SigningKeyAction,
    SigningKeyCommand,
    decode_signing_key_command,
    decode_signing_key_state,
    encode_signing_key_command,
    is_signing_key_command,
    is_signing_key_state,
    key_id_problem,
    operator_secret,
    principal_of,
    principal_secret,
    signature_headers,
    tenant_key_secret,
    version_of,
)

MASTER = bytes(range(32))
SECOND = 1_000_000


def registry_command(
    tenant_id: str, action: SigningKeyAction, key_id: str, overlap_ms: int = 0
) -> tuple[SigningKeyCommand, bytes, list[tuple[str, bytes]]]:
    command = SigningKeyCommand(
        tenant_id=tenant_id,
        idempotency_key=f"{action.value}-{key_id}-{overlap_ms}",
        action=action,
        key_id=key_id,
        overlap_ms=overlap_ms,
    )
    value = encode_signing_key_command(command)
    return command, value, signature_headers(operator_secret(MASTER), OPERATOR_KEY_ID, value)


def apply(
    registry: KeyRegistry,
    tenant_id: str,
    action: SigningKeyAction,
    key_id: str,
    *,
    at_us: int,
    offset: int,
    overlap_ms: int = 0,
) -> RegistryChange:
    command, value, headers = registry_command(tenant_id, action, key_id, overlap_ms)
    decision = registry.decide(command, value, headers, at_us, offset)
    registry.commit()
    return decision.change


def signed(tenant_id: str, key_id: str, value: bytes) -> list[tuple[str, bytes]]:
    return signature_headers(tenant_key_secret(MASTER, tenant_id, key_id), key_id, value)


def enrolled_registry(mode: SignatureMode = SignatureMode.ENROLLED) -> KeyRegistry:
    registry = KeyRegistry(MASTER, mode)
    assert apply(registry, "a", SigningKeyAction.GRANT, "gw:v1", at_us=SECOND, offset=10) is (
        RegistryChange.CHANGED
    )
    return registry


def test_the_signature_is_hmac_sha256_over_key_id_nul_value_as_documented() -> None:
    value = b"\xc3\x01any value bytes"
    principal = hmac.new(MASTER, b"streamledger-principal/v1\x00gw", hashlib.sha256).digest()
    secret = hmac.new(
        principal, b"streamledger-signing-key/v1\x00tenant-a\x00gw:v1", hashlib.sha256
    ).digest()
    assert principal_secret(MASTER, "gw") == principal
    assert tenant_key_secret(MASTER, "tenant-a", "gw:v1") == secret
    expected = hmac.new(secret, b"gw:v1\x00" + value, hashlib.sha256).hexdigest()
    assert signed("tenant-a", "gw:v1", value) == [
        (KEY_ID_HEADER, b"gw:v1"),
        (SIGNATURE_HEADER, expected.encode()),
    ]


def test_key_ids_are_principal_colon_version() -> None:
    assert key_id_problem("payments-gw:v12") is None
    assert principal_of("pay.gw:v3") == "pay.gw"
    assert version_of("pay.gw:v3") == 3
    for bad in ("gw", "gw:v0", "GW:v1", "gw:1", ":v1", "gw:v1x", "operator"):
        assert key_id_problem(bad) is not None, bad


def test_records_round_trip_and_are_told_apart_by_their_header() -> None:
    command, value, _ = registry_command("a", SigningKeyAction.REVOKE, "gw:v1", 5_000)
    assert decode_signing_key_command(value) == command
    assert is_signing_key_command(value) and not is_signing_key_state(value)
    registry = enrolled_registry()
    apply(registry, "a", SigningKeyAction.GRANT, "gw:v2", at_us=2 * SECOND, offset=11)
    # staged records are written with the batch; a registry restored from them is the same
    registry2 = KeyRegistry(MASTER, SignatureMode.ENROLLED)
    registry2.decide(*registry_command("a", SigningKeyAction.GRANT, "gw:v1")[:3], SECOND, 10)
    (key, record) = registry2.staged_records()[0]
    assert key == b"a/signing-key/gw:v1" and is_signing_key_state(record)
    restored = KeyRegistry(MASTER, SignatureMode.ENROLLED, [decode_signing_key_state(record)])
    assert restored.key("a", "gw:v1") == registry.key("a", "gw:v1")


def test_a_command_signed_with_another_tenants_key_is_unauthenticated() -> None:
    registry = enrolled_registry()
    apply(registry, "b", SigningKeyAction.GRANT, "gw:v1", at_us=SECOND, offset=11)
    value = b"a command of tenant b"
    assert registry.verify("b", value, signed("b", "gw:v1", value), 2 * SECOND) == "gw:v1"
    # tenant a's secret for the same key id: another secret, so the MAC does not match
    verdict = registry.verify("b", value, signed("a", "gw:v1", value), 2 * SECOND)
    assert isinstance(verdict, Unauthenticated)
    assert verdict.detail.startswith("tenant_id: unauthenticated: the signature does not match")
    # a key granted to tenant a only is not granted for tenant c
    registry_c = enrolled_registry()
    verdict = registry_c.verify("c", value, signed("a", "gw:v1", value), 2 * SECOND)
    assert isinstance(verdict, Unauthenticated) and "not granted for tenant 'c'" in verdict.detail


def test_a_replayed_signature_on_another_body_fails() -> None:
    registry = enrolled_registry()
    headers = signed("a", "gw:v1", b"body one")
    assert registry.verify("a", b"body one", headers, 2 * SECOND) == "gw:v1"
    assert isinstance(registry.verify("a", b"body two", headers, 2 * SECOND), Unauthenticated)


@given(st.binary(min_size=1, max_size=200), st.data())
def test_any_changed_byte_of_the_value_fails(value: bytes, data: st.DataObject) -> None:
    registry = enrolled_registry()
    headers = signed("a", "gw:v1", value)
    index = data.draw(st.integers(0, len(value) - 1))
    flip = data.draw(st.integers(1, 255))
    forged = value[:index] + bytes([value[index] ^ flip]) + value[index + 1 :]
    assert registry.verify("a", value, headers, 2 * SECOND) == "gw:v1"
    assert isinstance(registry.verify("a", forged, headers, 2 * SECOND), Unauthenticated)


def test_unsigned_commands_by_mode() -> None:
    enrolled = enrolled_registry()
    assert isinstance(enrolled.verify("a", b"v", None, 2 * SECOND), Unauthenticated)
    assert enrolled.verify("never-granted", b"v", None, 2 * SECOND) == ""
    required = enrolled_registry(SignatureMode.REQUIRED)
    assert isinstance(required.verify("never-granted", b"v", [], 2 * SECOND), Unauthenticated)


def test_revocation_takes_effect_at_the_revoke_record() -> None:
    registry = enrolled_registry()
    value = b"v"
    headers = signed("a", "gw:v1", value)
    assert registry.verify("a", value, headers, 5 * SECOND) == "gw:v1"
    change = apply(registry, "a", SigningKeyAction.REVOKE, "gw:v1", at_us=5 * SECOND, offset=20)
    assert change is RegistryChange.CHANGED
    state = registry.key("a", "gw:v1")
    assert state is not None and state.revoked_offset == 20
    # a later record with the same millisecond is after the revoke in the log: revoked
    verdict = registry.verify("a", value, headers, 5 * SECOND)
    assert isinstance(verdict, Unauthenticated) and "offset 20" in verdict.detail
    # revoked for good: a tenant that had keys never goes back to unsigned
    assert isinstance(registry.verify("a", value, None, 6 * SECOND), Unauthenticated)
    assert apply(registry, "a", SigningKeyAction.GRANT, "gw:v1", at_us=7 * SECOND, offset=21) is (
        RegistryChange.REJECTED
    )


def test_rotation_keeps_both_keys_during_the_overlap() -> None:
    registry = enrolled_registry()
    apply(registry, "a", SigningKeyAction.GRANT, "gw:v2", at_us=10 * SECOND, offset=30)
    apply(
        registry,
        "a",
        SigningKeyAction.REVOKE,
        "gw:v1",
        at_us=10 * SECOND,
        offset=31,
        overlap_ms=60_000,
    )
    old, new = signed("a", "gw:v1", b"v"), signed("a", "gw:v2", b"v")
    assert registry.verify("a", b"v", old, 69 * SECOND) == "gw:v1"
    assert registry.verify("a", b"v", new, 69 * SECOND) == "gw:v2"
    assert isinstance(registry.verify("a", b"v", old, 70 * SECOND), Unauthenticated)
    assert registry.verify("a", b"v", new, 70 * SECOND) == "gw:v2"
    # a revoke at once shortens the overlap; a longer one later changes nothing
    assert apply(registry, "a", SigningKeyAction.REVOKE, "gw:v2", at_us=71 * SECOND, offset=32) is (
        RegistryChange.CHANGED
    )
    assert apply(
        registry,
        "a",
        SigningKeyAction.REVOKE,
        "gw:v2",
        at_us=72 * SECOND,
        offset=33,
        overlap_ms=5,
    ) is (RegistryChange.UNCHANGED)


def test_registry_commands_need_the_operator_signature_and_valid_fields() -> None:
    registry = KeyRegistry(MASTER, SignatureMode.ENROLLED)
    command, value, _ = registry_command("a", SigningKeyAction.GRANT, "gw:v1")
    tenant_signed = signed("a", "gw:v1", value)
    decision = registry.decide(command, value, tenant_signed, SECOND, 1)
    assert decision.change is RegistryChange.REJECTED and decision.unauthenticated
    assert not registry.enrolled("a")
    bad, bad_value, bad_headers = registry_command("a", SigningKeyAction.GRANT, "gw:v1", 5)
    decision = registry.decide(bad, bad_value, bad_headers, SECOND, 2)
    assert decision.change is RegistryChange.REJECTED and not decision.unauthenticated
    assert decision.detail.startswith("overlap_ms:")
    missing, missing_value, missing_headers = registry_command("a", SigningKeyAction.REVOKE, "x:v1")
    decision = registry.decide(missing, missing_value, missing_headers, SECOND, 3)
    assert decision.change is RegistryChange.REJECTED and decision.detail.startswith("key_id:")


def test_an_aborted_batch_leaves_the_registry_and_its_clock_as_committed() -> None:
    registry = enrolled_registry()
    apply(
        registry,
        "a",
        SigningKeyAction.REVOKE,
        "gw:v1",
        at_us=SECOND,
        offset=11,
        overlap_ms=10_000,
    )
    headers = signed("a", "gw:v1", b"v")
    command, value, operator = registry_command("a", SigningKeyAction.GRANT, "gw:v2")
    registry.decide(command, value, operator, 2 * SECOND, 12)
    # a later record of the aborted batch moved the clock past the overlap's end
    assert isinstance(registry.verify("a", b"v", headers, 20 * SECOND), Unauthenticated)
    registry.abort()
    assert registry.key("a", "gw:v2") is None
    assert registry.verify("a", b"v", headers, 2 * SECOND) == "gw:v1"


def test_signature_headers_are_read_from_pairs_or_a_mapping() -> None:
    pairs = [("other", b"x"), (KEY_ID_HEADER, b"k:v1"), (SIGNATURE_HEADER, b"ab")]
    assert signature_of(pairs) == (b"k:v1", b"ab")
    assert signature_of({KEY_ID_HEADER: "k:v1", SIGNATURE_HEADER: b"ab"}) == (b"k:v1", b"ab")
    assert signature_of(None) == (None, None)


def test_forged_key_ids_cost_no_derivation_and_fill_no_cache() -> None:
    registry = enrolled_registry()
    for number in range(50):
        forged = f"x{number}:v1"
        verdict = registry.verify("a", b"v", signed("a", forged, b"v"), 2 * SECOND)
        assert isinstance(verdict, Unauthenticated) and "not granted" in verdict.detail
    assert registry._macs == {}
    assert registry.verify("a", b"v", signed("a", "gw:v1", b"v"), 2 * SECOND) == "gw:v1"
    assert list(registry._macs) == [("a", b"gw:v1")]


@given(st.binary(max_size=130), st.binary(max_size=80), st.binary(max_size=300))
def test_the_keyed_sha256_states_give_hmac_sha256(
    secret: bytes, prefix: bytes, message: bytes
) -> None:
    """The verification's fast path (decision 0137) is HMAC-SHA256 exactly, for keys shorter,
    as long as and longer than SHA-256's 64-byte block, and its states are reusable."""
    keyed = keyed_sha256(secret, prefix)
    expected = hmac.new(secret, prefix + message, hashlib.sha256).hexdigest().encode()
    assert keyed_hexdigest(keyed, message) == expected
    assert keyed_hexdigest(keyed, message) == expected  # the cached states are not consumed
    assert (
        keyed_hexdigest(keyed, b"") == hmac.new(secret, prefix, hashlib.sha256).hexdigest().encode()
    )


HEADER_NAMES = st.sampled_from([KEY_ID_HEADER, SIGNATURE_HEADER, "other"])


@given(
    value=st.binary(min_size=1, max_size=250),
    key_id=st.sampled_from(["gw:v1", "gw:v2", "other:v1"]),
    mac_form=st.sampled_from(["good", "upper", "short", "flipped", "raw", "str", "other-body"]),
    layout=st.sampled_from(["sdk", "reversed", "extra", "mapping", "key-as-str", "none"]),
)
def test_verify_agrees_with_the_reference_hmac_on_any_header_form(
    value: bytes, key_id: str, mac_form: str, layout: str
) -> None:
    """Whatever the headers' form, ``verify`` accepts exactly the records whose signature
    header is the 64 lowercase hex digits of HMAC-SHA256(key secret, key_id NUL value) under a
    key granted to the tenant, with the reasons of the reference (decision 0137)."""
    registry = enrolled_registry()
    secret = tenant_key_secret(MASTER, "a", key_id)
    good = hmac.new(secret, key_id.encode() + b"\x00" + value, hashlib.sha256).hexdigest()
    macs: dict[str, str | bytes] = {
        "good": good.encode(),
        "upper": good.upper().encode(),
        "short": good[:-1].encode(),
        "flipped": (good[:-1] + ("0" if good[-1] != "0" else "1")).encode(),
        "raw": bytes.fromhex(good),
        "str": good,
        "other-body": hmac.new(secret, key_id.encode() + b"\x00x" + value, hashlib.sha256)
        .hexdigest()
        .encode(),
    }
    mac = macs[mac_form]
    key: str | bytes = key_id if layout == "key-as-str" else key_id.encode()
    pairs: list[tuple[str, str | bytes]] = [(KEY_ID_HEADER, key), (SIGNATURE_HEADER, mac)]
    headers: object = {
        "sdk": pairs,
        "key-as-str": pairs,
        "reversed": pairs[::-1],
        "extra": [("other", b"x"), *pairs],
        "mapping": dict(pairs),
        "none": None,
    }[layout]
    verdict = registry.verify("a", value, headers, 2 * SECOND)  # type: ignore[arg-type]
    if layout == "none":
        assert isinstance(verdict, Unauthenticated) and "is not signed" in verdict.detail
    elif key_id != "gw:v1":
        assert isinstance(verdict, Unauthenticated) and "is not granted" in verdict.detail
    elif mac_form in ("good", "str"):
        assert verdict == "gw:v1"
    else:
        assert isinstance(verdict, Unauthenticated)
        assert verdict.detail == (
            "tenant_id: unauthenticated: the signature does not match the record under key 'gw:v1'"
        )


def test_a_key_id_header_that_is_not_ascii_is_unauthenticated() -> None:
    registry = enrolled_registry()
    headers = [(KEY_ID_HEADER, b"gw:v1\xff"), (SIGNATURE_HEADER, b"00" * 32)]
    verdict = registry.verify("a", b"v", headers, 2 * SECOND)
    assert verdict == Unauthenticated("tenant_id: unauthenticated: the key id header is not ASCII")
    assert registry._macs == {}
