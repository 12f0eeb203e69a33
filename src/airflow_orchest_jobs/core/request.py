"""What one trigger asks for: the trigger conf resolved against a job's defaults.

The conf (``{"parameters": ..., "runs": [...], "env_variables": {...}}``) overrides the
default grid per parameter, selects runs of the resulting grid, and overrides job
variables per name; ``pipeline_run_timeout`` and ``stop_on_first_failure`` override the
job file's for this job run. Everything is validated before any container starts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import schema
from .errors import OrchestError, Problem
from .grid import DEFAULT_MAX_RUNS, Grid, ParameterSpace, check_space, merge
from .jsonfile import MAX_DEPTH, nesting_depth
from .model import Pipeline
from .schedule import parse_duration
from .variables import value_problems

CONF_KEYS = ("parameters", "runs", "env_variables", "pipeline_run_timeout",
             "stop_on_first_failure")
#: Characters of conf JSON Airflow's scheduler may decode per loop before a warning.
CONF_DECODE_WARNING = 10_000_000


@dataclass(frozen=True)
class RunRequest:
    grid: Grid
    runs: list[int]
    #: Variable name -> plain string, or a reference to an Airflow Variable/Connection.
    env_variables: dict[str, Any]
    #: Seconds a pipeline run may take (None: no limit).
    pipeline_run_timeout: float | None = None
    stop_on_first_failure: bool = False


def resolve_request(
    pipeline: Pipeline,
    conf: Mapping[str, Any] | None,
    *,
    default_parameters: ParameterSpace,
    default_runs: list[int] | tuple[int, ...] | None = None,
    default_env: Mapping[str, Any] | None = None,
    default_timeout: float | None = None,
    default_stop_on_first_failure: bool = False,
    max_runs: int = DEFAULT_MAX_RUNS,
    source: str = "trigger conf",
) -> RunRequest:
    conf = dict(conf or {})
    if nesting_depth(conf) > MAX_DEPTH:  # copies and JSON writes recurse per level
        raise OrchestError.single(source, "", f"lists and objects are nested more than "
                                  f"{MAX_DEPTH} levels deep; flatten the conf")
    problems = schema.check("conf", conf, source)
    if not problems and "parameters" in conf:
        problems = check_space(conf["parameters"], pipeline, source, ("parameters",))
    if not problems and conf.get("env_variables"):
        # a NUL in a value fails here, with the other conf problems, not at container start
        problems = value_problems(conf["env_variables"], source, "env_variables.")
    timeout = default_timeout
    if not problems and conf.get("pipeline_run_timeout") is not None:
        try:
            timeout = parse_duration(conf["pipeline_run_timeout"])
        except ValueError as exc:
            problems = [Problem(source, "pipeline_run_timeout", str(exc))]
    if problems:
        raise OrchestError(problems)
    space = merge(default_parameters, conf.get("parameters") or {})
    grid = Grid(pipeline, space, max_runs=max_runs, source=source)
    runs = conf["runs"] if conf.get("runs") is not None else default_runs
    selected = grid.select(list(runs) if runs is not None else None, source=f"{source}: runs")
    env = {**(default_env or {}), **(conf.get("env_variables") or {})}
    stop = conf.get("stop_on_first_failure")
    return RunRequest(grid=grid, runs=selected, env_variables=env,
                      pipeline_run_timeout=timeout,
                      stop_on_first_failure=default_stop_on_first_failure if stop is None
                      else bool(stop))


def conf_cost_warning(conf: Mapping[str, Any] | None, task_instances: int) -> str | None:
    """A warning when the conf is big for the run it starts, else None.

    Airflow's scheduler reads a DAG run's task instances joined with the run on every
    loop, decoding the run's conf once per task instance: a grid's values in the conf
    cost their size times the run's task instances, per loop (a 10,000-value list over
    10,000 runs: two thirds of the scheduler's time, one run finished every 5 s).
    """
    chars = len(json.dumps(conf, default=str)) if conf else 0
    per_loop = chars * task_instances
    if per_loop < CONF_DECODE_WARNING:
        return None
    return (f"the trigger conf is {chars:,} characters of JSON; Airflow's scheduler decodes "
            f"it for each of this run's {task_instances:,} task instances on every loop "
            f"(about {per_loop / 1e6:,.0f} MB per loop), which slows the whole run. Put big "
            "grids in the pipeline's parameters file (or the job file) and trigger without "
            "them.")
