"""A pipeline run's environment variables, read from Airflow Variables and Connections.

Orchest's precedence (project, pipeline, job, trigger conf) over values the project never
holds: the services and the steps of a run get the same variables, masked in logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.rundesc import RunDescription
from ..core.variables import merge_levels, parse_level, split_values


def run_variables(run: RunDescription) -> tuple[dict[str, str], dict[str, str]]:
    """A run's environment variables with Orchest's precedence, as (plain, private).

    Project, then pipeline variables (Airflow Variables named in ``env_sources``), then
    the job's and the trigger conf's (``env`` and ``secret_env``), each overriding the
    last. Project and pipeline values and every reference are private: masked in logs,
    never in rendered fields.
    """
    jobs_plain = dict(run.job.env)
    jobs_refs = dict(run.job.secret_env)
    levels = [parse_level(key, _variable_text(key)) for key in run.job.env_sources]
    below = {k: v for k, v in merge_levels(levels).items()
             if k not in jobs_plain and k not in jobs_refs}
    below_plain, below_refs = split_values(below)
    private = {**below_plain, **resolve_secrets({**below_refs, **jobs_refs})}
    for value in below_plain.values():
        if value:
            _mask(value)
    return jobs_plain, private


def _variable_text(key: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=None)


def _mask(value: str) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(value)


def resolve_secrets(references: Mapping[str, Any]) -> dict[str, str]:
    """Variable values kept out of the project: from Airflow Variables or Connections.

    ``{"airflow_variable": NAME}`` or ``{"airflow_connection": ID, "field": F}`` with F
    one of uri (default), host, login, password, schema, port, extra.
    """
    if not references:
        return {}
    from airflow.sdk import Connection, Variable
    from airflow.sdk.log import mask_secret

    values: dict[str, str] = {}
    for name, ref in references.items():
        try:
            if "airflow_variable" in ref:
                value = Variable.get(ref["airflow_variable"])
            else:
                conn = Connection.get(ref["airflow_connection"])
                field = ref.get("field") or "uri"
                value = conn.get_uri() if field == "uri" else getattr(conn, field)
        except Exception as exc:
            what = ", ".join(f"{k}={v!r}" for k, v in ref.items())
            raise RuntimeError(f"environment variable {name}: cannot read {what} "
                               f"({type(exc).__name__}: {exc})") from exc
        values[name] = "" if value is None else str(value)
        if values[name]:
            mask_secret(values[name])  # whatever its name: a step echoing it shows ***
    return values
