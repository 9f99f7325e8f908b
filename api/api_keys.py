"""Per-tenant API keys: how a token is made, how it is stored, how a request's tenant is found.

A token is ``slk_<key id>_<secret>``: a 16-hex-digit key id (to name the key when listing or
revoking it) and 32 random bytes from ``secrets`` (256 bits, URL-safe base64). PostgreSQL keeps
only ``SHA-256(token)`` (``streamledger_auth.api_keys``, migration 0003). A fast hash is enough
here, unlike for passwords: a slow, salted hash (bcrypt, argon2) defends low-entropy secrets
against guessing, but nobody can enumerate 2^256 tokens, and a per-request slow hash would cost
more than the balance read it guards. A stolen table therefore yields no usable token.

The tenant of a request comes only from its key: the reader role calls
``tenant_for_api_key(digest)`` (SECURITY DEFINER; the role cannot read the table itself).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

import psycopg

from schemas.limits import tenant_id_problem
from streamledger.errors import InfraError, SettingError
from streamledger.settings import Settings

TOKEN_PREFIX: Final = "slk_"  # noqa: S105  a prefix, not a secret
KEY_ID_BYTES: Final = 8
SECRET_BYTES: Final = 32
TOKEN_PATTERN: Final = re.compile(r"^slk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
CONNECT_TIMEOUT_S: Final = 10

INSERT_KEY: Final = (
    "INSERT INTO streamledger_auth.api_keys (key_id, tenant_id, token_sha256) VALUES (%s, %s, %s)"
)
REVOKE_KEY: Final = (
    "UPDATE streamledger_auth.api_keys SET revoked_at = now()"
    " WHERE key_id = %s AND revoked_at IS NULL"
)
SELECT_TENANT_FOR_KEY: Final = "SELECT streamledger_auth.tenant_for_api_key(%s)"


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key_id: str
    tenant_id: str
    token: str  # shown once; only its digest is stored


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def is_token_shaped(token: str) -> bool:
    """Cheap check before any database lookup: a random string never costs a round trip."""
    return TOKEN_PATTERN.match(token) is not None


def new_api_key(tenant_id: str) -> NewApiKey:
    problem = tenant_id_problem(tenant_id)
    if problem is not None:
        raise SettingError(f"tenant: {problem}")
    key_id = secrets.token_hex(KEY_ID_BYTES)
    token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    assert is_token_shaped(token), "token format and pattern disagree"
    return NewApiKey(key_id, tenant_id, token)


def create_api_key(settings: Settings, tenant_id: str) -> NewApiKey:
    """Make a key for ``tenant_id`` and store its digest (as the app role)."""
    key = new_api_key(tenant_id)
    try:
        with psycopg.connect(settings.database_dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(INSERT_KEY, (key.key_id, key.tenant_id, token_digest(key.token)))
    except psycopg.OperationalError as exc:
        raise InfraError(f"storing the API key failed: {exc}") from exc
    except psycopg.errors.UndefinedTable as exc:
        raise InfraError("no api_keys table: run `streamledger db migrate` first") from exc
    return key


def revoke_api_key(settings: Settings, key_id: str) -> bool:
    """Revoke a key by id; False if there is no such live key."""
    try:
        with psycopg.connect(settings.database_dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            return conn.execute(REVOKE_KEY, (key_id,)).rowcount == 1
    except psycopg.OperationalError as exc:
        raise InfraError(f"revoking the API key failed: {exc}") from exc
