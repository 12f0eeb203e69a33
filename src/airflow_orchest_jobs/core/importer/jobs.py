"""One Orchest job -> one job file: schedule, grid, selected runs, variables, retention.

Orchest stored the grid as ``strategy_json`` (each value a JSON-encoded list) and the
selected runs by VALUE (one ``{key: {name: value}}`` per run, JSONB key order), so runs
are found by matching each against the grid this plugin builds, compared as parsed JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..grid import PIPELINE_KEY, Grid, ParameterSpace, check_space
from ..model import Pipeline
from ..naming import safe
from ..schedule import parse_schedule
from .model import OrchestJob

#: Airflow Variable holding one variable set only on a job (secrets stay out of files).
JOB_VARIABLE_PREFIX = "orchest_jobenv__"


def file_stem(name: str) -> str:
    """A job name as a file and DAG id part: lower case, ``[a-z0-9_-]``, never empty."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:80].strip("-_")
    return stem or "job"


def job_variable(project: str, stem: str, name: str) -> str:
    return f"{JOB_VARIABLE_PREFIX}{safe(project)}__{safe(stem)}__{safe(name)}"


@dataclass
class MappedJob:
    """A job file's document, the Airflow Variables it refers to, and what could not be
    carried (``problems``: the job cannot be written) or is worth knowing (``notes``)."""

    document: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    state: str = ""
    runs_text: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def disposition(job: OrchestJob, now: datetime) -> tuple[str, str | None, bool]:
    """(state shown, ISO time of a one-off still to run or "" for a cron job, paused);
    state "" means the job is not imported (finished, running or never started)."""
    if job.is_cron:
        if job.status == "STARTED":
            return "cron, active", "", False
        if job.status == "PAUSED":
            return "cron, paused", "", True
        if job.status == "ABORTED":
            return "cron, cancelled: paused", "", True
        return f"cron, {job.status.lower()}: paused", "", True
    if job.status == "PENDING":
        at = job.next_scheduled_time
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        if at is not None and at > now:
            iso = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return f"one-off at {iso}", iso, False
        return "one-off, was due: trigger-only", None, False
    return "", None, False


def grid_space(job: OrchestJob, pipeline: Pipeline) -> tuple[ParameterSpace, list[str]]:
    """The grid from ``strategy_json``, keys and names in the pipeline's order."""
    problems: list[str] = []
    raw: dict[str, dict[str, list[Any]]] = {}
    for key, entry in (job.strategy_json or {}).items():
        params = entry.get("parameters", {}) if isinstance(entry, Mapping) else None
        if not isinstance(params, Mapping):
            problems.append(f"strategy_json[{key!r}] has no parameters object")
            continue
        for name, encoded in params.items():
            try:
                values = json.loads(encoded) if isinstance(encoded, str) else encoded
            except json.JSONDecodeError:
                values = None
            if not isinstance(values, list) or not values:
                problems.append(f"parameter {name!r} of {key!r} is not a JSON list of values "
                                f"({str(encoded)[:60]!r}); give it a list in Orchest")
                continue
            raw.setdefault(key, {})[name] = values
    order = [PIPELINE_KEY, *pipeline.steps]
    space: ParameterSpace = {}
    for key in sorted(raw, key=lambda k: (order.index(k) if k in order else len(order), k)):
        defaults = (pipeline.parameters if key == PIPELINE_KEY else
                    pipeline.steps[key].parameters if key in pipeline.steps else {})
        names = [n for n in defaults if n in raw[key]] + sorted(
            n for n in raw[key] if n not in defaults)
        space[key] = {n: raw[key][n] for n in names}
    for problem in check_space(space, pipeline, "grid"):
        problems.append(f"{problem.where}: {problem.message}" if problem.where
                        else problem.message)
    return space, problems


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def match_runs(grid: Grid, selected: list[dict[str, Any]]
               ) -> tuple[list[int] | None, list[str]]:
    """Indices of Orchest's selected runs in ``grid`` (None: every run), and one line per
    selected run that is not in it."""
    axes = [(a.key, a.name) for a in grid.axes if len(a.values) > 1]
    index: dict[str, int] = {}
    for i in range(len(grid)):
        run = grid.run(i)
        index.setdefault(_canon([run[k][n] for k, n in axes]), i)
    found: set[int] = set()
    problems: list[str] = []
    for chosen in selected:
        chosen = chosen if isinstance(chosen, Mapping) else {}
        missing = [f"{k}.{n}" for k, n in axes if n not in (chosen.get(k) or {})]
        at = None if missing else index.get(_canon([chosen[k][n] for k, n in axes]))
        if at is not None:  # the parameters that do not vary must agree too
            run = grid.run(at)
            for key, values in chosen.items():
                for name, value in (values or {}).items():
                    if name in run.get(key, {}) and _canon(run[key][name]) != _canon(value):
                        at = None
        if at is None:
            problems.append(f"selected run {_canon(chosen)[:200]} is not in the job's grid"
                            + (f" (it lacks {', '.join(missing)})" if missing else ""))
        else:
            found.add(at)
    if problems:
        return None, problems
    if not found and selected:
        return None, ["selects no runs"]
    if not selected or len(found) == len(grid):
        return None, []
    return sorted(found), []


def split_variables(job_env: Mapping[str, Any], inherited: Mapping[str, Any]
                    ) -> tuple[dict[str, str], list[str]]:
    """The job's own variables (not equal to what project and pipeline give), and the
    names Orchest's job had deleted (inherited here: cannot be carried)."""
    own = {name: value if isinstance(value, str) else json.dumps(value)
           for name, value in job_env.items()
           if name not in inherited or inherited[name] != value}
    deleted = sorted(name for name in inherited if name not in job_env)
    return own, deleted


def map_job(job: OrchestJob, *, project: str, stem: str, pipeline: Pipeline,
            pipeline_rel: str, inherited: Mapping[str, Any], now: datetime) -> MappedJob:
    """The job file for ``job`` (``project``: the folder it lands in)."""
    out = MappedJob()
    state, at, paused = disposition(job, now)
    out.state = state
    doc: dict[str, Any] = {"pipeline": pipeline_rel, "description": job.name}
    if job.is_cron:
        schedule = (job.schedule or "").strip()
        try:
            parse_schedule(schedule)
        except ValueError as exc:
            fields = len(schedule.split())
            fix = ("six fields (with seconds) or more: Airflow's cron has five; edit its "
                   "schedule in Orchest to five fields" if fields > 5 else
                   f"{exc}; edit its schedule in Orchest")
            out.problems.append(f"cron {schedule!r}: {fix}")
        doc["schedule"] = schedule
    else:
        doc["schedule"] = at
    space, problems = grid_space(job, pipeline)
    out.problems += problems
    if space:
        doc["parameters"] = space
    if not problems:
        try:
            grid = Grid(pipeline, space, source="grid")
        except Exception as exc:  # a grid over the limit: the message says it
            out.problems.append(str(exc))
        else:
            runs, run_problems = match_runs(grid, job.parameters)
            out.problems += [f"{p}; edit the job's runs in Orchest" for p in run_problems]
            if runs is not None:
                doc["runs"] = runs
            out.runs_text = (f"{len(runs)} of {len(grid)}" if runs is not None
                             else f"all {len(grid)}")
    own, deleted = split_variables(job.env_variables or {}, inherited)
    for name in deleted:
        out.problems.append(
            f"variable {name} was deleted on the job in Orchest, here the job would inherit "
            "it from the project or pipeline Variable; set it on the job in Orchest (an "
            "empty value if that suits the code) and import again")
    if own:
        env: dict[str, Any] = {}
        for name in sorted(own):
            variable = job_variable(project, stem, name)
            env[name] = {"airflow_variable": variable}
            out.variables[variable] = own[name]
        doc["env_variables"] = env
    retained = job.max_retained_pipeline_runs
    if retained is not None and retained >= 1:
        doc["max_retained_pipeline_runs"] = retained
    elif retained == 0:
        out.problems.append("max_retained_pipeline_runs is 0; keep at least 1 run "
                            "(set it in Orchest) or -1 to keep all")
    if paused:
        doc["paused"] = True
    out.document = doc
    return out


def job_file_text(document: Mapping[str, Any]) -> str:
    """The job file as written: stable (a second import compares bytes)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
