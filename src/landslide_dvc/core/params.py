"""Typed, validated access to params.yaml.

params.yaml is read with YAML 1.2 rules (ruamel.yaml, the library DVC itself uses to write
`dvc exp run -S` values), so every value DVC accepts comes back with the type DVC meant: under
PyYAML's YAML 1.1 rules `1e-06` would be a string and `no` a boolean.

Each stage describes the sections it reads as ``@params_section`` classes: frozen pydantic
dataclasses in strict mode, so a YAML int widens to a float field (``lr: 1`` is 1.0) and nothing
else converts (``true`` is not an int, ``1`` not a bool, ``"3"`` not a number).
``parse_section`` turns the YAML mapping into such a class and rejects unknown keys, missing keys,
wrong types and out-of-range values (the class's ``validate()``) with one line naming
``section.key``. ``dataclasses.asdict`` and ``dataclasses.replace`` work on them as on any dataclass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import pydantic
from pydantic import ConfigDict, ValidationError, ValidatorFunctionWrapHandler
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from typing_extensions import dataclass_transform

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


@dataclass_transform(frozen_default=True)
def params_section(cls: type[T]) -> type[T]:
    """Make ``cls`` a params section: a frozen pydantic dataclass that checks its fields' types strictly."""
    return pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))(cls)


def _exact(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """pydantic matches a Literal by equality, even in strict mode (``12.0`` is ``Literal[12]``'s 12);
    ``Annotated[Literal[12, ...], Exact]`` also wants the option's type, as for any other field."""
    result = handler(value)
    if type(result) is not type(value):
        raise PydanticCustomError("literal_error", "{value!r} is not an option of the same type", {"value": value})
    return result


Exact = pydantic.WrapValidator(_exact)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is dict:
        return "a mapping"
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _one_line(error: Any, cls: type, section: str) -> str:
    """pydantic's error as ``section.key=value has the wrong type; expected ...`` (or ``is not allowed``)."""
    name, *path = error["loc"]
    tp, where = typing.get_type_hints(cls)[name], f"{section}.{name}"
    for step in path:  # list items; a union's members are named in the loc but reported as the union
        if get_origin(tp) is not list:
            break
        tp, where = get_args(tp)[0], f"{where}[{step}]"
    value = error["input"]
    if get_origin(tp) is Literal:
        return f"{where}={value!r} is not allowed; use one of {', '.join(repr(a) for a in get_args(tp))}"
    return f"{where}={value!r} has the wrong type; expected {_type_name(tp)}"


def parse_section(mapping: Any, cls: type[T], section: str) -> T:
    """Build the params section ``cls`` from ``mapping`` (the YAML section named ``section``).

    Every field must be present (params.yaml is the single source of the values; defaults serve
    code that builds a section itself) and no other key is accepted, so a typo such as
    ``normalize.metod`` fails loudly instead of silently falling back to a default. After the
    type checks the class's ``validate()`` method, if any, checks ranges.
    """
    if not isinstance(mapping, dict):
        raise ParamError(f"params section '{section}' must be a mapping, got {mapping!r}")
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields), key=str)
    if unknown:
        raise ParamError(
            f"unknown key '{section}.{unknown[0]}' in params.yaml; known keys of '{section}': {', '.join(sorted(fields))}"
        )
    for name in fields:
        if name not in mapping:
            raise ParamError(f"missing key '{section}.{name}' in params.yaml; add it (see docs/parameters.md)")
    try:
        obj = cls(**mapping)
    except ValidationError as exc:
        raise ParamError(_one_line(exc.errors()[0], cls, section)) from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def get_section(params: dict[str, Any], cls: type[T], section: str) -> T:
    """Parse section ``section`` of an already loaded params mapping into ``cls``."""
    if section not in params:
        raise ParamError(f"params.yaml has no '{section}' section; add it (see docs/parameters.md)")
    return parse_section(params[section], cls, section)


def read_section(cls: type[T], section: str, path: str | Path = PARAMS_FILE) -> T:
    """Load params.yaml and parse one section into ``cls``."""
    return get_section(load_params(path), cls, section)


def require(condition: bool, message: str) -> None:
    """Raise ParamError(message) unless ``condition`` holds (for validate() methods)."""
    if not condition:
        raise ParamError(message)
