"""Typed schemas for composed configs: every key has a type and a range, unknown keys are refused.

A schema is a pydantic model in strict mode (``2`` is an integer, ``"2"``, ``2.0`` and ``true`` are not;
``true``/``false`` are the only booleans, so ``resume=no`` is refused instead of counting as true).
Fixed parts of a config (the top level of ``conf/run.yaml``, ``names``, ``paths``) are written as classes;
a node with a ``_target_`` (a model, dataset, method, metric or trainer) gets its schema from the target's
signature (:func:`target_schema`): its parameters are the known keys, their annotations (or the type of
their default) the types, and ranges can be laid over them. :func:`check` validates a plain mapping and
returns one message per bad key, each naming the key, the value and what is expected; an unknown key
gets the closest known one (``difflib``) and the list of known keys.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model

#: strict types, no extra keys (``protected_namespaces=()``: a config may have a key ``model``)
STRICT = ConfigDict(strict=True, extra="forbid", protected_namespaces=(), arbitrary_types_allowed=True)


class Unresolved:
    """Stands for a value whose interpolation cannot be resolved here (it is not checked)."""

    def __repr__(self) -> str:
        return "<unresolved>"


UNRESOLVED = Unresolved()


def plain(node: Any) -> Any:
    """An OmegaConf node as plain Python values, interpolations resolved; a value that does not resolve
    (e.g. ``${hydra:...}`` outside a Hydra job, or ``???``) becomes :data:`UNRESOLVED`."""
    from omegaconf import DictConfig, ListConfig
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(node, DictConfig):
        out = {}
        for key in node.keys():
            try:
                value = node[key]
            except OmegaConfBaseException:
                out[str(key)] = UNRESOLVED
                continue
            out[str(key)] = plain(value)
        return out
    if isinstance(node, ListConfig):
        items = []
        for index in range(len(node)):
            try:
                items.append(plain(node[index]))
            except OmegaConfBaseException:
                items.append(UNRESOLVED)
        return items
    return node


# ------------------------------------------------------------------------------------------- describing types


def show(value: Any) -> str:
    """A value as it is written on the command line (``null``, ``true``, ``[1,2]``, ``abc``)."""
    if value is None:
        return "null"
    if value == "":
        return "''"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _range_text(metadata: list) -> str:
    parts = []
    for item in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "of length >=")):
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    return " " + " and ".join(parts) if parts else ""


def describe(hint: Any, metadata: list | None = None) -> str:
    """What ``hint`` accepts, in words: ``an integer >= 1 or null``."""
    metadata = [part for item in (metadata or []) for part in (item, *(getattr(item, "metadata", None) or []))]
    described = next((getattr(m, "description", None) for m in metadata if getattr(m, "description", None)), None)
    if described:
        return described
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extra = typing.get_args(hint)
        return describe(base, metadata + [m for m in extra if not callable(getattr(m, "func", None))])
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        words = [describe(arg, metadata) for arg in args if arg is not type(None)]
        if type(None) in args:
            words.append("null")
        return " or ".join(words)
    if origin is Literal:
        return "one of " + ", ".join(show(v) for v in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer" + _range_text(metadata)
    if hint is float:
        return "a number" + _range_text(metadata)
    if hint is str:
        pattern = next((getattr(m, "pattern", None) for m in metadata if getattr(m, "pattern", None)), None)
        return f"a string matching {pattern}" if pattern else "a string" + _range_text(metadata)
    if origin in (list, tuple) or hint in (list, tuple) or origin is typing.Sequence:
        return "a list"
    if origin is dict or hint is dict or origin is Mapping:
        return "a mapping"
    if inspect.isclass(hint) and issubclass(hint, BaseModel):
        return "a mapping with keys " + ", ".join(hint.model_fields)
    if hint is Any:
        return "any value"
    return getattr(hint, "__name__", str(hint))


# ------------------------------------------------------------------------------------------- checking


def did_you_mean(key: str, known: list[str], prefix: str = "") -> str:
    """`` (did you mean batch_size?)`` for the closest of ``known`` (``prefix`` put before it), else empty."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_key(path: str, known: list[str], where: str) -> str:
    """The message for a key no schema knows: the closest known key and all of them."""
    prefix, _, key = path.rpartition(".")
    hint = did_you_mean(key, known, prefix + "." if prefix else "")
    return f"unknown key {path}{hint}; {where} has the keys {', '.join(known) or '(none)'}"


def _field_at(schema: type[BaseModel], loc: tuple) -> tuple[Any, list]:
    """``(annotation, metadata)`` of the field at ``loc`` (nested schemas followed); ``Any`` if unknown."""
    owner = _owner(schema, loc[:-1])
    info = owner.model_fields.get(str(loc[-1])) if owner is not None and loc else None
    return (info.annotation, [info]) if info is not None else (Any, [])


def _owner(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The schema of the mapping at ``loc`` (``()``: ``schema`` itself)."""
    owner: type[BaseModel] | None = schema
    for part in loc:
        info = owner.model_fields.get(str(part)) if owner is not None else None
        owner = _schema_of(info.annotation) if info is not None else None
    return owner


def _schema_of(hint: Any) -> type[BaseModel] | None:
    for arg in (hint, *typing.get_args(hint)):
        if inspect.isclass(arg) and issubclass(arg, BaseModel):
            return arg
    return None


def _value_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        data = data[part] if isinstance(data, (dict, list)) else None
    return data


def _key_loc(schema: type[BaseModel], loc: tuple, extra: bool) -> tuple:
    """The part of pydantic's ``loc`` that names config keys: field names, nested schemas followed (union
    branch tags such as ``'int'`` dropped), plus the unknown key itself for an ``extra`` error."""
    out: list = []
    owner: type[BaseModel] | None = schema
    for part in loc:
        if owner is not None and str(part) in owner.model_fields:
            out.append(part)
            owner = _schema_of(owner.model_fields[str(part)].annotation)
            continue
        if extra:
            out.append(part)
        break
    return tuple(out)


def _checked_part(data: Mapping) -> dict:
    """``data`` without its :data:`UNRESOLVED` values (at any depth)."""
    return {k: _checked_part(v) if isinstance(v, Mapping) else v for k, v in data.items() if v is not UNRESOLVED}


def check(data: Mapping, schema: type[BaseModel], prefix: str = "", where: str = "the config") -> list[str]:
    """Validate ``data`` against ``schema``; one message per bad key (empty: valid). Keys holding
    :data:`UNRESOLVED` are not checked. ``prefix`` (``dataset.``) is put before every key in the messages."""
    data = _checked_part(data)
    try:
        schema.model_validate(data)
    except ValidationError as error:
        problems: dict[tuple, str] = {}
        for item in error.errors():
            loc = _key_loc(schema, tuple(item["loc"]), item["type"] == "extra_forbidden")
            if loc in problems:
                continue
            path = prefix + ".".join(str(part) for part in loc)
            if item["type"] == "extra_forbidden":
                owner = _owner(schema, loc[:-1])
                scope = where if len(loc) == 1 else f"{prefix}{'.'.join(map(str, loc[:-1]))}"
                problems[loc] = unknown_key(path, list(owner.model_fields) if owner else [], scope)
                continue
            hint, metadata = _field_at(schema, loc)
            if item["type"] == "missing" and len(item["loc"]) == len(loc):  # not an item missing inside a value
                problems[loc] = f"{path} is missing; set it to {describe(hint, metadata)}"
                continue
            value = _value_at(data, loc)
            if typing.get_origin(hint) is Literal:
                options = " or ".join(f"{path}={show(v)}" for v in typing.get_args(hint))
                problems[loc] = f"{path}={show(value)} is not an option; use {options}"
                continue
            problems[loc] = (f"{path}={show(value)} is not valid: expected {describe(hint, metadata)}"
                             f"{_string_number_hint(value)}")
        return list(problems.values())
    return []


def _string_number_hint(value: Any) -> str:
    """For a number that arrived as a string (``${oc.env:SLURM_ARRAY_TASK_ID}`` resolves to ``'3'``): how to
    pass it as a number; else nothing."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return (f" (it is the string '{value}', as ${{oc.env:VAR}} gives: write \"${{oc.decode:${{oc.env:VAR}}}}\" "
            "with the double quotes, or the number itself)")


# ------------------------------------------------------------------------------------------- schemas from signatures


def _lists_to_tuples(hint: Any) -> Callable[[Any], Any]:
    """YAML has lists only: a list given for a tuple-typed parameter is read as a tuple."""
    wants_tuple = any(typing.get_origin(arg) is tuple or arg is tuple for arg in (hint, *typing.get_args(hint)))

    def convert(value: Any) -> Any:
        return tuple(value) if wants_tuple and isinstance(value, list) else value

    return convert


def _with_range(hint: Any, constraint: Any) -> Any:
    """``hint`` with ``constraint`` (a ``Field(ge=...)``) on its non-null part (``int | None``: on the int)."""
    if typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return Union[Annotated[Union[tuple(rest)], constraint], None]  # noqa: UP007 - built from parts
    return Annotated[hint, constraint]


def _parameter_type(parameter: inspect.Parameter, hints: dict) -> Any:
    if parameter.name in hints:
        return hints[parameter.name]
    default = parameter.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, float):
        return float
    if isinstance(default, (int, str)):
        return type(default)
    return Any


def target_schema(target: Callable, name: str, *, skip: tuple[str, ...] = (), labels: tuple[str, ...] = (),
                  extra: Callable | None = None, ranges: Mapping[str, Any] | None = None) -> type[BaseModel]:
    """The schema of a config node instantiating ``target``: one optional field per parameter (less ``skip``,
    the ones supplied at build time), typed by its annotation or its default's type, with ``ranges``
    (``{key: Field(ge=1)}``) laid over them; ``labels`` are extra string keys that are no parameter (a task's
    ``name``). Extra keys are refused unless ``target`` takes ``**kwargs``; with ``extra`` (the callable that
    ``**kwargs`` is handed to, e.g. a model's builder) its parameters are the further known keys, a closed set."""
    fields: dict[str, Any] = {}
    open_ended = False
    for source in (target, extra):
        if source is None:
            continue
        function = source.__init__ if inspect.isclass(source) else source
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception:  # noqa: BLE001 - unresolvable annotations: keys are still checked, not types
            hints = {}
        for parameter in inspect.signature(source).parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                open_ended = open_ended or source is target
                continue
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL or parameter.name in skip or parameter.name == "self":
                continue
            if source is extra and parameter.name in fields:
                continue
            hint = _parameter_type(parameter, hints)
            if ranges and parameter.name in ranges:
                hint = _with_range(hint, ranges[parameter.name])
            fields[parameter.name] = (Annotated[hint, BeforeValidator(_lists_to_tuples(hint))], None)
    for label in labels:
        fields.setdefault(label, (str, None))
    config = ConfigDict(**{**STRICT, "extra": "allow" if open_ended and extra is None else "forbid"})
    return create_model(f"Schema_{name}", __config__=config, **fields)


def check_target(data: Mapping, target: Callable, prefix: str, where: str, **options) -> list[str]:
    """:func:`check` of a ``_target_`` node against :func:`target_schema` (``_target_`` itself and Hydra's
    other keys, ``_convert_``, ``_recursive_``, ``_partial_``, ``_args_``, are left to Hydra)."""
    schema = target_schema(target, prefix.strip(".") or "node", **options)
    values = {k: v for k, v in data.items() if not (k.startswith("_") and k.endswith("_"))}
    return check(values, schema, prefix, where)
