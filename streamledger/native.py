"""Which implementation of the pure core a process runs: compiled (mypyc) or plain Python.

``scripts/build_native.py`` (run by ``make setup``) compiles an explicit list of modules of the
pure core (``ledger.*``) and of the contract's hand-written Avro codec (``schemas.*``, decision
0092) with mypyc into ``build/native/<interpreter>/``, outside the source tree, writes a
manifest there (each module's source file and its SHA-256) and puts one line into the
virtualenv's site-packages (``streamledger_native.pth``) that calls ``install`` at interpreter
start-up. Nothing else selects the compiled modules: they are never next to the ``.py`` files, so
a Python without that line (another virtualenv, the bench peers' ones, ``python -S``) simply runs
the sources (decision 0048).

``install`` puts ``NativeCoreFinder`` first on ``sys.meta_path``. It answers only for the modules
the manifest lists (and mypyc's shared library of the group), with the compiled extension; any
import under ``ledger.``, ``schemas.`` or ``reconciliation.`` (decision 0096), and of
``projections.event_reader`` (decision 0100) and ``processors.restore_fold`` (decision 0129),
(``COMPILED_PACKAGES``) checks the build first:

* ``STREAMLEDGER_PURE_PYTHON=1``: the finder is not installed; every module is the ``.py`` file.
  ``0`` or unset: the compiled modules. Any other value: importing the core fails, naming it.
* The compiled modules are one group (mypyc calls across them in C and shares their classes), so
  it is all or nothing: a manifest that is missing, names a missing binary, or whose recorded
  SHA-256 differs from a source file as it is now (someone edited an input since the build)
  makes the import of the core fail with an ``ImportError`` that says how to rebuild
  (``make setup``) or run the sources (``STREAMLEDGER_PURE_PYTHON=1``) — never a silent mix of
  new sources and old binaries.

This module runs at start-up in every process of the virtualenv: it imports only the standard
library and reads the manifest lazily, on the first import of a module it lists.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

PURE_PYTHON_VARIABLE: Final = "STREAMLEDGER_PURE_PYTHON"
PURE_PYTHON_VALUES: Final = {"1": True, "0": False, "": False}
NATIVE_BUILD_DIRECTORY: Final = Path("build") / "native"
MANIFEST_NAME: Final = "manifest.json"
MANIFEST_FORMAT: Final = 2
GROUP_NAME: Final = "streamledger_core"  # mypyc's group: its library is GROUP_NAME + "__mypyc"
SHARED_LIBRARY_MODULE: Final = f"{GROUP_NAME}__mypyc"
# The packages whose modules the build may compile: importing any module under them checks
# the build (all or nothing), whether that module is compiled or not.
# Plus two modules of the projection: its hand-written event readers and its planning and fold
# (decision 0100).
# And the reconciliation matcher's core (decision 0096): any module of reconciliation.
# And the restore's fold over consumed records (decision 0129).
COMPILED_PACKAGES: Final = (
    "ledger.",
    "schemas.",
    "projections.event_reader",
    "projections.batch",
    "processors.restore_fold",
    "reconciliation.",
)
BOOT_MODULE: Final = "streamledger_native_boot"  # this file, as the .pth line loads it
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
REBUILD_HINT: Final = (
    "run `make setup` (or `.venv/bin/python scripts/build_native.py`) to rebuild it, "
    f"or set {PURE_PYTHON_VARIABLE}=1 to run the Python sources"
)


def interpreter_tag() -> str:
    """The directory of this interpreter's build: its extension suffix without dots
    (``cpython-311-x86_64-linux-gnu``), so two Pythons never load each other's binaries."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or importlib.machinery.EXTENSION_SUFFIXES[0]
    return suffix.strip(".").removesuffix(".so").removesuffix(".pyd")


def build_directory(project_root: Path = PROJECT_ROOT) -> Path:
    return project_root / NATIVE_BUILD_DIRECTORY / interpreter_tag()


def source_digest(path: Path) -> str:
    import hashlib  # noqa: PLC0415 - not at start-up: only when the core is first imported

    return hashlib.sha256(path.read_bytes()).hexdigest()


class NativeManifest:
    """What one build compiled (module name -> binary) and what it was compiled from (source
    path -> SHA-256: the compiled modules and every project module they import). A plain class,
    not a dataclass: this module is imported at every interpreter start-up."""

    __slots__ = ("compiled", "directory", "inputs", "shared_library")

    def __init__(
        self,
        *,
        directory: Path,
        shared_library: str,
        compiled: dict[str, str],
        inputs: dict[str, str],
    ) -> None:
        self.directory = directory
        self.shared_library = shared_library  # mypyc's group library, imported by each binary
        self.compiled = compiled
        self.inputs = inputs

    def binary_of(self, module_name: str) -> Path:
        if module_name == SHARED_LIBRARY_MODULE:
            return self.directory / self.shared_library
        return self.directory / self.compiled[module_name]

    def problems(self, project_root: Path) -> list[str]:
        """Why this build cannot be loaded for the sources in ``project_root`` (empty: it can)."""
        found = [
            f"{binary} is missing"
            for binary in (self.shared_library, *self.compiled.values())
            if not (self.directory / binary).is_file()
        ]
        for source, digest in sorted(self.inputs.items()):
            source_path = project_root / source
            if not source_path.is_file():
                found.append(f"{source} was removed since the build")
            elif source_digest(source_path) != digest:
                found.append(f"{source} changed since the build")
        return found


def read_manifest(directory: Path) -> NativeManifest:
    import json  # noqa: PLC0415 - not at start-up: only when the core is first imported

    data = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"manifest format {data.get('format')!r}, expected {MANIFEST_FORMAT}")
    return NativeManifest(
        directory=directory,
        shared_library=str(data["shared_library"]),
        compiled=dict(data["compiled"]),
        inputs=dict(data["inputs"]),
    )


def pure_python_requested(environment: dict[str, str] | os._Environ[str]) -> bool:
    """``STREAMLEDGER_PURE_PYTHON``: 1 = the sources, 0 or unset = the compiled modules."""
    value = environment.get(PURE_PYTHON_VARIABLE, "").strip()
    if value not in PURE_PYTHON_VALUES:
        raise ImportError(f"{PURE_PYTHON_VARIABLE}={value!r}: expected 1 (pure Python) or 0")
    return PURE_PYTHON_VALUES[value]


class NativeCoreFinder:
    """A meta path finder for the compiled modules of one build, checked once, all or nothing."""

    def __init__(self, directory: Path, project_root: Path) -> None:
        self._directory = directory
        self._project_root = project_root
        self._manifest: NativeManifest | None = None
        self._failure: str | None = None

    def _load(self) -> NativeManifest:
        if self._manifest is None and self._failure is None:
            try:
                manifest = read_manifest(self._directory)
            except (OSError, ValueError, KeyError) as exc:
                self._failure = f"no usable native build in {self._directory} ({exc})"
            else:
                problems = manifest.problems(self._project_root)
                if problems:
                    self._failure = f"the native build in {self._directory} is stale: " + (
                        "; ".join(problems)
                    )
                self._manifest = manifest
        if self._failure is not None:
            raise ImportError(f"{self._failure}; {REBUILD_HINT}")
        assert self._manifest is not None
        return self._manifest

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """The compiled module ``fullname``, or None (the usual finders look for it). Any
        module of the core fails to import while the build is missing or stale."""
        if fullname != SHARED_LIBRARY_MODULE and not fullname.startswith(COMPILED_PACKAGES):
            return None
        manifest = self._load()
        if fullname != SHARED_LIBRARY_MODULE and fullname not in manifest.compiled:
            return None  # a module of the package the build does not compile
        binary = manifest.binary_of(fullname)
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(binary))
        return importlib.util.spec_from_file_location(fullname, binary, loader=loader)


class _InvalidSwitchFinder:
    """Installed instead of the real finder when the switch has a bad value: the core's
    import fails and names the variable (an exception in a ``.pth`` line would only print)."""

    def __init__(self, message: str) -> None:
        self._message = message

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.startswith(COMPILED_PACKAGES):
            raise ImportError(self._message)
        return None


def install(project_root: Path = PROJECT_ROOT) -> None:
    """Called at start-up by ``streamledger_native.pth``: select the compiled core unless
    ``STREAMLEDGER_PURE_PYTHON=1``. Idempotent."""
    finder_names = {NativeCoreFinder.__name__, _InvalidSwitchFinder.__name__}
    if any(type(finder).__name__ in finder_names for finder in sys.meta_path):
        return  # (also when installed by the start-up copy of this module, BOOT_MODULE)
    try:
        pure = pure_python_requested(os.environ)
    except ImportError as exc:
        sys.meta_path.insert(0, _InvalidSwitchFinder(str(exc)))
        return
    if not pure:
        finder = NativeCoreFinder(build_directory(project_root), project_root)
        sys.meta_path.insert(0, finder)


def compiled_modules() -> tuple[str, ...]:
    """The names of the modules this process runs compiled (loaded from a native build)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return tuple(
        sorted(
            name
            for name, module in list(sys.modules.items())
            if name.startswith(COMPILED_PACKAGES)
            and str(getattr(module, "__file__", "") or "").endswith(suffixes)
        )
    )
