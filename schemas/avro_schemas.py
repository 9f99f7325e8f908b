"""Loading the ``.avsc`` contract: one file per named type, expanded per top-level record.

The ``.avsc`` files in ``schemas/`` are the current version of the contract (namespace
``streamledger.v1``); ``schemas/history/<version>/`` keeps every earlier version so readers can
still decode bytes written by it. Four records travel on topics on their own (the *top-level*
records): ``CommandEnvelope``, ``EventEnvelope``, ``Outcome`` and ``StateEnvelope``. Each is
expanded into one self-contained schema (named types inlined at their first use), whose Avro
*Parsing Canonical Form* gives the CRC-64-AVRO (Rabin) fingerprint used by single-object
encoding.

For the codec, a *wire* copy of each schema drops the ``logicalType`` attributes: the bytes are
the same (``timestamp-micros`` is a ``long``), the canonical form and so the fingerprint are the
same (the canonical form strips ``logicalType``), and fastavro then hands times back as ``int``
microseconds — the model's unit — instead of building ``datetime`` objects on the hot path.

This module reads files once, at import of ``schemas.codec``; nothing here runs per record.
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from streamledger.errors import StreamLedgerError

NAMESPACE = "streamledger.v1"
SCHEMA_DIRECTORY = Path(__file__).resolve().parent
HISTORY_DIRECTORY = SCHEMA_DIRECTORY / "history"
CURRENT_VERSION = "v1.7"
TOP_LEVEL_RECORDS: tuple[str, ...] = (
    "CommandEnvelope",
    "EventEnvelope",
    "Outcome",
    "StateEnvelope",
    "NotificationEnvelope",  # since v1.5 (ledger.notifications)
)

# CRC-64-AVRO, as defined by the Avro specification ("Schema Fingerprints").
RABIN_EMPTY = 0xC15D213AA4D7A795
RABIN_POLYNOMIAL_MASK = 0xFFFFFFFFFFFFFFFF
FINGERPRINT_BYTES = 8


class SchemaLoadError(StreamLedgerError):
    """An ``.avsc`` file is missing, malformed or refers to an unknown named type."""


def _rabin_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ (RABIN_EMPTY & -(value & 1))
        table.append(value & RABIN_POLYNOMIAL_MASK)
    return tuple(table)


RABIN_TABLE = _rabin_table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit CRC-64-AVRO (Rabin) fingerprint of ``data`` as an unsigned integer."""
    value = RABIN_EMPTY
    for byte in data:
        value = (value >> 8) ^ RABIN_TABLE[(value ^ byte) & 0xFF]
    return value


def fingerprint_bytes(canonical_form: str) -> bytes:
    """The 8 bytes single-object encoding puts after the marker: the fingerprint, little-endian."""
    return struct.pack("<Q", crc64_avro(canonical_form.encode("utf-8")))


@dataclass(frozen=True, slots=True)
class TopLevelSchema:
    """One top-level record of one contract version, ready for the codec."""

    name: str
    version: str
    expanded: Mapping[str, Any]  # self-contained JSON, with logical types (the contract)
    canonical_form: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO of canonical_form
    wire: Any  # fastavro-parsed, logicalType stripped (same bytes, ints for times)


def read_named_types(directory: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.avsc`` in ``directory`` by full name (``streamledger.v1.Transfer``)."""
    named: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.avsc")):
        try:
            definition = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaLoadError(f"{path}: {exc}") from exc
        full_name = f"{definition.get('namespace', NAMESPACE)}.{definition['name']}"
        if path.stem != definition["name"]:
            raise SchemaLoadError(f"{path}: file name must equal the record name")
        named[full_name] = definition
    return named


def expand(name: str, named: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The schema of ``name`` with every named type inlined at its first use."""
    defined: set[str] = set()

    def inline(node: Any) -> Any:
        if isinstance(node, str):
            if node in named and node not in defined:
                defined.add(node)
                return inline(copy.deepcopy(named[node]))
            return node
        if isinstance(node, list):
            return [inline(item) for item in node]
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                defined.add(f"{node.get('namespace', NAMESPACE)}.{node['name']}")
            return {
                key: inline(value) if key in ("type", "fields", "items", "values") else value
                for key, value in node.items()
            }
        return node

    if name not in named:
        raise SchemaLoadError(f"unknown named type {name}")
    return dict(inline(name))


def without_logical_types(node: Any) -> Any:
    """A copy of a schema JSON with every ``logicalType`` attribute removed."""
    if isinstance(node, list):
        return [without_logical_types(item) for item in node]
    if isinstance(node, dict):
        return {
            key: without_logical_types(value) for key, value in node.items() if key != "logicalType"
        }
    return node


def load_version(directory: Path, version: str) -> dict[str, TopLevelSchema]:
    """The top-level schemas of the contract version stored in ``directory`` (a version
    before v1.5 has no ``NotificationEnvelope``)."""
    named = read_named_types(directory)
    loaded: dict[str, TopLevelSchema] = {}
    for record in TOP_LEVEL_RECORDS:
        if f"{NAMESPACE}.{record}" not in named:
            continue
        expanded = expand(f"{NAMESPACE}.{record}", named)
        wire_json = without_logical_types(expanded)
        canonical_form = to_parsing_canonical_form(expanded)
        if to_parsing_canonical_form(wire_json) != canonical_form:
            raise SchemaLoadError(f"{record}: the wire schema's canonical form differs")
        loaded[record] = TopLevelSchema(
            name=record,
            version=version,
            expanded=expanded,
            canonical_form=canonical_form,
            fingerprint=fingerprint_bytes(canonical_form),
            wire=parse_schema(wire_json),
        )
    return loaded


def history_versions() -> tuple[str, ...]:
    """Earlier contract versions kept in ``schemas/history/``, oldest first."""
    if not HISTORY_DIRECTORY.is_dir():
        return ()
    return tuple(sorted(path.name for path in HISTORY_DIRECTORY.iterdir() if path.is_dir()))


def load_all_versions() -> dict[str, dict[str, TopLevelSchema]]:
    """Every contract version by name; the current one under ``CURRENT_VERSION``."""
    versions = {
        version: load_version(HISTORY_DIRECTORY / version, version)
        for version in history_versions()
    }
    versions[CURRENT_VERSION] = load_version(SCHEMA_DIRECTORY, CURRENT_VERSION)
    return versions
