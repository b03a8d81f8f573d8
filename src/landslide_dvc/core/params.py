"""Typed, validated access to params.yaml.

params.yaml is read with YAML 1.2 rules (ruamel.yaml, the library DVC itself uses to write
`dvc exp run -S` values), so every value DVC accepts comes back with the type DVC meant: under
PyYAML's YAML 1.1 rules `1e-06` would be a string and `no` a boolean.

Each stage describes the sections it reads as frozen dataclasses; ``parse_section``
turns the YAML mapping into that dataclass and rejects unknown keys, missing keys,
wrong types and out-of-range values with one line naming ``section.key``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from landslide_dvc.core.errors import ParamError

T = TypeVar("T")

PARAMS_FILE = "params.yaml"


def parse_yaml(text: str, source: str | Path) -> Any:
    """Plain Python data (dict, list, str, int, float, bool, None) from YAML 1.2 text, as DVC reads it.

    Syntax errors and duplicate keys are a ParamError naming ``source`` and the line.
    """
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ParamError(f"{source} is not valid YAML{where} ({problem}); fix the syntax") from None


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read params.yaml as a mapping; a missing or malformed file is a ParamError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamError(f"{path} not found; run from the repository root (where dvc.yaml is)") from None
    data = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise ParamError(f"{path} must be a mapping of sections (data:, normalize:, ...)")
    return data


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        # YAML gives 12 for "12"; bool is an int subclass, so compare types too.
        for option in allowed:
            if value == option and type(value) is type(option):
                return value
        raise ParamError(f"{where}={value!r} is not allowed; use one of {', '.join(repr(a) for a in allowed)}")
    if origin in (Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _coerce(value, option, where)
            except ParamError as exc:
                errors.append(exc)
        raise ParamError(f"{where}={value!r} has the wrong type; expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ParamError(f"{where}={value!r} has the wrong type; expected null")
    if dataclasses.is_dataclass(tp):
        return parse_section(value, tp, where)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{where}={value!r} has the wrong type; expected a mapping")
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ParamError(f"{where}={value!r} has the wrong type; expected {_type_name(tp)}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema bug, not user input
        raise TypeError(f"unsupported annotation {tp!r} for {where}")
    raise ParamError(f"{where}={value!r} has the wrong type; expected {_type_name(tp)}")


def parse_section(mapping: Any, cls: type[T], section: str) -> T:
    """Build dataclass ``cls`` from ``mapping`` (the YAML section named ``section``).

    Every field must be present (params.yaml is the single source of the values) and
    no other key is accepted, so a typo such as ``normalize.metod`` fails loudly instead
    of silently falling back to a default. After type checks the dataclass's
    ``validate()`` method, if any, checks ranges.
    """
    if not isinstance(mapping, dict):
        raise ParamError(f"params section '{section}' must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ParamError(
            f"unknown key '{section}.{unknown[0]}' in params.yaml; known keys of '{section}': "
            f"{', '.join(sorted(fields))}"
        )
    values = {}
    for name in fields:
        if name not in mapping:
            raise ParamError(f"missing key '{section}.{name}' in params.yaml; add it (see README, Parameters)")
        values[name] = _coerce(mapping[name], hints[name], f"{section}.{name}")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def get_section(params: dict[str, Any], cls: type[T], section: str) -> T:
    """Parse section ``section`` of an already loaded params mapping into ``cls``."""
    if section not in params:
        raise ParamError(f"params.yaml has no '{section}' section; add it (see README, Parameters)")
    return parse_section(params[section], cls, section)


def read_section(cls: type[T], section: str, path: str | Path = PARAMS_FILE) -> T:
    """Load params.yaml and parse one section into ``cls``."""
    return get_section(load_params(path), cls, section)


def require(condition: bool, message: str) -> None:
    """Raise ParamError(message) unless ``condition`` holds (for validate() methods)."""
    if not condition:
        raise ParamError(message)
