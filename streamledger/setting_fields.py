"""Settings declared once, on the dataclass field that holds them (decision 0035).

Every service's settings class declares each setting where its field is::

    batch_records_max: int = field(
        default=5_000, metadata=limit(1, 100_000, "records", "commands in one transaction")
    )

and everything else derives from that one line: the ``--batch-records-max`` flag and its help
text (what it does, its unit, its bounds and its default), the ``STREAMLEDGER_BATCH_RECORDS_MAX``
variable where the setting is environment-backed (``environment=True``), the parsing of the text
given there (ASCII digits only: ``int()`` would read "٣" as 3), and the check. The check runs in
the class's ``__post_init__`` (``check_declared(self)``), so a settings object built directly or
through ``dataclasses.replace`` is validated like one built from flags.

A bad value is one line naming the setting and its flag:
``setting NAME (--flag): VALUE is outside MIN..MAX``.

Kinds: ``limit`` (a whole number in MIN..MAX), ``decimal_limit`` (a decimal number in MIN..MAX,
for seconds below one) and ``text`` (any other value, with a parser that raises ``ValueError``
naming what is wrong). The field's name is the setting's name; the default is the field's.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from streamledger.errors import SettingError

ENVIRONMENT_PREFIX: Final = "STREAMLEDGER_"
METADATA_KEY: Final = "streamledger.setting"
# Numbers are ASCII digits only: int() and float() also read other scripts' digits ("٣" is 3).
WHOLE_NUMBER_PATTERN: Final = re.compile(r"[0-9]{1,18}")
DECIMAL_NUMBER_PATTERN: Final = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,9})?")

SettingsClass = TypeVar("SettingsClass")
# Each settings class's declarations, read once from its fields (classes are few and live long).
DECLARED: dict[type, tuple[Declaration, ...]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Declaration:
    """One setting: what it is for, its unit and bounds or its parser, and where it comes from.

    ``name`` and ``default`` are the field's; ``declarations(cls)`` fills them in."""

    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    decimal: bool = False
    parse: Callable[[str], object] | None = None  # text settings: raises ValueError(reason)
    checked_on_build: bool = True  # text settings: run ``parse`` on a value built directly
    environment: bool = False  # backed by STREAMLEDGER_<NAME>
    flag_name: str = ""  # when the flag is not --<name-with-dashes> (kept for compatibility)
    default_text: str = ""  # shown in --help instead of the field's default (e.g. "now")
    # limits: words that stand for a number worked out when read, e.g. ("auto", usable_cores)
    named_values: tuple[tuple[str, Callable[[], int]], ...] = ()
    name: str = ""
    default: object = None
    has_default: bool = False

    @property
    def is_limit(self) -> bool:
        return self.minimum is not None and self.maximum is not None

    @property
    def flag(self) -> str:
        return self.flag_name or "--" + self.name.replace("_", "-")

    @property
    def environment_variable(self) -> str:
        return ENVIRONMENT_PREFIX + self.name.upper()

    def help_text(self) -> str:
        """The ``--help`` line: what it does, then unit, bounds and default."""
        details: list[str] = []
        if self.is_limit:
            details.append(f"{self.unit}, {self.bounds()}" if self.unit else self.bounds())
            details.extend(f"or {word}" for word, _ in self.named_values)
        elif self.unit:
            details.append(self.unit)
        if self.default_text:
            details.append(f"default {self.default_text}")
        elif self.has_default and self.default not in ("", None):
            details.append(f"default {self.shown(self.default)}")
        if self.environment:
            details.append(f"env {self.environment_variable}")
        return f"{self.help} ({'; '.join(details)})" if details else self.help

    def bounds(self) -> str:
        return f"{self.shown(self.minimum)}..{self.shown(self.maximum)}"

    def shown(self, value: object) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    def parse_text(self, text: str) -> object:
        """The value written as ``text`` (a flag or a variable); ``ValueError`` says why not."""
        if self.is_limit:
            named = self.named_value(text)
            value: float = named if named is not None else self.parse_number(text)
            problem = self.problem(value)
            if problem is not None:
                raise ValueError(problem)
            return value
        if self.parse is None:
            return text
        return self.parse(text)

    def parse_number(self, text: str) -> float:
        return parse_decimal(text) if self.decimal else parse_whole_number(text)

    def named_value(self, text: str) -> int | None:
        """The number a word of ``named_values`` stands for (worked out now), or None."""
        word = text.strip()
        for name, value_of in self.named_values:
            if word == name:
                return value_of()
        return None

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not a valid value of this setting, or None."""
        if self.is_limit:
            return self.limit_problem(value)
        if self.parse is None or not self.checked_on_build:
            return None
        if self.has_default and value == self.default:
            return None
        if not isinstance(value, str):
            return f"{value!r} is not text"
        try:
            self.parse(value)
        except ValueError as exc:
            return str(exc)
        return None

    def limit_problem(self, value: object) -> str | None:
        assert self.minimum is not None and self.maximum is not None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if not self.decimal and not isinstance(value, int):
            return f"{value!r} is not a whole number"
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            return f"{self.shown(value)} is outside {self.bounds()}"
        return None


def limit(
    minimum: int,
    maximum: int,
    unit: str,
    help: str,
    *,
    environment: bool = False,
    flag: str = "",
    default_text: str = "",
    named_values: tuple[tuple[str, Callable[[], int]], ...] = (),
) -> dict[str, Declaration]:
    """A whole-number setting in ``minimum..maximum``: a field's ``metadata``; ``named_values``
    are words that may stand for a number (worked out when read, then range-checked)."""
    declaration = Declaration(
        help=help,
        unit=unit,
        minimum=minimum,
        maximum=maximum,
        environment=environment,
        flag_name=flag,
        default_text=default_text,
        named_values=named_values,
    )
    return {METADATA_KEY: declaration}


def decimal_limit(
    minimum: float,
    maximum: float,
    unit: str,
    help: str,
    *,
    flag: str = "",
) -> dict[str, Declaration]:
    """A decimal setting in ``minimum..maximum`` (e.g. seconds below one): a field's metadata."""
    declaration = Declaration(
        help=help, unit=unit, minimum=minimum, maximum=maximum, decimal=True, flag_name=flag
    )
    return {METADATA_KEY: declaration}


def text_setting(
    parse: Callable[[str], object],
    help: str,
    *,
    environment: bool = False,
    checked_on_build: bool = True,
    flag: str = "",
    default_text: str = "",
) -> dict[str, Declaration]:
    """A setting read by ``parse`` (which raises ``ValueError(reason)``): a field's metadata."""
    declaration = Declaration(
        help=help,
        parse=parse,
        environment=environment,
        checked_on_build=checked_on_build,
        flag_name=flag,
        default_text=default_text,
    )
    return {METADATA_KEY: declaration}


def declarations(settings_class: type) -> tuple[Declaration, ...]:
    """The declared settings of a dataclass, in field order, named after their fields."""
    known = DECLARED.get(settings_class)
    if known is None:
        known = DECLARED[settings_class] = declared_fields(settings_class)
    return known


def declared_fields(settings_class: type) -> tuple[Declaration, ...]:
    result: list[Declaration] = []
    for field in dataclasses.fields(settings_class):
        declaration = field.metadata.get(METADATA_KEY)
        if declaration is None:
            continue
        has_default = field.default is not dataclasses.MISSING
        result.append(
            dataclasses.replace(
                declaration,
                name=field.name,
                default=field.default if has_default else None,
                has_default=has_default,
            )
        )
    return tuple(result)


def declaration_of(settings_class: type, name: str) -> Declaration:
    for declaration in declarations(settings_class):
        if declaration.name == name:
            return declaration
    raise KeyError(f"{settings_class.__name__} declares no setting {name!r}")


def check_declared(settings: object) -> None:
    """Validate every declared field of ``settings`` (call it from ``__post_init__``).

    Raises ``SettingError``: ``setting NAME (--flag): reason``."""
    for declaration in declarations(type(settings)):
        problem = declaration.problem(getattr(settings, declaration.name))
        if problem is not None:
            raise setting_error(declaration, problem)


def setting_error(declaration: Declaration, problem: str) -> SettingError:
    return SettingError(f"setting {declaration.name} ({declaration.flag}): {problem}")


def build_declared(
    settings_class: type[SettingsClass],
    given: Mapping[str, object | None],
    **fixed: object,
) -> SettingsClass:
    """``settings_class(**fixed, **given)`` without the ``None`` (not given) values; a name the
    class does not declare is a ``SettingError``, not a ``TypeError``."""
    values = {name: value for name, value in given.items() if value is not None}
    known = {declaration.name for declaration in declarations(settings_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingError(f"unknown {settings_class.__name__} settings: {unknown}")
    return settings_class(**{**fixed, **values})


def parse_whole_number(text: str) -> int:
    """ASCII digits (surrounding blanks ignored), at most 18 of them."""
    digits = text.strip()
    if WHOLE_NUMBER_PATTERN.fullmatch(digits) is None:
        raise ValueError(f"{text[:40]!r} is not a whole number (ASCII digits 0-9)")
    return int(digits)


def parse_decimal(text: str) -> float:
    """ASCII digits with an optional fraction ("0.5"): no sign, exponent, "nan" or "inf"."""
    digits = text.strip()
    if DECIMAL_NUMBER_PATTERN.fullmatch(digits) is None:
        raise ValueError(f"{text[:40]!r} is not a decimal number (ASCII digits 0-9 and '.')")
    return float(digits)


def parse_int_in_range(text: str, minimum: int, maximum: int) -> int:
    """A whole number of ASCII digits (surrounding blanks ignored) in ``minimum..maximum``."""
    value = parse_whole_number(text)
    if not minimum <= value <= maximum:
        raise ValueError(f"{value} is outside {minimum}..{maximum}")
    return value
