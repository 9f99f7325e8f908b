"""The exception tree drawn in ``streamledger/errors.py`` is the real one.

Every project package is imported first, so every subclass of ``StreamLedgerError`` exists; the
drawing must then name each class once, under its real parent, with the module it lives in. Any
exception class a project module defines must be in the tree (no second root).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import streamledger.errors
from streamledger.errors import StreamLedgerError

# The product's packages (bench, workloads and tests are not the product).
PROJECT_PACKAGES = (
    "streamledger",
    "schemas",
    "ledger",
    "producers",
    "processors",
    "projections",
    "kafka_adapter",
    "infra",
    "api",
    "pipeline",
)
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
TREE_LINE = re.compile(
    r"^(?P<branches>(?:[│ ]   )*)(?P<marker>[├└]── )?"
    r"(?P<name>[A-Z]\w*Error)\b(?:\s+\[(?P<module>[\w.]+)\])?"
)
DRAWING_INDENT = "    "


@dataclass(frozen=True, slots=True)
class DrawnClass:
    name: str
    parent: str | None
    module: str


def project_modules() -> list[ModuleType]:
    modules: list[ModuleType] = []
    for package_name in PROJECT_PACKAGES:
        if not (REPOSITORY_ROOT / package_name / "__init__.py").exists():
            continue
        package = importlib.import_module(package_name)
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if info.name.rsplit(".", 1)[-1] != "__main__":
                modules.append(importlib.import_module(info.name))
    return modules


def drawn_tree() -> list[DrawnClass]:
    """The classes of the docstring's drawing, each with its parent (by indentation)."""
    docstring = streamledger.errors.__doc__
    assert docstring is not None
    drawing = docstring.split("::", 1)[1]
    parents: list[str] = []
    drawn: list[DrawnClass] = []
    for line in drawing.splitlines():
        if not line.startswith(DRAWING_INDENT) or not line.strip():
            continue
        match = TREE_LINE.match(line[len(DRAWING_INDENT) :])
        assert match is not None, f"not a line of the tree: {line!r}"
        depth = len(match["branches"]) // 4 + (1 if match["marker"] else 0)
        del parents[depth:]
        parent = parents[-1] if parents else None
        module = match["module"] or "streamledger.errors"
        drawn.append(DrawnClass(match["name"], parent, module))
        parents.append(match["name"])
    return drawn


def real_tree(root: type[BaseException]) -> list[DrawnClass]:
    found = [DrawnClass(root.__name__, None, root.__module__)]
    pending: list[type[BaseException]] = [root]
    while pending:
        parent = pending.pop()
        for child in parent.__subclasses__():
            found.append(DrawnClass(child.__name__, parent.__name__, child.__module__))
            pending.append(child)
    return found


def test_the_drawing_is_the_tree_of_subclasses() -> None:
    project_modules()
    drawn = drawn_tree()
    real = real_tree(StreamLedgerError)
    names = [entry.name for entry in drawn]
    assert len(names) == len(set(names)), "a class drawn twice"
    assert sorted(drawn, key=lambda e: e.name) == sorted(real, key=lambda e: e.name)


def test_every_project_exception_is_in_the_tree() -> None:
    outside = [
        f"{module.__name__}.{name}"
        for module in project_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
        and not issubclass(value, StreamLedgerError)
    ]
    assert outside == [], "exceptions outside the StreamLedgerError tree"
