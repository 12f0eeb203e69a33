"""The shipped JSON Schemas: the first line of validation, compiled once per process.

Schema nodes may carry an ``x-hint`` (how to fix it) that is appended to the message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from .errors import Problem

if TYPE_CHECKING:
    import jsonschema_rs
    from jsonschema import Draft202012Validator, ValidationError

SCHEMAS = ("pipeline", "parameters", "job", "conf", "variables")
#: A place inside a document: keys and list indices from its top.
Where = tuple[str | int, ...]


@cache
def _raw(name: str) -> dict[str, Any]:
    # One name per joinpath: Python 3.10's Traversable takes no more.
    text = resources.files(__package__).joinpath("schemas").joinpath(
        f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    """A compiled Draft 2020-12 validator for ``name`` (one of ``SCHEMAS``)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    registry = Registry().with_resources(
        (_raw(other)["$id"].rsplit("/", 1)[-1], Resource.from_contents(_raw(other)))
        for other in SCHEMAS
    )
    schema = _raw(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


def json_path(parts: Iterable[str | int]) -> str:
    """``steps.<uuid>.file_path`` style location of a value inside a document."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(value: Any) -> str:
    kind = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    return f"{kind} {text}" if len(text) <= 40 and kind not in ("null",) else kind


_TYPE_NAMES = {"array": "a list", "object": "an object", "string": "a string",
               "integer": "a whole number", "boolean": "true or false", "null": "null",
               "number": "a number"}


def _listed(value: Any) -> list[Any]:
    """A keyword's value as a list (``type`` may be one name or a list of them)."""
    return value if isinstance(value, list) else [value]


def _object(value: Any) -> dict[str, Any]:
    """The object a keyword applies to (an error made by hand may lack it)."""
    return value if isinstance(value, dict) else {}


def _type_message(error: ValidationError) -> str:
    names = " or ".join(_TYPE_NAMES.get(str(w), str(w)) for w in _listed(error.validator_value))
    return f"must be {names}, not {_describe(error.instance)}"


def _required_message(error: ValidationError) -> str:
    instance = _object(error.instance)
    missing = [k for k in _listed(error.validator_value) if k not in instance]
    return f"missing required field {missing[0]!r}" if missing else error.message


def _extra_fields_message(error: ValidationError) -> str:
    known = set(_object(error.schema).get("properties", {}))
    extra = sorted(k for k in _object(error.instance) if k not in known)
    return f"unknown field {', '.join(map(repr, extra))}"


#: One phrasing per JSON Schema keyword, for people rather than schema authors.
_MESSAGES: dict[str, Callable[[ValidationError], str]] = {
    "type": _type_message,
    "required": _required_message,
    "additionalProperties": _extra_fields_message,
    "enum": lambda e: f"{json.dumps(e.instance)} is not one of "
                      + ", ".join(json.dumps(o) for o in _listed(e.validator_value)),
    "minItems": lambda e: "must not be an empty list",
    "minimum": lambda e: f"must be at least {e.validator_value}, not {e.instance}",
    "maxLength": lambda e: f"is longer than {e.validator_value} characters",
    "minLength": lambda e: "must not be empty",
    "pattern": lambda e: f"{json.dumps(e.instance)} is not well-formed",
    "oneOf": lambda e: f"{_describe(e.instance)} is not an accepted form",
}


def _message(error: ValidationError) -> str:
    phrase = _MESSAGES.get(str(error.validator))
    return phrase(error) if phrase else error.message


def _resolve(ref: str) -> Any:
    target, _, pointer = ref.partition("#")
    node = _raw(target.removesuffix(".schema.json"))
    for part in filter(None, pointer.split("/")):
        node = node[part]
    return node


def _hint(name: str, error: ValidationError) -> str | None:
    """The deepest ``x-hint`` on the schema path of ``error`` (following ``$ref``)."""
    node: Any = _raw(name)
    hint: str | None = node.get("x-hint")
    for key in error.absolute_schema_path:
        while isinstance(node, dict) and key not in node and "$ref" in node:
            node = _resolve(node["$ref"])
            hint = node.get("x-hint", hint)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and "x-hint" in node:
            hint = node["x-hint"]
    return hint


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For ``oneOf``, the errors of the branch that got furthest into the value."""
    if error.validator != "oneOf" or not error.context:
        return [error]
    relevant = [e for e in error.context if e.relative_path or e.validator != "type"]
    if not relevant:
        return [error]
    depth = max(len(e.relative_path) for e in relevant)
    if depth == 0:
        return [error]
    return [leaf for e in relevant if len(e.relative_path) == depth for leaf in _leaves(e)]


@cache
def fast_validator(name: str) -> jsonschema_rs.Validator:
    """A compiled (Rust) validator of the same schema: only decides valid or not.

    The DAG processor validates every document on every parse, in a fresh process;
    ``jsonschema_rs`` does that about 100x faster than ``jsonschema``, which is still
    what explains an invalid document (its errors carry the paths and the keywords the
    messages are phrased from).
    """
    import jsonschema_rs

    registry = jsonschema_rs.Registry([(_raw(n)["$id"], _raw(n)) for n in SCHEMAS])
    return jsonschema_rs.validator_for(_raw(name), registry=registry)


def check(name: str, document: Any, file: str, prefix: Where = ()) -> list[Problem]:
    """Validate ``document`` against schema ``name``; one problem per failing place."""
    if fast_validator(name).is_valid(document):
        return []
    problems = []
    seen: set[str] = set()
    errors = [leaf for e in validator(name).iter_errors(document) for leaf in _leaves(e)]
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        where = json_path(prefix + tuple(error.absolute_path))
        if where in seen:
            continue
        seen.add(where)
        if "propertyNames" in error.absolute_schema_path:
            message = f"name {json.dumps(error.instance)} is not allowed"
        else:
            message = _message(error)
        hint = _hint(name, error)
        problems.append(Problem(file, where or "(top level)",
                                f"{message}; {hint}" if hint else message))
    return problems
