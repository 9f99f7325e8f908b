"""The key of a bench cache: what a cached input (a built workload, a filled database) is valid
for. Both caches (``reconciliation_suite.cached_workload``, ``reports_suite.cached_fill``) name
their file by it, so a change to the parameters or to any source file makes a new key and the
old file is never read again."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

KEY_CHARACTERS = 20  # of the SHA-256 hex digest: a file name, not a security boundary


def sources_key(parameters: object, sources: Iterable[Path], root: Path) -> str:
    """SHA-256 over ``repr(parameters)``, then for each source file its path relative to
    ``root`` and the SHA-256 of its bytes, in the given order; the first ``KEY_CHARACTERS`` hex
    characters."""
    digest = hashlib.sha256(repr(parameters).encode())
    for path in sources:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:KEY_CHARACTERS]
