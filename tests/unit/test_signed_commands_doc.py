"""docs/signed-commands.md: its test vector and fingerprints are what the code computes."""

from __future__ import annotations

import re
from pathlib import Path

from schemas.signing_keys import (
    COMMAND_SCHEMA,
    STATE_SCHEMA,
    operator_secret,
    principal_secret,
    signature,
    tenant_key_secret,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "signed-commands.md"


def documented(name: str) -> str:
    match = re.search(rf"^{name}\s+= ([0-9a-f]{{64}})$", DOC.read_text(), re.MULTILINE)
    assert match is not None, name
    return match.group(1)


def test_the_documented_vector() -> None:
    master = bytes(range(32))
    key = tenant_key_secret(master, "acme", "gw:v1")
    assert documented("principal_secret") == principal_secret(master, "gw").hex()
    assert documented("key_secret") == key.hex()
    assert documented("signature") == signature(key, b"gw:v1", b"\xc3\x01example").hex()
    assert documented("operator_secret") == operator_secret(master).hex()


def test_the_documented_fingerprints() -> None:
    text = DOC.read_text()
    assert f"`{COMMAND_SCHEMA.fingerprint.hex()}`" in text
    assert f"`{STATE_SCHEMA.fingerprint.hex()}`" in text
