"""Property: the key registry's verdicts are a function of the log alone (decision 0084).

A random log of GRANT / REVOKE (with overlaps) / signed and unsigned commands of two tenants,
timestamps non-decreasing, decided once in a single batch and once cut into random batches of
which some abort and are read again (as the processor loop does after an aborted transaction):
every record gets the same verdict, and the registries end equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.command_signatures import KeyRegistry, SignatureMode, Unauthenticated
from schemas.signing_keys import (
    OPERATOR_KEY_ID,
    SigningKeyAction,
    SigningKeyCommand,
    encode_signing_key_command,
    operator_secret,
    signature_headers,
    tenant_key_secret,
)

MASTER = b"\x05" * 32
TENANTS = ("a", "b")
KEY_IDS = ("gw:v1", "gw:v2", "api:v1")


@dataclass(frozen=True)
class Record:
    kind: str  # "grant", "revoke" or "command"
    tenant_id: str
    key_id: str
    timestamp_us: int
    overlap_ms: int = 0
    signed_for: str | None = None  # the tenant whose secret signs a command; None: unsigned


@st.composite
def logs(draw: st.DrawFn) -> list[Record]:
    records = []
    now_us = 0
    for _ in range(draw(st.integers(1, 40))):
        now_us += draw(st.sampled_from((0, 1_000, 250_000, 2_000_000)))
        kind = draw(st.sampled_from(("grant", "revoke", "command", "command")))
        tenant_id = draw(st.sampled_from(TENANTS))
        key_id = draw(st.sampled_from(KEY_IDS))
        overlap_ms = draw(st.sampled_from((0, 0, 500, 3_000))) if kind == "revoke" else 0
        signed_for = draw(st.sampled_from((*TENANTS, None))) if kind == "command" else None
        records.append(Record(kind, tenant_id, key_id, now_us, overlap_ms, signed_for))
    return records


def verdict(registry: KeyRegistry, record: Record, offset: int) -> str:
    if record.kind == "command":
        value = f"command {offset} of {record.tenant_id}".encode()
        headers = (
            None
            if record.signed_for is None
            else signature_headers(
                tenant_key_secret(MASTER, record.signed_for, record.key_id),
                record.key_id,
                value,
            )
        )
        result = registry.verify(record.tenant_id, value, headers, record.timestamp_us)
        return result.detail if isinstance(result, Unauthenticated) else f"actor {result}"
    command = SigningKeyCommand(
        tenant_id=record.tenant_id,
        idempotency_key=f"k{offset}",
        action=SigningKeyAction.GRANT if record.kind == "grant" else SigningKeyAction.REVOKE,
        key_id=record.key_id,
        overlap_ms=record.overlap_ms,
    )
    value = encode_signing_key_command(command)
    headers = signature_headers(operator_secret(MASTER), OPERATOR_KEY_ID, value)
    decision = registry.decide(command, value, headers, record.timestamp_us, offset)
    return f"{decision.change.value}: {decision.detail}"


def everything(registry: KeyRegistry) -> dict[str, object]:
    return {tenant_id: registry.keys(tenant_id) for tenant_id in TENANTS}


@settings(max_examples=200, deadline=None)
@given(log=logs(), cuts=st.lists(st.integers(1, 8), min_size=1, max_size=20), data=st.data())
def test_verdicts_do_not_depend_on_batches_or_aborts(
    log: list[Record], cuts: list[int], data: st.DataObject
) -> None:
    whole = KeyRegistry(MASTER, SignatureMode.ENROLLED)
    expected = [verdict(whole, record, offset) for offset, record in enumerate(log)]
    whole.commit()
    batched = KeyRegistry(MASTER, SignatureMode.ENROLLED)
    got: list[str] = []
    start = 0
    for size in cuts * (len(log) // len(cuts) + 1):
        if start >= len(log):
            break
        batch = range(start, min(start + size, len(log)))
        if data.draw(st.booleans()):  # this transaction aborts: the batch is read again
            for offset in batch:
                verdict(batched, log[offset], offset)
            batched.abort()
        got.extend(verdict(batched, log[offset], offset) for offset in batch)
        batched.commit()
        start = batch.stop
    assert got == expected
    assert everything(batched) == everything(whole)
