"""Job files (``<name>.job.json``): a pipeline, its schedule, parameters and run policy."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import schema
from .errors import OrchestError, Problem
from .grid import Grid, ParameterSpace, check_space, load_parameters
from .jsonfile import read_json
from .model import Pipeline
from .project import JOB_SUFFIX, parameters_file_for
from .schedule import Schedule, parse_duration, parse_schedule, parse_start_date
from .textcheck import name_problem, path_problem, shown_text_problem
from .variables import value_problems
from .within import inside

#: Seconds between a failed step and its retry (``step_retry_delay``'s default).
DEFAULT_STEP_RETRY_DELAY = 30.0


class SnapshotMode(str, enum.Enum):
    """When a job snapshots its project and freezes its images."""

    #: Once, at the job's first run; every later run reuses them (Orchest's jobs).
    PER_JOB = "per_job"
    #: At every DAG run (pipeline DAGs: each DAG run is a one-off job).
    PER_RUN = "per_run"


class DagKind(str, enum.Enum):
    PIPELINE = "pipeline"
    JOB = "job"


@dataclass(frozen=True)
class JobSpec:
    name: str
    path: Path
    pipeline_path: Path
    schedule: Schedule
    #: Parameter space in the parameters-file format (file already read), or {} for defaults.
    parameters: ParameterSpace
    runs: tuple[int, ...] | None
    #: Plain values, or {"airflow_variable": ...} / {"airflow_connection": ..., "field": ...}.
    env_variables: Mapping[str, Any] = field(default_factory=dict)
    max_retained_pipeline_runs: int | None = None
    snapshot: SnapshotMode = SnapshotMode.PER_JOB
    max_parallel_runs: int | None = None
    catchup: bool = False
    #: Orchest's fail-fast: the first failed step stops the rest of its pipeline run.
    fail_fast: bool = True
    description: str = ""
    #: At most N job runs (DAG runs) at once (Airflow's max_active_runs); None: default.
    max_active_job_runs: int | None = None
    #: Seconds a pipeline run may take from its start (None: no limit).
    pipeline_run_timeout: float | None = None
    #: Retries of a failed step (user code), and the seconds between tries.
    step_retries: int = 0
    step_retry_delay: float = DEFAULT_STEP_RETRY_DELAY
    #: Stop the whole job run at its first failed pipeline run.
    stop_on_first_failure: bool = False
    #: A cron job's first possible run (None: from now on).
    start_date: datetime | None = None
    #: The DAG is created paused (Airflow's is_paused_upon_creation; later pauses are Airflow's).
    paused: bool = False


def job_name(path: Path) -> str:
    return path.name[: -len(JOB_SUFFIX)]


def read_job_file(path: Path, project_dir: Path) -> tuple[dict[str, Any], Path]:
    """Schema-check a job file; returns the document and the pipeline path it names."""
    bad_name = name_problem(os.path.relpath(path, project_dir))
    if bad_name:
        raise OrchestError.single(path, "", bad_name)
    doc = read_json(path, "job file")
    problems = schema.check("job", doc, str(path))
    if not problems and isinstance(doc.get("description"), str):
        bad_text = shown_text_problem(doc["description"])
        problems = [Problem(str(path), "description", bad_text)] if bad_text else []
    if problems:
        raise OrchestError(problems)
    pipeline_path = _inside_project(path, "pipeline", doc["pipeline"], project_dir)
    if not pipeline_path.name.endswith(".orchest"):
        raise OrchestError.single(path, "pipeline", f"{doc['pipeline']!r} is not a .orchest "
                                  "file; name the pipeline file, relative to the project")
    if not pipeline_path.is_file():
        raise OrchestError.single(path, "pipeline", f"unknown pipeline {doc['pipeline']!r} (no "
                                  f"file {pipeline_path}); give the path relative to the project")
    return doc, pipeline_path


def load_job(path: Path, project_dir: Path, pipeline: Pipeline) -> JobSpec:
    """Validate a job file against its (already loaded) pipeline."""
    doc, pipeline_path = read_job_file(path, project_dir)
    file = str(path)
    problems: list[Problem] = []
    try:
        schedule = parse_schedule(doc.get("schedule"))
    except ValueError as exc:
        problems.append(Problem(file, "schedule", str(exc)))
        schedule = Schedule()
    timing = _timing(doc, file, schedule, problems)
    parameters: ParameterSpace = {}
    given = doc.get("parameters")
    if isinstance(given, str):
        params_path = _inside_project(path, "parameters", given, project_dir)
        try:
            parameters = load_parameters(params_path, pipeline)
        except OrchestError as exc:
            problems.extend(exc.problems)
    elif isinstance(given, dict):
        found = check_space(given, pipeline, file, ("parameters",))
        problems.extend(found)
        parameters = {} if found else given
    else:
        default = parameters_file_for(pipeline_path)
        if default.is_file():
            try:
                parameters = load_parameters(default, pipeline)
            except OrchestError as exc:
                problems.extend(exc.problems)
    problems.extend(value_problems(doc.get("env_variables", {}), file, "env_variables."))
    runs = doc.get("runs")
    if not problems:
        try:
            Grid(pipeline, parameters, source=file).select(runs, source=f"{file}: runs")
        except OrchestError as exc:
            problems.extend(exc.problems)
    if problems:
        raise OrchestError(problems)
    return JobSpec(
        name=job_name(path),
        path=path,
        pipeline_path=pipeline_path,
        schedule=schedule,
        parameters=parameters,
        runs=tuple(runs) if runs is not None else None,
        env_variables=doc.get("env_variables", {}),
        max_retained_pipeline_runs=doc.get("max_retained_pipeline_runs"),
        snapshot=SnapshotMode(doc.get("snapshot", "per_job")),
        max_parallel_runs=doc.get("max_parallel_runs"),
        catchup=doc.get("catchup", False),
        fail_fast=doc.get("fail_fast", True),
        description=doc.get("description", ""),
        max_active_job_runs=doc.get("max_active_job_runs"),
        step_retries=doc.get("step_retries", 0),
        stop_on_first_failure=doc.get("stop_on_first_failure", False),
        **timing,
        paused=doc.get("paused", False),
    )


def _timing(doc: Mapping[str, Any], file: str, schedule: Schedule, problems: list[Problem]
            ) -> dict[str, Any]:
    """``pipeline_run_timeout``, ``step_retry_delay`` and ``start_date``, parsed; a bad one
    is a problem naming the field and the fix."""
    out: dict[str, Any] = {}
    for name, key, default in (("pipeline_run_timeout", "pipeline_run_timeout", None),
                               ("step_retry_delay", "step_retry_delay",
                                DEFAULT_STEP_RETRY_DELAY)):
        value = doc.get(name)
        if value is None:
            out[key] = default
            continue
        if name == "step_retry_delay" and value == 0:
            out[key] = 0.0
            continue
        try:
            out[key] = parse_duration(value)
        except ValueError as exc:
            problems.append(Problem(file, name, str(exc)))
    if doc.get("start_date") is not None:
        if schedule.cron is None or schedule.cron == "@once":
            problems.append(Problem(file, "start_date", "applies to a cron schedule only "
                                    "(this job has none); set a cron \"schedule\", or give "
                                    "a one-off job its time in \"schedule\" itself"))
        else:
            try:
                out["start_date"] = parse_start_date(doc["start_date"])
            except ValueError as exc:
                problems.append(Problem(file, "start_date", str(exc)))
    return out


def _inside_project(job_path: Path, field_name: str, value: str, project_dir: Path) -> Path:
    """Resolve a project-relative path from a job file; refuse one that leaves the project."""
    bad_text = path_problem(value)
    if bad_text:
        raise OrchestError.single(job_path, field_name, f"{value!r} {bad_text}")
    if os.path.isabs(value):
        raise OrchestError.single(job_path, field_name, f"{value!r} is absolute; give a path "
                                  "relative to the project folder")
    project = os.path.abspath(project_dir)
    target = os.path.normpath(os.path.join(project, value))
    if not inside(target, project) or not inside(os.path.realpath(target),
                                                 os.path.realpath(project)):
        raise OrchestError.single(job_path, field_name, f"{value!r} leaves the project folder; "
                                  "keep it inside the project")
    return Path(target)
