"""Write the typed record builders: ``schemas/_generated_records.py`` and
``ledger/_generated_records.py`` (decision 0034).

    .venv/bin/python scripts/generate_record_code.py          # rewrite both modules
    .venv/bin/python scripts/generate_record_code.py --check  # exit 1 if either is stale

For each frozen, slotted, keyword-only dataclass listed below, the output holds one ordinary
function ``new_<record>(*, field: type, ...) -> Record`` that makes the record with
``object.__new__`` and stores each field through its slot's descriptor. It equals calling the
class with the same keywords (tests/unit/test_generated_checks.py) and skips ``type.__call__``,
the dataclass ``__init__`` and its ``object.__setattr__`` per field: about half the cost, for
the few records the processor builds per command. A record whose only base is ``object`` is
built cheaper still (decision 0143): its fields are stored as plain attributes of an object of
its building class (``schemas.model.building_type``, the same slots), which then gets the
record's class. Each event also has ``new_<event>_with_header(header, *, ...)``, which takes the
fields every event has from one ``EventHeaderValues`` (a plain slotted class, native when
compiled) instead of ten keywords: the ledger builds its events that way, without a dict of the
header unpacked into every call (decision 0145). Being plain Python in the repository, the
builders are checked by mypy (keywords and types at every call site) and ruff, and show real
lines in tracebacks. tests/unit/test_generated_records.py regenerates and compares, so the
checked-in modules never drift from the dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:  # run as a script: import the project from the checkout
    sys.path.insert(0, str(REPOSITORY))


def _import_without_package_init(package: str, module: str) -> types.ModuleType:
    """``package.module`` without running ``package/__init__.py``, which imports the very
    builders this script writes (they may be missing or stale while it runs). The record
    modules themselves import only ``schemas.model`` and the standard library."""
    if package not in sys.modules:
        stand_in = types.ModuleType(package)
        stand_in.__path__ = [str(REPOSITORY / package)]
        sys.modules[package] = stand_in
    return importlib.import_module(f"{package}.{module}")


model = _import_without_package_init("schemas", "model")
decisions = _import_without_package_init("ledger", "decisions")

BUILTIN_NAMES = frozenset({"str", "int", "bytes", "bool", "tuple", "None"})
MODULE_DOCSTRINGS = {
    "schemas": "Typed builders of the contract's records (``schemas.model``).",
    "ledger": "Typed builders of the ledger core's decisions (``ledger.decisions``).",
}


@dataclasses.dataclass(frozen=True)
class Target:
    package: str
    path: Path
    record_types: tuple[type[Any], ...]


TARGETS = (
    Target("schemas", REPOSITORY / "schemas" / "_generated_records.py", model.RECORD_TYPES),
    Target(
        "ledger",
        REPOSITORY / "ledger" / "_generated_records.py",
        (
            decisions.StateChanges,
            decisions.Accepted,
            decisions.Rejected,
            decisions.Duplicate,
            decisions.Ticked,
        ),
    ),
)


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def builder_name(record_type: type[Any]) -> str:
    return f"new_{snake_case(record_type.__name__)}"


def _checked_fields(record_type: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    assert dataclasses.is_dataclass(record_type), record_type
    assert record_type.__dataclass_params__.frozen, record_type  # type: ignore[attr-defined]
    assert "__slots__" in record_type.__dict__, record_type
    assert not hasattr(record_type, "__post_init__"), record_type
    found = dataclasses.fields(record_type)
    assert found, f"{record_type.__name__} has no fields"
    for item in found:
        assert item.kw_only and item.init, (record_type, item.name)
        assert item.default_factory is dataclasses.MISSING, (record_type, item.name)
    return found


def _default_source(value: object, imports: set[str]) -> str:
    """A default as source: a constant of ``schemas.model`` it is (same object), else its repr."""
    for name in dir(model):
        if name.isupper() and getattr(model, name) is value and not isinstance(value, int | bool):
            imports.add(name)
            return name
    source = repr(value)
    assert eval(source) == value and len(source) <= 40, source  # noqa: S307 - our own constants
    return source


def _annotation_names(annotation: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", annotation)) - BUILTIN_NAMES


def _builder_source(record_type: type[Any], imports: set[str]) -> str:
    name = record_type.__name__
    parameters, body = [], []
    for item in _checked_fields(record_type):
        parameters.append(_parameter_source(item, imports))
        if _builds_in_place(record_type):
            body.append(f"    record.{item.name} = {item.name}\n")
        else:
            body.append(f"    _SET_{_constant(name)}_{item.name.upper()}(record, {item.name})\n")
    imports.add(name)
    if _builds_in_place(record_type):
        start = f"    record: Any = _NEW(_BUILDING_{_constant(name)})\n"
        end = f"    record.__class__ = {name}\n    built: {name} = record\n    return built\n"
    else:
        start = f"    record: {name} = _NEW({name})\n"
        end = "    return record\n"
    return (
        f"def {builder_name(record_type)}(\n    *,\n{''.join(parameters)}) -> {name}:\n"
        f'    """``{name}(...)`` with the same keywords, without ``type.__call__``."""\n'
        + start
        + "".join(body)
        + end
    )


def _is_event(record_type: type[Any]) -> bool:
    return issubclass(record_type, model.EventHeader)


def builder_with_header_name(record_type: type[Any]) -> str:
    return f"{builder_name(record_type)}_with_header"


def _parameter_source(item: dataclasses.Field[Any], imports: set[str]) -> str:
    annotation = str(item.type)
    imports.update(_annotation_names(annotation))
    default = ""
    if item.default is not dataclasses.MISSING:
        default = f" = {_default_source(item.default, imports)}"
    return f"    {item.name}: {annotation}{default},\n"


def _header_values_source(imports: set[str]) -> str:
    """``EventHeaderValues``: the fields of ``EventHeader`` (same names, types and defaults) as a
    plain slotted class, which mypyc compiles to a native class (its attributes read directly)."""
    fields = _checked_fields(model.EventHeader)
    slots = "".join(f'        "{name}",\n' for name in sorted(item.name for item in fields))
    parameters = "".join(f"    {_parameter_source(item, imports)}" for item in fields)
    stores = "".join(f"        self.{item.name} = {item.name}\n" for item in fields)
    return (
        "@final\n"
        "class EventHeaderValues:\n"
        '    """The fields every event has (``EventHeader``), for the builders\n'
        "    ``new_<event>_with_header``: one object in place of ten keywords (decision 0145).\n"
        '    """\n\n'
        f"    __slots__ = (\n{slots}    )\n\n"
        f"    def __init__(\n        self,\n        *,\n{parameters}    ) -> None:\n"
        f"{stores}"
    )


def _builder_with_header_source(record_type: type[Any], imports: set[str]) -> str:
    """``new_<event>_with_header``: as ``new_<event>``, the header's fields read from ``header``."""
    name = record_type.__name__
    header_names = {item.name for item in dataclasses.fields(model.EventHeader)}
    parameters, body = [], []
    for item in _checked_fields(record_type):
        if item.name in header_names:
            value = f"header.{item.name}"
        else:
            parameters.append(_parameter_source(item, imports))
            value = item.name
        body.append(f"    _SET_{_constant(name)}_{item.name.upper()}(record, {value})\n")
    return (
        f"def {builder_with_header_name(record_type)}(\n"
        f"    header: EventHeaderValues,\n    *,\n{''.join(parameters)}) -> {name}:\n"
        f'    """``{builder_name(record_type)}`` with the header\'s fields from ``header``."""\n'
        f"    record: {name} = _NEW({name})\n" + "".join(body) + "    return record\n"
    )


def _builds_in_place(record_type: type[Any]) -> bool:
    """Whether the builder fills a ``building_type`` object and then sets its class (decision
    0143): for records whose only base is ``object``. A record with a base of its own (the
    commands, events and notifications share a header class) keeps the slot setters: a building
    class would have to derive from that frozen base, whose ``__setattr__`` costs more than the
    setters."""
    return record_type.__bases__ == (object,)


def _constant(name: str) -> str:
    return snake_case(name).upper()


def _setters_source(record_type: type[Any]) -> str:
    name = record_type.__name__
    if _builds_in_place(record_type):
        return f"_BUILDING_{_constant(name)}: Final = building_type({name})\n"
    return "".join(
        f'_SET_{_constant(name)}_{item.name.upper()}: Final = slot_setter({name}, "{item.name}")\n'
        for item in _checked_fields(record_type)
    )


def _import_lines(target: Target, imports: set[str]) -> str:
    by_module: dict[str, list[str]] = {}
    for name in sorted(imports):
        module = "schemas.model" if hasattr(model, name) else f"{target.package}.decisions"
        by_module.setdefault(module, []).append(name)
    lines = []
    for module in sorted(by_module):
        names = "".join(f"    {name},\n" for name in sorted(by_module[module]))
        lines.append(f"from {module} import (\n{names})\n")
    return "".join(lines)


def module_source(target: Target) -> str:
    """The whole generated module of one target (what the test compares with the file)."""
    imports: set[str] = {
        "building_type" if _builds_in_place(record_type) else "slot_setter"
        for record_type in target.record_types
    }
    builders = [_builder_source(record_type, imports) for record_type in target.record_types]
    setters = "".join(_setters_source(record_type) for record_type in target.record_types)
    table = "".join(
        f"    {record_type.__name__}: {builder_name(record_type)},\n"
        for record_type in target.record_types
    )
    events = [record_type for record_type in target.record_types if _is_event(record_type)]
    header_part = ""
    if events:
        header_builders = [
            _builder_with_header_source(record_type, imports) for record_type in events
        ]
        header_table = "".join(
            f"    {record_type.__name__}: {builder_with_header_name(record_type)},\n"
            for record_type in events
        )
        header_part = (
            "\n\n" + _header_values_source(imports) + "\n\n" + "\n\n".join(header_builders) + "\n\n"
            "# Event type -> its builder from an ``EventHeaderValues`` (for the tests).\n"
            "BUILDERS_WITH_HEADER: Final[dict[type[Any], Callable[..., Any]]] = {\n"
            f"{header_table}}}\n"
        )
    return (
        "# generated by scripts/generate_record_code.py; do not edit (decision 0034)\n"
        f'"""{MODULE_DOCSTRINGS[target.package]}\n\n'
        "Each ``new_<record>`` equals calling the class with the same keywords, without\n"
        "``type.__call__`` and the frozen dataclass's ``object.__setattr__`` per field.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from collections.abc import Callable\n"
        f"from typing import Any, Final{', final' if events else ''}\n\n"
        f"{_import_lines(target, imports)}\n"
        "_NEW: Final = object.__new__\n"
        f"{setters}\n\n" + "\n\n".join(builders) + "\n\n"
        "# Record type -> its builder (for callers that pick the type at run time: the codec).\n"
        f"BUILDERS: Final[dict[type[Any], Callable[..., Any]]] = {{\n{table}}}\n" + header_part
    )


def ruff_formatted(source: str, path: Path) -> str:
    """``source`` as ``ruff check --fix`` (import order) and ``ruff format`` leave it, so the
    checked-in module passes ``make check`` unchanged (ruff is pinned in constraints.txt)."""
    ruff = Path(sys.executable).parent / "ruff"
    for arguments in (("check", "--fix-only", "--exit-zero", "--quiet"), ("format",)):
        source = subprocess.run(
            [str(ruff), *arguments, "--stdin-filename", str(path), "-"],
            input=source,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPOSITORY,
        ).stdout
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a module is stale")
    arguments = parser.parse_args(argv)
    stale = []
    for target in TARGETS:
        source = ruff_formatted(module_source(target), target.path)
        current = target.path.read_text() if target.path.exists() else ""
        if current == source:
            continue
        stale.append(str(target.path.relative_to(REPOSITORY)))
        if not arguments.check:
            target.path.write_text(source)
    verb = "stale" if arguments.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "up to date")
    return 1 if stale and arguments.check else 0


if __name__ == "__main__":
    sys.exit(main())
