"""The SDK signs every command of a tenant it has a key for (issue 21 §2, decision 0084)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producers.sdk import LedgerProducer, SigningKey, read_signing_key, write_signing_key
from schemas.signing_keys import KEY_ID_HEADER, SIGNATURE_HEADER, signature
from tests.unit.test_sdk import SETTINGS, TRANSFER, FakeClient

KEY = SigningKey("gw:v1", b"\x09" * 32)


@dataclass
class HeaderClient(FakeClient):
    headers: list[Any] = field(default_factory=list)

    def produce(  # type: ignore[override]
        self,
        topic: str,
        value: bytes,
        key: bytes,
        partition: int,
        *,
        on_delivery: Any = None,
        headers: Any = None,
    ) -> None:
        self.headers.append(headers)
        super().produce(topic, value, key, partition, on_delivery)


def test_a_tenant_with_a_key_is_signed_over_the_exact_bytes_the_others_are_not() -> None:
    client = HeaderClient()
    producer = LedgerProducer(SETTINGS, client=client, signing_keys={"acme": KEY})
    producer.send(TRANSFER)
    producer.send(TRANSFER.__class__(**{**_fields(TRANSFER), "tenant_id": "other"}))
    producer.flush(1)
    (_, _, value, _), _ = client.produced
    signed, unsigned = client.headers
    assert unsigned is None
    assert dict(signed) == {
        KEY_ID_HEADER: b"gw:v1",
        SIGNATURE_HEADER: signature(KEY.secret, b"gw:v1", value).hex().encode(),
    }


def test_key_files_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "acme.json"
    write_signing_key(path, "acme", KEY)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_signing_key(path) == ("acme", KEY)
    assert "secret" not in repr(KEY)  # never in a log line


def _fields(command: Any) -> dict[str, Any]:
    return {name: getattr(command, name) for name in command.__dataclass_fields__}
