"""What one trigger asks for: the trigger conf resolved against a job's defaults.

The conf (``{"parameters": ..., "runs": [...], "env_variables": {...}}``) overrides the
default grid per parameter, selects runs of the resulting grid, and overrides job
variables per name. Everything is validated before any container starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import schema
from .errors import OrchestError
from .grid import DEFAULT_MAX_RUNS, Grid, ParameterSpace, check_space, merge
from .model import Pipeline

CONF_KEYS = ("parameters", "runs", "env_variables")


@dataclass(frozen=True)
class RunRequest:
    grid: Grid
    runs: list[int]
    #: Variable name -> plain string, or a reference to an Airflow Variable/Connection.
    env_variables: dict[str, Any]


def resolve_request(
    pipeline: Pipeline,
    conf: Mapping[str, Any] | None,
    *,
    default_parameters: ParameterSpace,
    default_runs: list[int] | tuple[int, ...] | None = None,
    default_env: Mapping[str, Any] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
    source: str = "trigger conf",
) -> RunRequest:
    conf = dict(conf or {})
    problems = schema.check("conf", conf, source)
    if not problems and "parameters" in conf:
        problems = check_space(conf["parameters"], pipeline, source, ("parameters",))
    if problems:
        raise OrchestError(problems)
    space = merge(default_parameters, conf.get("parameters") or {})
    grid = Grid(pipeline, space, max_runs=max_runs, source=source)
    runs = conf["runs"] if conf.get("runs") is not None else default_runs
    selected = grid.select(list(runs) if runs is not None else None, source=f"{source}: runs")
    env = {**(default_env or {}), **(conf.get("env_variables") or {})}
    return RunRequest(grid=grid, runs=selected, env_variables=env)
