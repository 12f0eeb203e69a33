"""Project and pipeline environment variables: where Orchest kept them, and precedence.

Orchest kept project and pipeline variables in its database (they hold secrets), and a
job's variables were the project's, overridden by the pipeline's, overridden by the
job's own; the trigger conf comes on top here. Their home here is Airflow Variables
(so secrets backends apply), one JSON object per project and per pipeline, with the same
value forms as job variables: a string, ``{"airflow_variable": NAME}`` or
``{"airflow_connection": ID, "field": F}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from . import schema
from .errors import OrchestError, Problem
from .jsonfile import loads_bounded
from .textcheck import env_value_problem

PREFIX = "orchest_env__"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def project_variable(project: str) -> str:
    """The Airflow Variable holding a project's variables: ``orchest_env__<project>``."""
    return f"{PREFIX}{_safe(project)}"


def pipeline_variable(project: str, pipeline_rel: PurePosixPath | str) -> str:
    """``orchest_env__<project>__<pipeline path without .orchest>``."""
    rel = str(pipeline_rel).removesuffix(".orchest")
    return f"{project_variable(project)}__{_safe(rel)}"


def parse_level(key: str, raw: str | None) -> dict[str, Any]:
    """One level's variables from the Airflow Variable's text (absent: none)."""
    if raw is None or not str(raw).strip():
        return {}
    source = f"Airflow Variable {key}"
    try:
        value = loads_bounded(raw, source)
    except json.JSONDecodeError as exc:
        raise OrchestError.single(source, "", f"is not valid JSON ({exc.msg}); store an "
                                  "object such as {\"NAME\": \"value\"}") from None
    problems = schema.check("variables", value, source) or value_problems(value, source)
    if problems:
        raise OrchestError(problems)
    checked: dict[str, Any] = value  # the schema says an object
    return checked


def value_problems(env: Mapping[str, Any], file: str, prefix: str = "") -> list[Problem]:
    """Plain values a container's environment cannot carry (a NUL...), one line each;
    checked when the file or Variable is loaded, not when a step container starts."""
    problems = []
    for name, value in env.items():
        problem = env_value_problem(value) if isinstance(value, str) else None
        if problem:
            problems.append(Problem(file, f"{prefix}{name}", f"the value of {name} {problem}"))
    return problems


def merge_levels(levels: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Later levels win, name by name (project, pipeline, job, conf)."""
    merged: dict[str, Any] = {}
    for level in levels:
        merged.update(level)
    return merged


def split_values(env: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Plain strings, and references to resolve from Airflow when the step starts."""
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    refs = {k: v for k, v in env.items() if not isinstance(v, str)}
    return plain, refs
