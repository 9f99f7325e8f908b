"""The processor's master signing secret: 32 random bytes, hex, in a 0600 file of the stack home.

Every signing key's secret derives from it (``schemas.signing_keys``), so no secret travels on
the log (decision 0084). ``streamledger tenants grant`` and the processor read the same file;
the first of them to need it creates it. Keep it like the Kafka principals' passwords: whoever
holds it can sign for every tenant.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from schemas.signing_keys import MASTER_SECRET_BYTES
from streamledger.errors import SettingError

SIGNING_DIRECTORY_NAME: Final = "signing"
MASTER_FILE_NAME: Final = "master.key"
KEYS_DIRECTORY_NAME: Final = "keys"


def signing_directory(home: Path) -> Path:
    return home / SIGNING_DIRECTORY_NAME


def master_path(home: Path) -> Path:
    return signing_directory(home) / MASTER_FILE_NAME


def read_master(path: Path) -> bytes:
    """The master secret stored at ``path``; ``SettingError`` naming what is wrong."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SettingError(f"cannot read the signing master secret {path}: {exc}") from None
    try:
        master = bytes.fromhex(text)
    except ValueError:
        raise SettingError(f"the signing master secret {path} is not hex") from None
    if len(master) != MASTER_SECRET_BYTES:
        raise SettingError(f"the signing master secret {path} is not {MASTER_SECRET_BYTES} bytes")
    return master


def ensure_master(home: Path) -> bytes:
    """The stack's master secret, created (random, 0600) the first time; the home must exist
    (``SettingError`` otherwise: nothing is created outside a stack's home)."""
    path = master_path(home)
    if not path.is_file():
        if not home.is_dir():
            raise SettingError(f"no stack home {home} to keep the signing master secret in")
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: read theirs
            return read_master(path)
        except OSError as exc:
            raise SettingError(f"cannot create the signing master secret {path}: {exc}") from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(MASTER_SECRET_BYTES) + "\n")
    return read_master(path)


def master_of_stack(home: Path) -> bytes:
    """The master secret of the stack at ``home`` (created the first time), or empty when
    there is no such home (settings built for a check or a test): then no registry is kept."""
    return ensure_master(home) if home.is_dir() else b""


def key_file_path(home: Path, principal: str, tenant_id: str) -> Path:
    """Where ``streamledger tenants grant PRINCIPAL TENANT`` writes the tenant's current key
    for the upstream system (``producers.sdk.read_signing_key`` reads it; the HTTP API reads
    its own, principal ``api``)."""
    return signing_directory(home) / KEYS_DIRECTORY_NAME / principal / f"{tenant_id}.json"
