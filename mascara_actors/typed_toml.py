"""Frozen dataclasses from TOML tables: documented fields, strict keys, types and value checks.

The machinery under :mod:`mascara_actors.config`: a field is declared with :func:`field`
(its documentation, unit first, and an optional value :data:`Check`); :func:`build` makes
the dataclass from a TOML table and raises :class:`~mascara_actors.errors.ConfigError`
with one message naming the file, the key and the rule for a missing key, an unknown key,
a key that is gone, a wrong type or an impossible value.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin, get_type_hints

from mascara_actors.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "Check",
    "between",
    "build",
    "check_keys",
    "field",
    "increasing_pair",
    "named_tables",
    "non_negative",
    "one_of",
    "positive",
    "read_toml",
]

Check = Callable[[Any], str | None]
"""A value check: None when the value is fine, else what is wrong (``must be ...``)."""

T = TypeVar("T", bound="DataclassInstance")


def between(lo: float, hi: float) -> Check:
    """Check: ``lo <= value <= hi``."""
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"

    return check


def positive(v: Any) -> str | None:
    """Check: the value (every value of a list) is > 0."""
    values = v if isinstance(v, tuple) else (v,)
    return None if all(x > 0 for x in values) else "must be > 0"


def non_negative(v: Any) -> str | None:
    """Check: the value is >= 0."""
    return None if v >= 0 else "must be >= 0"


def one_of(*choices: str) -> Check:
    """Check: the value is one of ``choices``."""
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}"

    return check


def increasing_pair(v: Any) -> str | None:
    """Check: two radii ``[inner, outer]`` with ``0 < inner < outer``."""
    if len(v) != 2:
        return "must hold exactly two radii [inner, outer]"
    if not 0 < v[0] < v[1]:
        return "inner radius must be > 0 and smaller than the outer radius"
    return None


def field(doc: str, check: Check | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A config field with its documentation (unit first) and an optional value check."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = get_origin(tp)
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of {_type_name(item_tp)}, got {value!r}")
        return tuple(_coerce(v, item_tp, where) for v in value)
    if origin is UnionType:
        raise TypeError(f"unsupported annotation {tp}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp}")


def check_keys(table: Mapping[str, Any], known: list[str], *, file: Path, key: str,
               gone: Mapping[str, str], what: str = "key") -> None:
    """Raise ConfigError for a key of ``table`` (the table ``key`` of ``file``) that is gone
    (in ``gone``, by dotted name: the message says so and why) or unknown (the known ones
    are listed)."""
    for name in sorted(table):
        dotted = f"{key}.{name}" if key else name
        if dotted in gone:
            raise ConfigError(f"{file}: {what} '{dotted}' is gone: {gone[dotted]}; delete "
                              "it from the file")
    unknown = sorted(set(table) - set(known))
    if unknown:
        where_table = f"{file}: [{key}]" if key else f"{file}"
        raise ConfigError(f"{where_table}: unknown {what}(s) {unknown}; known {what}s are {known}")


def build(cls: type[T], table: Any, *, file: Path, key: str, gone: Mapping[str, str],
          extra: dict[str, Any] | None = None) -> T:
    """Build dataclass ``cls`` from a TOML table, checking keys, types and values.

    Fields that are dataclasses are built from the sub-tables; ``extra`` gives the values of
    fields that are not in the table (a name, a reference to another table); ``gone`` are
    the keys that used to exist (see :func:`check_keys`).
    """
    where_table = f"{file}: [{key}]" if key else f"{file}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where_table} must be a table, got {table!r}")
    extra = extra or {}
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    check_keys(table, names, file=file, key=key, gone=gone)
    values: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):
        name = fld.name
        if name in extra:
            values[name] = extra[name]
            continue
        dotted = f"{key}.{name}" if key else name
        where = f"{file}: key '{dotted}'"
        if name not in table:
            if fld.default is not dataclasses.MISSING:
                continue
            raise ConfigError(f"{where} is missing ({fld.metadata.get('doc', '')})")
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[name] = build(tp, table[name], file=file, key=dotted, gone=gone)
            continue
        value = _coerce(table[name], tp, where)
        check = fld.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where} = {table[name]!r}: {problem}")
        values[name] = value
    return cls(**values)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; ConfigError when it is missing or not valid TOML."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: copy it from the config/ folder of the mascara-actors repository"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def named_tables(doc: dict[str, Any], section: str, path: Path) -> dict[str, Any]:
    """The sub-tables of ``[section]`` (e.g. ``[sites.*]``), by name; never empty."""
    tables = doc.get(section)
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: section [{section}] is missing or empty")
    return tables
