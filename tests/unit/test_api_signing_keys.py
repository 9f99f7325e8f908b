"""The API's signing keys (decision 0115): a tenant granted after the API read its key files is
signed for on its next request, with no wait, because its key file now exists; a tenant with a
key is read again only after the refresh interval; a tenant without one, after the retry
interval."""

from __future__ import annotations

from pathlib import Path

from api.gateway import KEYS_REFRESH_S, MISSING_KEY_RETRY_S, ApiSigningKeys
from processors.signing_master import key_file_path
from producers.sdk import SigningKey, write_signing_key

NOW = 1_000.0
WITHIN_RETRY = NOW + MISSING_KEY_RETRY_S / 10


def key(tenant_id: str) -> SigningKey:
    return SigningKey("api:v1", tenant_id.encode().ljust(32, b"-"))


def grant_file(home: Path, tenant_id: str) -> None:
    write_signing_key(key_file_path(home, "api", tenant_id), tenant_id, key(tenant_id))


def test_a_tenant_granted_after_the_read_is_read_at_once(tmp_path: Path) -> None:
    grant_file(tmp_path, "first")
    keys = ApiSigningKeys(tmp_path)
    assert set(keys.refresh(NOW)) == {"first"}
    assert not keys.stale("late", WITHIN_RETRY)  # nothing changed: no read per request
    grant_file(tmp_path, "late")
    assert keys.stale("late", WITHIN_RETRY)
    assert keys.refresh(WITHIN_RETRY)["late"] == key("late")
    assert not keys.stale("late", WITHIN_RETRY)


def test_the_first_grant_creates_the_directory_and_is_read(tmp_path: Path) -> None:
    keys = ApiSigningKeys(tmp_path)
    assert keys.refresh(NOW) == {}
    assert not keys.stale("tenant", WITHIN_RETRY)
    grant_file(tmp_path, "tenant")
    assert keys.stale("tenant", WITHIN_RETRY)
    assert set(keys.refresh(WITHIN_RETRY)) == {"tenant"}


def test_a_known_tenant_is_read_again_only_after_the_refresh_interval(tmp_path: Path) -> None:
    grant_file(tmp_path, "known")
    keys = ApiSigningKeys(tmp_path)
    keys.refresh(NOW)
    grant_file(tmp_path, "other")  # another tenant's grant does not read the known tenant's again
    assert not keys.stale("known", NOW + KEYS_REFRESH_S / 2)
    assert keys.stale("known", NOW + KEYS_REFRESH_S)


def test_a_tenant_without_a_key_is_read_again_after_the_retry_interval(tmp_path: Path) -> None:
    keys = ApiSigningKeys(tmp_path)
    keys.refresh(NOW)
    assert not keys.stale("none", WITHIN_RETRY)
    assert keys.stale("none", NOW + MISSING_KEY_RETRY_S)
