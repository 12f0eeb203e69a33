"""Airflow's trigger form for an Orchest DAG, and folding what it submits into the conf.

The form (Airflow's "flexible form") shows one field per DAG param and submits them as
the trigger conf, one key per field. Besides the conf's own keys (``parameters``,
``runs``, ``env_variables``) it gets:

- ``runs`` as a multi-select of labelled runs (``examples`` + ``values_display``) when
  the default grid has at most :data:`MAX_RUN_CHOICES` runs; the form submits the
  chosen indices as strings (``["0", "3"]``);
- one field per parameter, ``parameters/<key>/<name>`` (``key``: ``pipeline_parameters``
  or a step uuid) holding its list of values, in a section per pipeline / step; the
  ``parameters`` object still holds the whole grid (edit either). A default too big for
  the conf (:data:`MAX_DEFAULT_CHARS`) is left out: the field or object starts empty, and
  empty means the default.

:func:`fold_form_conf` turns such a submission back into the conf format (changed
fields folded into ``parameters``, digit strings in ``runs`` to integers). A conf from
the CLI or the REST API has none of these keys and passes through unchanged.

Pure (no Airflow): the DAG processor builds the form for every DAG on every parse.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from .grid import PIPELINE_KEY, Grid
from .model import Pipeline

#: Field keys of single parameters start with this.
FIELD_PREFIX = "parameters/"
#: A multi-select of labelled runs up to this grid size (labels cost parse time).
MAX_RUN_CHOICES = 100
#: Fields of their own for at most this many parameters (the rest: the JSON object).
MAX_FIELDS = 40
#: A default bigger than this (characters of JSON) stays out of the form: the form submits
#: every field into the DAG run's conf, and Airflow's scheduler decodes that conf again
#: for every task instance of the run on every loop (a 10,000-value list in the conf of a
#: 10,000-run grid brought it to about one finished run per 5 seconds here).
MAX_DEFAULT_CHARS = 2000
#: JSON Schema of one parameter's value list in the form (a JSON editor: types kept).
_ANY = ["string", "number", "integer", "boolean", "null", "array", "object"]
_UNSET = object()


def field_key(key: str, name: str) -> str:
    return f"{FIELD_PREFIX}{key}/{name}"


def run_choices(grid: Grid) -> dict[str, Any]:
    """``examples`` and ``values_display`` for the runs multi-select (empty: too many)."""
    if len(grid) > MAX_RUN_CHOICES:
        return {}
    return {"examples": list(range(len(grid))),
            "values_display": {str(i): grid.label(i) for i in range(len(grid))}}


def fits_in_form(value: Any) -> bool:
    """Whether a default is small enough to travel in every DAG run's conf."""
    return len(json.dumps(value, default=str)) <= MAX_DEFAULT_CHARS


def parameter_fields(grid: Grid, step_titles: Mapping[str, str]) -> list[dict[str, Any]]:
    """One field per grid axis (pipeline parameters first, then steps, in grid order).

    Each: ``name`` (form key), ``key``, ``param``, ``values``, ``title``, ``section``,
    ``shown`` (False: too many values for the form, see :data:`MAX_DEFAULT_CHARS`; the
    field starts empty and an empty field runs the default values).
    None when there are more than :data:`MAX_FIELDS` (the JSON object holds them all).
    """
    axes = [a for a in grid.axes if "/" not in a.key]
    if len(axes) > MAX_FIELDS:
        return []
    fields = []
    for axis in axes:
        values = list(axis.values)
        step = step_titles.get(axis.key, axis.key)
        pipeline = axis.key == PIPELINE_KEY
        fields.append({
            "name": field_key(axis.key, axis.name),
            "key": axis.key,
            "param": axis.name,
            "values": values,
            "title": axis.name if pipeline else f"{step}: {axis.name}",
            "section": "Pipeline parameters" if pipeline else f"Step parameters: {step}",
            "shown": fits_in_form(values),
        })
    return fields


def field_schema(shown: bool = True) -> dict[str, Any]:
    """The JSON Schema of a parameter field: a non-empty list of any JSON values (or
    empty, for a field whose default values are not shown)."""
    return {"type": "array" if shown else ["null", "array"], "minItems": 1,
            "items": {"type": list(_ANY)}}


def runs_schema(grid: Grid) -> dict[str, Any]:
    """The runs param: null (all) or indices; digit strings are what the form submits."""
    return {"type": ["null", "array"], "minItems": 1,
            "items": {"type": ["integer", "string"], "minimum": 0, "pattern": "^[0-9]+$"},
            **run_choices(grid)}


def field_defaults(pipeline: Pipeline, parameters: Mapping[str, Mapping[str, Any]]
                   ) -> dict[str, dict[str, list[Any]]]:
    """What each parameter field holds before anyone edits it (the default grid's lists)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for axis in Grid(pipeline, parameters).axes:
        out.setdefault(axis.key, {})[axis.name] = list(axis.values)
    return out


def fold_form_conf(conf: Mapping[str, Any] | None,
                   defaults: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The trigger conf in its documented format, whether from the form or the CLI.

    The form shows each parameter twice: in its field and in the ``parameters`` object.
    A field changed from its default (``defaults``, see :func:`field_defaults`) wins;
    an unchanged one leaves the object's value (edited or not) alone.
    """
    defaults = defaults or {}
    if not conf:
        return dict(conf or {})
    out = {k: v for k, v in conf.items() if not k.startswith(FIELD_PREFIX)}
    fields = [(k, v) for k, v in conf.items() if k.startswith(FIELD_PREFIX)]
    if fields:
        given = out.get("parameters")
        if given is not None and not isinstance(given, dict):
            return out  # not an object: the conf check reports it as it is
        parameters = copy.deepcopy(given) if given else {}
        for name, value in fields:
            key, _, param = name[len(FIELD_PREFIX):].partition("/")
            if value is None or not key or not param:
                continue  # a cleared field: the parameter keeps its default
            unchanged = defaults.get(key, {}).get(param, _UNSET) == value
            if unchanged and param in (parameters.get(key) or {}):
                continue  # the object's value stands (the user may have edited it there)
            if not isinstance(parameters.get(key), dict):
                parameters[key] = {}
            parameters[key][param] = value
        out["parameters"] = parameters
    runs = out.get("runs")
    if isinstance(runs, list):
        out["runs"] = [int(r) if isinstance(r, str) and r.isdigit() else r for r in runs]
    return out
