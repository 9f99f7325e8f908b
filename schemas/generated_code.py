"""The functions this project still generates at run time, compiled visibly (decision 0034).

A few hot-path functions are built from tables only known at import (fastavro's parsed schemas,
the chosen fastavro writer, the limits and fingerprint rules): the codec's encoder and reader
per record type, the certainly-valid limit check and the fingerprint per command type. Each is
compiled here, from source this project writes from its own tables (never from input), and:

- its source is registered with ``linecache`` under ``<generated NAME>``, so tracebacks,
  ``pdb`` and ``inspect.getsource`` show its real lines;
- it is listed by ``generated_names()`` and printed by ``streamledger debug generated NAME``;
- the module that makes it stores it under a typed name (``Callable[[Command], bool]`` ...),
  so mypy checks the call sites; the generated body itself is covered by tests that compare
  it with the readable reference it stands in for.

The record builders, whose shape never depends on run-time tables, are not generated here but
written once into checked-in modules (``scripts/generate_record_code.py``).
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from typing import Any, Final

GENERATED_FILENAME_FORMAT: Final = "<generated {name}>"
_SOURCES: dict[str, str] = {}  # name -> source, in the order they were compiled


def generated_filename(name: str) -> str:
    """The file name the code of generated function ``name`` carries (and tracebacks show)."""
    return GENERATED_FILENAME_FORMAT.format(name=name)


def compile_generated(
    source: str, function_name: str, namespace: dict[str, Any], name: str
) -> Callable[..., Any]:
    """Run ``source`` in ``namespace`` and return its function ``function_name``, registered
    as ``name`` (e.g. ``schemas.codec.encode.Transfer``) for ``linecache`` and the debug CLI.

    The caller assigns the result to a typed name: that is what mypy checks its callers with.
    """
    assert " " not in name and name not in _SOURCES, name
    filename = generated_filename(name)
    # (size, mtime None, lines, name): an entry ``linecache.checkcache`` keeps, as for doctests
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own source
    _SOURCES[name] = source
    function: Callable[..., Any] = namespace[function_name]
    return function


def generated_names() -> tuple[str, ...]:
    """Every function generated so far in this process, in the order they were compiled."""
    return tuple(_SOURCES)


def generated_source(name: str) -> str | None:
    """The source of generated function ``name``, or None if no such function was generated."""
    return _SOURCES.get(name)
