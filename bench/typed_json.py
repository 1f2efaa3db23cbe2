"""Dataclasses to and from the JSON the bench writes (standard library only: the bench runs
on the system python3). A field marked `omit()` is left out of the JSON while it is None, so
that optional keys are absent, as they were when the results were plain dicts."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")
_OMIT = "omit_when_none"
_UNWRITTEN = "not_written"


def omit() -> Any:
    """A field that defaults to None and is left out of the JSON while it is None."""
    return dataclasses.field(default=None, metadata={_OMIT: True})


def unwritten_list() -> Any:
    """A list field kept while the bench runs, never written to the JSON."""
    return dataclasses.field(default_factory=list, metadata={_UNWRITTEN: True})


def _written(obj: Any, f: dataclasses.Field) -> bool:
    if f.metadata.get(_UNWRITTEN):
        return False
    return not (f.metadata.get(_OMIT) and getattr(obj, f.name) is None)


def to_json(obj: Any) -> Any:
    """Plain JSON values of a dataclass (recursively), fields in declaration order."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if _written(obj, f)}
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return obj


def from_json(cls: type[T], data: Any) -> T:
    """The dataclass `cls` from what to_json made of one; keys it does not know are ignored,
    missing ones take the field's default."""
    return _convert(cls, data, {})


def _convert(hint: Any, data: Any, bound: dict) -> Any:
    if isinstance(hint, TypeVar):
        hint = bound[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if data is None:
        return None
    if origin in (typing.Union, types.UnionType):
        return _convert(next(a for a in args if a is not type(None)), data, bound)
    if origin is list:
        return [_convert(args[0], v, bound) for v in data]
    if origin is dict:
        return {k: _convert(args[1], v, bound) for k, v in data.items()}
    if origin is not None and dataclasses.is_dataclass(origin):  # a generic one: Search[Trial]
        params = origin.__parameters__
        return _dataclass(origin, data, dict(zip(params, args, strict=True)))
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, data, bound)
    return data


def _dataclass(cls: type, data: dict, bound: dict) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _convert(hints[f.name], data[f.name], bound)
                  for f in dataclasses.fields(cls) if f.name in data})


def field_from_json(cls: type, name: str, data: Any) -> Any:
    """One field of the dataclass `cls` from its JSON value."""
    return _convert(typing.get_type_hints(cls)[name], data, {})
