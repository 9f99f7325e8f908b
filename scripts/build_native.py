"""Compile the pure ledger core, the hand-written Avro codecs and the reconciliation matcher's
core with mypyc into ``build/native/<interpreter>/`` (decisions 0048, 0092, 0096, 0100).

    .venv/bin/python scripts/build_native.py           # build unless up to date (make setup)
    .venv/bin/python scripts/build_native.py --force   # build again
    .venv/bin/python scripts/build_native.py --check   # exit 1 unless the build is up to date

What is compiled is the explicit list ``COMPILED_MODULES`` below; every other module (a new one
someone adds to ``ledger/`` or ``schemas/`` included) stays Python until it is listed here. The
binaries go to ``build/native/<interpreter>/``, never next to the sources (a ``.so`` there would
shadow the ``.py`` for every process, stale or not); ``streamledger.native`` loads them through
the ``streamledger_native.pth`` line this script writes into the virtualenv, unless
``STREAMLEDGER_PURE_PYTHON=1``.

Up to date means: the manifest's build key equals the one computed now from the interpreter,
mypy's version, this script and every project source the compiled modules import (transitively:
the contract's value types in ``schemas/`` and the error tree included, since mypyc compiles
against their types). Then nothing is done (about 50 ms). Otherwise the old build is removed, mypyc
runs in a child process (in a scratch directory, so the project's ``pyproject.toml`` is not read
as the build's), each listed module's binary must exist, a child process must import the core
compiled, and only then is the manifest written. Any failure exits non-zero and says where: the
setup stops; it never falls back to Python silently.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Final

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import mypy.version  # noqa: E402 - the build key names the compiler

from streamledger.native import (  # noqa: E402 - after the project root is on the path
    BOOT_MODULE,
    GROUP_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    SHARED_LIBRARY_MODULE,
    build_directory,
    source_digest,
)

# The pure core, module by module. Not compiled, and why:
#   ledger/__init__.py            re-exports only; as Python it runs before any compiled module
#   ledger/decisions.py           its dataclasses would become native classes, which the typed
#   ledger/_generated_records.py  builders (slot setters, decision 0034) cannot write into; and
#                                 compiled, these builders would refuse the untyped values that
#                                 tests/unit/test_generated_checks.py builds decisions from
#   anything not listed           a module added later stays Python until someone lists it here
# and, of the contract (decision 0092), the hand-written Avro writers and state readers: the
# encode of the processor loop and the decode of a restore. The rest of ``schemas/`` stays
# Python (fastavro's schemas, exec-generated builders, the model's dataclasses).
COMPILED_MODULES: Final = (
    "ledger/decider.py",
    "ledger/draft.py",
    "ledger/effects.py",
    "ledger/execution.py",
    "ledger/expiry.py",
    "ledger/fingerprints.py",
    "ledger/fold.py",
    "ledger/invariants.py",
    "ledger/monitor_steps.py",
    "ledger/monitors.py",
    "ledger/rules.py",
    "ledger/snapshot.py",
    "ledger/state.py",
    "ledger/transactions.py",
    "schemas/_generated_records.py",  # the records' typed builders, per record (decision 0125)
    "schemas/avro_command_readers.py",  # the processor's command readers (decision 0104)
    "schemas/avro_readers.py",
    "schemas/avro_writers.py",
    "projections/event_reader.py",  # the projection's event readers (decision 0100)
    "projections/batch.py",  # the projection's planning and fold (decision 0100)
    "processors/restore_fold.py",  # the restore's fold over consumed records (decision 0129)
    "reconciliation/event_movements.py",  # the matcher's core and its codecs (decision 0096)
    "reconciliation/matching.py",
    "reconciliation/records.py",
)
PROJECT_PACKAGES: Final = ("ledger", "projections", "reconciliation", "schemas", "streamledger")
MYPYC_OPTIMIZATION_LEVEL: Final = "3"
PTH_NAME: Final = "streamledger_native.pth"
# Loads streamledger/native.py of this checkout by path: at start-up the project is not on
# sys.path yet (the editable install's finder may not be either), and the line must name the
# checkout whose build it selects.
PTH_LINE_FORMAT: Final = (
    "import importlib.util as u, sys; s = u.spec_from_file_location({name!r}, {path!r}); "
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m); m.install()\n"
)
BUILD_TIMEOUT_S: Final = 900
SMOKE_TIMEOUT_S: Final = 120


def module_name(source: str) -> str:
    return source.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def module_source(name: str) -> Path | None:
    """The project file of module ``name`` (a module or a package's ``__init__``), or None."""
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_project_modules(path: Path) -> set[str]:
    """The project modules ``path`` imports (and the packages they sit in)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] in PROJECT_PACKAGES:
                found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return found


def build_inputs() -> list[Path]:
    """The compiled sources and every project source they import, transitively (sorted)."""
    pending = [module_name(source) for source in COMPILED_MODULES]
    seen: set[str] = set()
    files: set[Path] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_source(name)
        if path is not None:
            files.add(path)
            pending.extend(imported_project_modules(path) - seen)
    return sorted(files)


def build_key(inputs: list[Path]) -> str:
    digest = hashlib.sha256()
    for part in (sys.version, sysconfig.get_config_var("EXT_SUFFIX"), mypy.version.__version__):
        digest.update(f"{part}\0".encode())
    digest.update(Path(__file__).read_bytes())
    for path in inputs:
        digest.update(f"{path.relative_to(PROJECT_ROOT)}\0{source_digest(path)}\0".encode())
    return digest.hexdigest()


def binary_name(module: str) -> str:
    return module.replace(".", "/") + str(sysconfig.get_config_var("EXT_SUFFIX"))


def up_to_date(directory: Path, key: str) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    binaries = [manifest.get("shared_library", ""), *manifest.get("compiled", {}).values()]
    return manifest.get("build_key") == key and all((directory / b).is_file() for b in binaries)


def compile_modules(directory: Path, work: Path) -> None:
    """mypyc + the C compiler in a child process, in ``work``; raises on any failure."""
    sources = [str(PROJECT_ROOT / source) for source in COMPILED_MODULES]
    program = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"extensions = mypycify({sources!r}, opt_level={MYPYC_OPTIMIZATION_LEVEL!r},"
        f" group_name={GROUP_NAME!r})\n"
        "setup(name='streamledger-native', ext_modules=extensions, script_args=["
        f"'build_ext', '--build-lib', {str(directory)!r}, '--build-temp', {str(work)!r},"
        f" '--parallel', {str(os.cpu_count() or 1)!r}])\n"
    )
    environment = {**os.environ, "MYPYPATH": str(PROJECT_ROOT), "STREAMLEDGER_PURE_PYTHON": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"mypyc failed (exit {completed.returncode}):\n{completed.stdout[-4000:]}"
            f"\n{completed.stderr[-4000:]}"
        )
    expected = [SHARED_LIBRARY_MODULE] + [module_name(s) for s in COMPILED_MODULES]
    missing = [name for name in expected if not (directory / binary_name(name)).is_file()]
    if missing:
        raise RuntimeError(f"mypyc reported success but built no binary for {missing}")


def write_manifest(directory: Path, key: str, inputs: list[Path]) -> None:
    """The manifest the loader reads: the compiled modules' binaries, and every input's SHA-256
    (so an edit to any of them after the build is noticed)."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "build_key": key,
        "shared_library": binary_name(SHARED_LIBRARY_MODULE),
        "compiled": {module_name(s): binary_name(module_name(s)) for s in COMPILED_MODULES},
        "inputs": {str(path.relative_to(PROJECT_ROOT)): source_digest(path) for path in inputs},
    }
    temporary = directory / f"{MANIFEST_NAME}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    temporary.replace(directory / MANIFEST_NAME)


def smoke_test(expected: list[str]) -> None:
    """Import the core in a child process through the loader: every listed module compiled."""
    program = (
        "import streamledger.native as native\n"
        "native.install()\n"
        f"import {', '.join(expected)}\n"  # every listed module, through the finder
        "print(','.join(native.compiled_modules()))\n"
    )
    environment = {**os.environ, "STREAMLEDGER_PURE_PYTHON": "0"}
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    loaded = completed.stdout.strip().split(",")
    if completed.returncode != 0 or sorted(loaded) != sorted(expected):
        raise RuntimeError(
            f"the compiled core does not import: expected {expected}, loaded {loaded}\n"
            f"{completed.stderr[-4000:]}"
        )


def install_pth_line() -> Path:
    """The start-up line of this interpreter's site-packages that calls the loader."""
    path = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    loader = PROJECT_ROOT / "streamledger" / "native.py"
    line = PTH_LINE_FORMAT.format(name=BOOT_MODULE, path=str(loader))
    if not path.is_file() or path.read_text(encoding="utf-8") != line:
        path.write_text(line, encoding="utf-8")
    return path


def build(*, force: bool) -> int:
    directory = build_directory(PROJECT_ROOT)
    inputs = build_inputs()
    key = build_key(inputs)
    if not force and up_to_date(directory, key):
        print(f"[native] {directory.relative_to(PROJECT_ROOT)} is up to date")
        install_pth_line()
        return 0
    started = time.monotonic()
    expected = [module_name(source) for source in COMPILED_MODULES]
    print(f"[native] compiling {len(expected)} modules with mypyc: {', '.join(expected)}")
    shutil.rmtree(directory, ignore_errors=True)
    work = directory.parent / f".work-{directory.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        compile_modules(directory, work)
        write_manifest(directory, key, inputs)
        install_pth_line()
        smoke_test(expected)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        (directory / MANIFEST_NAME).unlink(missing_ok=True)  # no manifest: the core won't load
        print(f"[native] error: {exc}", file=sys.stderr)
        print(
            "[native] the compiled core was not built; fix the error, or run the Python sources"
            " with STREAMLEDGER_PURE_PYTHON=1",
            file=sys.stderr,
        )
        return 1
    shutil.rmtree(work, ignore_errors=True)
    elapsed_s = time.monotonic() - started
    print(f"[native] built {directory.relative_to(PROJECT_ROOT)} in {elapsed_s:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    parser.add_argument("--check", action="store_true", help="exit 1 unless up to date")
    arguments = parser.parse_args()
    if arguments.check:
        directory = build_directory(PROJECT_ROOT)
        current = up_to_date(directory, build_key(build_inputs()))
        state = "up to date" if current else "stale"
        print(f"[native] {directory.relative_to(PROJECT_ROOT)}: {state}")
        return 0 if current else 1
    return build(force=arguments.force)


if __name__ == "__main__":
    sys.exit(main())
