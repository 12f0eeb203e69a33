"""The DAG factory: every Orchest pipeline and job file under ``projects_dir`` as a DAG.

A DAG run is one job run: ``snapshot`` (validate the conf, snapshot the project, freeze
the images) -> ``plan`` (expand the grid, write each run's definition) -> one mapped
``pipeline_run`` group instance per pipeline run: ``prepare`` (check the snapshot out)
then one Docker step task per pipeline step, wired like the pipeline.

Parsing reads JSON and stats files only: no Docker, network or database work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..config import load_settings
from ..config import max_map_length as read_max_map_length
from ..core.annotation import schema_annotation
from ..core.errors import Problem, one_line, problems_of
from ..core.grid import Grid
from ..core.job import DagKind
from ..core.jobdef import JobDefinition, job_definitions
from ..core.naming import error_dag_id, step_task_ids
from ..core.pipeline import topological_order
from ..core.plan import lanes_needed
from ..core.runslots import INSTALLATION, job_scope
from ..core.scan import scan_projects
from ..core.schedule import format_duration
from ..core.services import job_services
from ..core.settings import Settings
from ..core.triggerform import field_schema, fits_in_form, parameter_fields, runs_schema
from ..operators.tasks import (
    SNAPSHOT_TASK_ID,
    FinalizeOperator,
    PlanOperator,
    cleanup_task,
    prepare_task,
)

log = logging.getLogger("airflow_orchest_jobs.dag.factory")

#: Fixed start for cron jobs (with catchup off only the latest interval runs).
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
TAGS = ["orchest"]
#: Airflow's limit is 250; room is left for the ``_`` a duplicate gets.
MAX_DAG_ID = 230


def build_dags(settings: Settings | None = None) -> dict[str, Any]:
    """All DAGs for ``settings.projects_dir``; invalid files become placeholder DAGs.

    Contained by construction: whatever one project's files raise while they load
    (``core.scan``) or while their DAG is built (here) becomes that file's one-line
    problem and its placeholder DAG; the other projects' DAGs are unaffected.
    """
    if settings is None:
        settings = load_settings()
    try:
        scan = scan_projects(settings.projects_dir, settings.environment_images,
                             settings.data_dir if settings.data_dir.is_dir() else None)
    except Exception as exc:  # the projects folder itself (each project is contained)
        dir_problems = problems_of(settings.projects_dir, exc, log)
        return {d.dag_id: d for d in [_invalid_dag("orchest_invalid__projects_dir",
                                                   dir_problems, settings.projects_dir)]}
    definitions, problems = job_definitions(scan, settings.store_dir,
                                            settings.environment_images)
    length = read_max_map_length()  # one config read per parse, not one per DAG
    wanted = _parsing_for_dag()
    mine = [d for d in definitions if d.dag_id == wanted] if wanted is not None else []
    # A task instance starting (or ``airflow tasks``/``dags test``): only its DAG is
    # needed, not every pipeline of every project.
    dags: dict[str, Any] = {}
    for definition in mine or definitions:
        try:
            dags[definition.dag_id] = orchest_dag(definition, settings, length)
        except Exception as exc:  # one definition's boundary: contain anything
            file = str(definition.source_files[0])
            problems.setdefault(file, []).extend(problems_of(file, exc, log))
    if mine:
        return dags
    for file, file_problems in problems.items():
        for problem in file_problems:  # also in the DAG processor's log, one line each
            log.warning("%s", problem)
        dag_id = _invalid_dag_id(Path(file), settings.projects_dir, dags)
        try:
            dags[dag_id] = _invalid_dag(dag_id, file_problems, Path(file))
        except Exception:  # never lose the other DAGs over a placeholder
            log.exception("cannot show the problems of %s as a DAG", one_line(file))
    return dags


def _parsing_for_dag() -> str | None:
    """The DAG id Airflow parses this file for (its parsing context), else None."""
    from airflow.sdk import get_parsing_context

    return get_parsing_context().dag_id


def _invalid_dag_id(file: Path, projects_dir: Path, taken: dict) -> str:
    try:
        rel = file.relative_to(projects_dir)
        project, rest = rel.parts[0], "/".join(rel.parts[1:]) or rel.parts[0]
    except (ValueError, IndexError):
        project, rest = "unknown", file.name
    dag_id = error_dag_id(project, rest)
    if len(dag_id) > MAX_DAG_ID:  # Airflow refuses longer ids: keep it unique, shorter
        digest = hashlib.blake2b(dag_id.encode("utf-8", "surrogatepass"), digest_size=6)
        dag_id = f"{dag_id[:MAX_DAG_ID - 20]}_{digest.hexdigest()}"
    while dag_id in taken:
        dag_id += "_"
    return dag_id


def _invalid_dag(dag_id: str, problems: list[Problem], file: Path):
    """A DAG that shows, in the UI, what is wrong with ``file`` and where."""
    from airflow.sdk import DAG

    from ..operators.problems import InvalidOrchestFileOperator

    lines = [str(p) for p in problems]
    first = lines[0] if lines else f"{file}: invalid"
    shown = one_line(str(file))
    doc = "\n".join(["### This Orchest file is invalid", "", f"File: `{shown}`", "",
                     *[f"- `{line}`" for line in lines], "",
                     "Fix the file; the DAG processor picks the change up on its next parse."])
    with DAG(dag_id, schedule=None, start_date=EPOCH, catchup=False,
             description=("INVALID: " + first)[:1000], doc_md=doc,
             tags=[*TAGS, "orchest:invalid"], is_paused_upon_creation=True) as dag:
        InvalidOrchestFileOperator(task_id="invalid_orchest_file", problems=lines,
                                   retries=0)
    return dag


def _params(job: JobDefinition, grid: Grid, grid_shown: bool) -> dict[str, Any]:
    """The trigger form: a field per parameter (its value list), the runs as a multi-select
    of labelled runs, the rest of the grid as JSON, the variables.

    What the form submits is folded back into the conf format by
    ``core.triggerform.fold_form_conf``; a conf from the CLI is unchanged by it.
    """
    from airflow.sdk import Param

    grid_size = len(grid)
    titles = {k: s.title for k, s in job.pipeline.steps.items()}
    fields = parameter_fields(grid, titles)
    steps = ", ".join(f"{s.title} = {k}" for k, s in list(job.pipeline.steps.items())[:20])
    params: dict[str, Any] = {}
    for field in fields:
        shown = field["shown"]
        params[field["name"]] = Param(
            default=field["values"] if shown else None, title=field["title"],
            section=field["section"],
            description="The values to run, a JSON list (each one is a run of the grid)."
            if shown else f"{len(field['values'])} values by default, not shown (the form "
            "puts what it shows in the DAG run's conf); empty runs them, or enter a list.",
            **field_schema(shown))
    choices = runs_schema(grid)
    picking = "examples" in choices
    params["runs"] = Param(
        default=list(job.runs) if job.runs is not None else None, title="Runs to run",
        description=(f"Pick the runs of the {grid_size}-run grid to run; none picked runs them "
                     "all. Runs are numbered in the grid as filled in above."
                     if picking else
                     "0-based indices of grid runs to run, e.g. [0, 3]; empty (null) runs them "
                     "all. `airflow-orchest-jobs grid` lists them."),
        **choices)
    params["parameters"] = Param(
        default=job.parameters if grid_shown else {}, type="object", title="Parameter grid",
        description=(
            "Orchest's job parameters format: {\"pipeline_parameters\": {name: [values]}, "
            "\"<step uuid>\": {name: [values]}}. Every value is a LIST; the grid runs every "
            "combination. Parameters you leave out keep their default "
            + (f"({grid_size} run(s) as filled in)" if grid_shown else
               f"(the default grid, {grid_size} runs, is too big to show here)")
            + ("; a parameter changed in its own field takes the field's values" if fields
               else "") + f". Step uuids: {steps}."),
        **schema_annotation({"kind": job.kind.value,
                              "project": job.project.name,
                              "pipeline": str(job.pipeline.rel_path),
                              "snapshot": job.snapshot,
                              "max_retained_pipeline_runs": job.max_retained_pipeline_runs,
                              "max_parallel_runs": job.max_parallel_runs,
                              "grid_size": grid_size}))
    if job.kind is DagKind.JOB or job.pipeline_run_timeout or job.stop_on_first_failure:
        params["pipeline_run_timeout"] = Param(
            default=format_duration(job.pipeline_run_timeout)
            if job.pipeline_run_timeout else None,
            type=["null", "string", "integer"], title="Time limit per pipeline run",
            description="A pipeline run past it is stopped and fails: seconds or a "
                        "duration such as \"30m\", \"2h\"; empty: no limit.")
        params["stop_on_first_failure"] = Param(
            default=job.stop_on_first_failure, type="boolean",
            title="Stop the job run at its first failed pipeline run",
            description="On: the first failed pipeline run stops the others (they end "
                        "cancelled). Off: they go on, as Orchest's jobs did.")
    params["env_variables"] = Param(
        default=dict(job.env_variables), type="object", title="Environment variables",
        description="Variables for every step container, by name (letters, digits, - "
                    "and _). A value may be {\"airflow_variable\": NAME} or "
                    "{\"airflow_connection\": ID, \"field\": \"password\"} to keep a "
                    "secret out of the project.")
    return params


def _run_limits(job: JobDefinition) -> dict[str, Any]:
    """No overlapping job runs (``max_active_job_runs``); absent: Airflow's default."""
    return {"max_active_runs": job.max_active_job_runs} if job.max_active_job_runs else {}


def _schedule_args(job: JobDefinition) -> dict[str, Any]:
    """Cron text and presets get Orchest's rule: the first run (and after resume) is the next
    tick, never one in the past (``timetable.OrchestCronTimetable``)."""
    if job.schedule.at is not None:
        return {"schedule": "@once", "start_date": job.schedule.at}
    if job.schedule.cron in (None, "@once"):
        return {"schedule": job.schedule.cron, "start_date": EPOCH}
    from .timetable import OrchestCronTimetable  # imports Airflow: only when building DAGs

    # A job file's start_date: no tick before it (the timetable's earliest).
    return {"schedule": OrchestCronTimetable(job.schedule.cron),
            "start_date": job.start_date or EPOCH}


def _doc(job: JobDefinition, fingerprint: str, lanes: int, grid_size: int,
         grid_shown: bool) -> str:
    pipeline = job.pipeline
    rows = "\n".join(f"| {s.title} | `{s.file_path}` | `{s.uuid}` |"
                     for s in pipeline.steps.values())
    # The default grid as the example, unless it is big (a 10,000-value list in every
    # parse's docs, and a conf the scheduler would decode per task instance).
    example = json.dumps({"parameters": job.parameters or {"pipeline_parameters": {}},
                          "runs": [0]} if grid_shown else {"runs": [0]})
    frozen = (f"\n\nFrozen job: snapshot `{job.frozen_snapshot}` (the pipeline shown is the "
              "snapshot's)." if job.frozen_snapshot else "")
    return (
        f"### {pipeline.name or pipeline.rel_path}\n\n"
        f"Project `{job.project.name}`, pipeline `{pipeline.rel_path}`, "
        f"{grid_size} run(s) in the default grid, snapshot "
        f"`{job.snapshot}`.{frozen}\n\n"
        f"| step | file | uuid |\n|---|---|---|\n{rows}\n\n"
        f"Trigger with conf, e.g. `airflow dags trigger {job.dag_id} -c '{example}'`.\n\n"
        f"Source fingerprint: `{fingerprint}` ({lanes} mapped group(s))"
    )


def orchest_dag(job: JobDefinition, settings: Settings, max_map_length: int):
    """Build the DAG of one job definition (see the module docstring for its shape).

    ``max_map_length``: Airflow's ``[core] max_map_length``, read once per parse.
    """
    from airflow.sdk import DAG, TriggerRule, task, task_group

    from ..operators.snapshot import OrchestSnapshotOperator

    pipeline = job.pipeline
    grid = Grid(pipeline, job.parameters)  # built once: parsing is the hot path
    default_count = len(grid.select(job.runs))
    lanes = lanes_needed(default_count, max_map_length)
    fingerprint = job.fingerprint()
    # Whether the default grid is small enough for the trigger form and the docs' example.
    grid_shown = fits_in_form(job.parameters)
    parallelism = pipeline.settings.max_steps_parallelism or None
    with DAG(
        job.dag_id,
        dag_display_name=job.display_name or job.dag_id,
        description=job.description[:1000],
        doc_md=_doc(job, fingerprint, lanes, len(grid), grid_shown),
        catchup=job.catchup,
        tags=[*TAGS, f"project:{job.project.name}", "orchest:job" if job.kind is DagKind.JOB
              else "orchest:pipeline"],
        is_paused_upon_creation=job.paused,
        render_template_as_native_obj=False,
        **_run_limits(job),
        **_schedule_args(job),
    ) as dag:
        snapshot = OrchestSnapshotOperator(task_id=SNAPSHOT_TASK_ID, job=job)
        plan = PlanOperator(task_id="plan", job=job, lanes=lanes)
        snapshot >> plan
        planned: Any = plan.output  # an XComArg: the task decorator resolves it at run time
        task_ids = step_task_ids({k: s.title for k, s in pipeline.steps.items()})
        limits = run_limits(job, settings)
        services = bool(job_services(pipeline.services))
        roots = [key for key in pipeline.steps if not _parents(pipeline, key)]

        def pipeline_run(run: dict[str, Any], job_run: dict[str, Any]) -> None:
            # A run that waits for a slot or has services gets a first task for that;
            # otherwise its first steps check the project copy out themselves (no task
            # instance only to prepare).
            prepared = prepare_task(job, run, job_run, limits) if limits or services \
                else None
            step_tasks = {key: step_task(job, key, task_ids[key], run, job_run, settings,
                                         parallelism, services,
                                         checkout_peers=None if prepared or key not in roots
                                         else [task_ids[r] for r in roots])
                          for key in topological_order(pipeline)}
            for key, step_op in step_tasks.items():
                for upstream in [step_tasks[p] for p in _parents(pipeline, key)] or \
                        ([prepared] if prepared else []):
                    upstream >> step_op
            if prepared:
                # Gives the run's slots back and stops its services, whatever happened.
                ended = cleanup_task(run, job_run).as_teardown(setups=prepared)
                for step_op in step_tasks.values():
                    step_op >> ended

        def group(group_id: str, runs: Any) -> Any:
            return task_group(group_id=group_id)(pipeline_run).partial(
                job_run=snapshot.output).expand(run=runs)

        groups = []
        if lanes == 1:
            groups.append(group("pipeline_run", planned))
        for lane in range(lanes if lanes > 1 else 0):
            # Airflow maps at most max_map_length instances per group: one group per slice.
            @task(task_id=f"plan_slice_{lane + 1}")
            def plan_slice(runs: list[dict[str, Any]], lane: int = lane
                           ) -> list[dict[str, Any]]:
                return runs[lane * max_map_length:(lane + 1) * max_map_length]

            group_id = "pipeline_run" if lane == 0 else f"pipeline_run_{lane + 1}"
            groups.append(group(group_id, plan_slice(planned)))

        # The job run's verdict: a teardown (a cancel never skips it, and clearing a run
        # clears it) that decides the DAG run's state (on_failure_fail_dagrun makes it
        # the one leaf) and runs whatever happened (all_done; a teardown's own rule
        # would skip it after a skipped snapshot, and the skipped leaves of a job run
        # cancelled early would make the DAG run a success). It fails when any task of
        # the job run failed or was skipped (FinalizeOperator).
        finished = FinalizeOperator(task_id="finalize", job=job).as_teardown(
            setups=snapshot, on_failure_fail_dagrun=True)
        finished.trigger_rule = TriggerRule.ALL_DONE
        for group in groups:
            group >> finished
    # The trigger form, attached once the tasks exist: every operator created inside a
    # DAG with params deep-copies and serializes them (4x the parse time for 200 DAGs).
    # The tasks read the trigger conf itself (request_for), never context["params"].
    dag.params.update(_params(job, grid, grid_shown))
    return dag


def run_limits(job: JobDefinition, settings: Settings) -> list[tuple[str, int]]:
    """The scopes that limit whole pipeline runs of ``job``: (scope, slots)."""
    limits = []
    if job.max_parallel_runs:
        limits.append((job_scope(job.dag_id), job.max_parallel_runs))
    if settings.max_parallel_pipeline_runs:
        limits.append((INSTALLATION, settings.max_parallel_pipeline_runs))
    return limits


def _parents(pipeline, key: str) -> list[str]:
    return [p for p in pipeline.steps[key].incoming if p in pipeline.steps]


def step_task(job: JobDefinition, step_uuid: str, task_id: str, run, job_run,
              settings: Settings, parallelism: int | None, services: bool = False,
              checkout_peers: list[str] | None = None, **kwargs):
    from ..operators.step import OrchestStepOperator

    step = job.pipeline.steps[step_uuid]
    if job.step_retries:
        # Explicit: the step's own failures get exactly step_retries more tries (the step
        # operator fails for good after them, whatever [core] default_task_retries says;
        # that setting still retries a lost worker's task).
        kwargs.setdefault("retries", max(job.step_retries, _default_task_retries()))
        kwargs.setdefault("retry_delay", timedelta(seconds=job.step_retry_delay))
    return OrchestStepOperator(
        task_id=task_id,
        task_display_name=step.title,
        pipeline=job.pipeline,
        step=step,
        project_uuid=job.project.uuid,
        run=run,
        job_run=job_run,
        checkout_peers=checkout_peers,
        data_dir=str(settings.data_dir),
        network_mode=settings.network_mode,
        docker_url=settings.docker_url,
        max_steps_parallelism=parallelism,
        step_user=settings.step_user,
        fail_fast=job.fail_fast,
        joins_run_namespace=services,
        step_retries=job.step_retries,
        map_index_template="{{ task.run['label'] }}",
        **kwargs,
    )


def _default_task_retries() -> int:
    from airflow.configuration import conf

    return conf.getint("core", "default_task_retries", fallback=0)
