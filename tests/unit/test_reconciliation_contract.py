"""docs/contract.md's reconciliation section agrees with reconciliation/avro (issue 20): every
record's header bytes and Java-style signed fingerprint, recomputed from the .avsc files."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from fastavro.schema import to_parsing_canonical_form

from reconciliation.records import AVRO_DIRECTORY, SCHEMAS, TOP_LEVEL_RECORDS
from schemas.avro_schemas import crc64_avro

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
ROW = re.compile(r"^\| `(?P<name>\w+)` \| `(?P<header>[0-9a-f]{20})` \| `(?P<signed>-?\d+)` \|$")


def test_the_documented_headers_are_the_schemas_fingerprints() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("## Reconciliation (`ledger.statements`") :]
    rows = {m["name"]: m for line in section.splitlines() if (m := ROW.match(line))}
    assert set(rows) == set(TOP_LEVEL_RECORDS)
    for name in TOP_LEVEL_RECORDS:
        definition = json.loads((AVRO_DIRECTORY / f"{name}.avsc").read_text(encoding="utf-8"))
        fingerprint = crc64_avro(to_parsing_canonical_form(definition).encode("utf-8"))
        header = b"\xc3\x01" + struct.pack("<Q", fingerprint)
        assert rows[name]["header"] == header.hex() == SCHEMAS[name].header.hex()
        assert int(rows[name]["signed"]) == struct.unpack("<q", struct.pack("<Q", fingerprint))[0]
