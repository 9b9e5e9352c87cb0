"""pydantic's validation errors turned into one clear ConfigError: the key path, what is
wrong, a short excerpt of what was given, and the allowed keys (with a near miss) when
a key is unknown."""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from flagrelease.errors import ConfigError, excerpt

SHOWN = 5


def key_path(loc: Sequence[int | str]) -> str:
    """('matrix', 'include', 0, 'chip') -> 'matrix.include[0].chip'. pydantic marks an
    invalid dict key with a trailing '[key]'; the path of the key says it already."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def config_error(
    err: ValidationError,
    model: type[BaseModel],
    *,
    what: str,
    where: str,
    prefix: Sequence[int | str] = (),
    fix: str,
) -> ConfigError:
    """One ConfigError for a failed `model.model_validate`: the first problem (unknown keys
    first: they explain the missing ones) in the message and `where`, up to four more below."""
    problems = sorted(err.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = problems[0]
    lines = [_describe(e, prefix) for e in problems[:SHOWN]]
    more = len(problems) - SHOWN
    first_fix = _fix(first, model)
    return ConfigError(
        f"invalid {what}: {lines[0]}"
        + "".join(f"\n  also: {line}" for line in lines[1:])
        + (f"\n  and {more} more problem(s)" if more > 0 else ""),
        where=f"{where}: {key_path([*prefix, *first['loc']])}" if (prefix or first["loc"]) else where,
        fix=f"{first_fix}; {fix}" if first_fix else fix,
    )


def _describe(error: ErrorDetails, prefix: Sequence[int | str]) -> str:
    loc = [*prefix, *error["loc"]]
    if error["type"] == "extra_forbidden":
        return f"unknown key {excerpt(error['loc'][-1])} in {key_path(loc[:-1]) or 'the top level'}"
    if error["type"] == "missing":
        return f"{key_path(loc)} is required"
    where = key_path(loc) or "the top level"
    if error["type"] == "json_invalid":
        return f"not valid JSON: {str(error['msg']).removeprefix('Invalid JSON: ')}"
    if error["type"] in ("dict_type", "model_type", "model_attributes_type"):
        return f"{where} should be a mapping (key: value) (got {excerpt(error['input'])})"
    if error["type"] == "value_error":  # our own validators name the offending value themselves
        return f"{where}: {_message(error)}"
    return f"{where}: {_message(error)} (got {excerpt(error['input'])})"


def _message(error: ErrorDetails) -> str:
    # Our own validators' messages arrive as "Value error, ..."; the prefix says nothing.
    return str(error["msg"]).removeprefix("Value error, ")


def _fix(error: ErrorDetails, model: type[BaseModel]) -> str:
    if error["type"] != "extra_forbidden":
        return ""
    allowed = allowed_keys(model, error["loc"][:-1])
    if not allowed:
        return "remove the key"
    close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1, cutoff=0.6)
    return (f"did you mean {close[0]!r}? " if close else "") + "allowed keys here: " + ", ".join(allowed)


def allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys the model accepts at `loc` (a path of field names, dict keys, list indexes)."""
    annotation: Any = model
    for part in loc:
        annotation = _child(annotation, part)
        if annotation is None:
            return []
    found = _models(annotation)
    return sorted({_key(name, f) for m in found for name, f in m.model_fields.items() if not f.exclude})


def _key(name: str, field: Any) -> str:
    return field.alias or name


def _child(annotation: Any, part: int | str) -> Any:
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            field = next((f for n, f in candidate.model_fields.items() if part in (n, f.alias)), None)
            if field is not None:
                return field.annotation
        origin = get_origin(candidate)
        if origin in (list, tuple, set) and isinstance(part, int):
            return get_args(candidate)[0]
        if origin is dict:
            return get_args(candidate)[1]
    return None


def _members(annotation: Any) -> list[Any]:
    """`X | None` and Annotated[X, ...] unwrapped into the types they may hold."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
