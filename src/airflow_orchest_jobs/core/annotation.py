"""The ``x-orchest`` annotation: what only the job definition knows (kind, project,
pipeline, grid size...), put by the DAG factory on the schema of the DAG's ``parameters``
param, and read back from the serialized DAG by the job views and the pause check.

Pure (plain dicts in, plain dicts out), so the api-server's views and the scheduler's
delivery loop read it the same way without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The Param schema keyword that carries the annotation.
KEY = "x-orchest"
#: The DAG param whose schema carries it.
PARAM = "parameters"


def schema_annotation(fields: dict[str, Any]) -> dict[str, Any]:
    """The annotation as Param schema keywords (``Param(..., **schema_annotation(...))``)."""
    return {KEY: fields}


def read_annotation(serialized: Mapping[str, Any]) -> dict[str, Any]:
    """The annotation in a serialized DAG (``SerializedDagModel.data``); {} without one.

    The serialized params are ``[[name, param], ...]``; a param's schema and the
    annotation may each be wrapped as ``{"__type": ..., "__var": value}``.
    """
    params = (serialized.get("dag") or {}).get("params") or []
    for name, param in params if isinstance(params, list) else []:
        if name != PARAM or not isinstance(param, dict):
            continue
        schema = param.get("schema") or {}
        schema = schema.get("__var", schema) if isinstance(schema, dict) else {}
        info = schema.get(KEY) if isinstance(schema, dict) else None
        if isinstance(info, dict):
            return dict(info.get("__var", info))
    return {}
