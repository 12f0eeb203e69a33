"""The event points: each task that decides an event writes its deliveries to the outbox.

Nothing here sends anything (the scheduler's delivery loop does), and nothing here fails
a task: a problem is one warning in the task's log. ``plan`` calls
:func:`job_run_started`, which also saves the job run's notification context (only when
a webhook is in force; every later point is then a file read, no Airflow call); the first
task of a pipeline run calls :func:`pipeline_run_started`; a step that failed for good
calls :func:`step_failed` (with fail-fast its run is decided there, so the alert goes
out at once); a cancelled step calls :func:`step_killed`; ``finalize`` calls
:func:`job_run_ended`, which sends what is still due (every run's end, the job's end).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import load_settings, max_map_length
from ..core.job import DagKind
from ..core.jobdef import JobDefinition
from ..core.jobstate import CANCELLED, JobRunVerdict
from ..core.layout import StoreLayout
from ..core.naming import step_task_ids
from ..core.notifications.events import (
    CRON,
    ONE_OFF,
    JobFacts,
    PipelineRunFacts,
    job_event,
    job_event_id,
    job_uuid_for,
    run_event_id,
)
from ..core.notifications.notices import (
    JobRunNotices,
    Subscriber,
    emit_run_event,
    run_outcomes,
)
from ..core.plan import read_run_index
from ..core.rundesc import JobRun, RunDescription, RunKey
from ..webhooks.config import in_force_in_task

log = logging.getLogger(__name__)

JOB_SUFFIX = ".job.json"


def _guarded(what: str):
    def wrap(func):
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                func(*args, **kwargs)
            except Exception as exc:  # notifications never fail a task
                log.warning("Webhook notifications: could not record %s (%s: %s); the "
                            "run goes on", what, type(exc).__name__, exc)
        return run
    return wrap


def job_facts(job: JobDefinition, run_id: str, total_runs: int, clear_number: int,
              number: int) -> JobFacts:
    """What every event of this job run says about the job (Orchest's one-off or cron)."""
    is_job = job.kind is DagKind.JOB
    kind = CRON if is_job and job.schedule.cron else ONE_OFF
    if is_job and job.source_files and job.source_files[0].name.endswith(JOB_SUFFIX):
        name = job.source_files[0].name[:-len(JOB_SUFFIX)]
    else:
        name = run_id  # a pipeline DAG's run is a one-off job of its own
    return JobFacts(project=job.project.name, project_uuid=job.project.uuid,
                    dag_id=job.dag_id, run_id=run_id, kind=kind,
                    job_uuid=job_uuid_for(job.dag_id) if is_job
                    else job_uuid_for(job.dag_id, run_id),
                    job_name=name,
                    pipeline_name=job.pipeline.name or str(job.pipeline.rel_path),
                    total_runs=total_runs, job_run_number=number, clear_number=clear_number,
                    step_titles={u: s.title for u, s in job.pipeline.steps.items()})


@_guarded("the job run's start")
def job_run_started(context: Mapping[str, Any], job: JobDefinition,
                    keys: Sequence[Mapping[str, Any]]) -> None:
    settings, dag_run = load_settings(), context["dag_run"]
    found = in_force_in_task(settings.webhooks)
    for problem in found.problems:
        log.warning("Webhook notifications: %s", problem)
    subscribers = [Subscriber(w.conn_id, w.subscriptions) for w in found.webhooks
                   if w.subscriptions]
    if not subscribers:
        return
    notices = JobRunNotices(settings.store_dir, job.dag_id, dag_run.run_id)
    existing = notices.load()
    number = existing[0].job_run_number if existing else notices.job_run_number()
    facts = job_facts(job, dag_run.run_id, len(keys),
                      int(getattr(dag_run, "clear_number", 0) or 0), number)
    notices.save(facts, subscribers)
    added = notices.emit(facts, subscribers, job_event(facts, "started"))
    log.info("Webhook notifications: %d webhook(s) in force; %d delivery(ies) queued",
             len(subscribers), len(added))


def _run(desc: RunDescription, failed_steps: Sequence[str] = ()) -> PipelineRunFacts:
    return PipelineRunFacts(position=desc.key.position, run_uuid=desc.run_uuid,
                            parameters=run_parameters(desc.definition),
                            failed_steps=tuple(failed_steps))


def run_parameters(definition: Path) -> dict[str, dict[str, Any]]:
    """The run's parameter values from its definition, Orchest's per-run shape."""
    try:
        doc = json.loads(definition.read_bytes())
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    if isinstance(doc.get("parameters"), dict) and doc["parameters"]:
        out["pipeline_parameters"] = dict(doc["parameters"])
    for step_uuid, step in (doc.get("steps") or {}).items():
        if isinstance(step, dict) and isinstance(step.get("parameters"), dict) \
                and step["parameters"]:
            out[str(step_uuid)] = dict(step["parameters"])
    return out


def _notices(store_dir: Path, dag_run: Any) -> tuple[JobRunNotices, Any] | None:
    notices = JobRunNotices(store_dir, dag_run.dag_id, dag_run.run_id)
    loaded = notices.load()
    if loaded is None:
        return None
    facts, subscribers = loaded
    clear = int(getattr(dag_run, "clear_number", 0) or 0)
    if clear != facts.clear_number:  # a cleared job run whose plan did not run again
        facts = JobFacts.from_dict({**facts.to_dict(), "clear_number": clear})
    return notices, (facts, subscribers)


@_guarded("the pipeline run's start")
def pipeline_run_started(store_dir: Path, desc: RunDescription, dag_run: Any) -> None:
    found = _notices(store_dir, dag_run)
    if found is None:
        return
    notices, (facts, subscribers) = found
    emit_run_event(notices, facts, subscribers, _run(desc), "started")


@_guarded("the pipeline run's failure")
def step_failed(store_dir: Path, desc: RunDescription, step_uuid: str, dag_run: Any) -> None:
    found = _notices(store_dir, dag_run)
    if found is None:
        return
    notices, (facts, subscribers) = found
    emit_run_event(notices, facts, subscribers, _run(desc, [step_uuid]), "failed")


@_guarded("the step's cancel")
def step_killed(store_dir: Path, desc: RunDescription, dag_run: Any) -> None:
    found = _notices(store_dir, dag_run)
    if found is not None:
        found[0].mark_killed(desc.key.position)


@_guarded("the job run's end")
def job_run_ended(context: Mapping[str, Any], job: JobDefinition,
                  verdict: JobRunVerdict) -> None:
    settings, dag_run, ti = load_settings(), context["dag_run"], context["ti"]
    found = _notices(settings.store_dir, dag_run)
    if found is None:
        return
    notices, (facts, subscribers) = found
    # finalize's verdict (cancel records, core.jobstate) says whether the user cancelled
    # the job run and which pipeline runs were cancelled rather than failed.
    cancelled = verdict.outcome == CANCELLED
    states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]
                                ).get(dag_run.run_id, {})
    outcomes = run_outcomes(states, max_map_length())
    root = StoreLayout(settings.store_dir).job_run(dag_run.dag_id, dag_run.run_id)
    job_run = JobRun(job_key="", job_run_key="", run_root=str(root), snapshot_id="",
                     pipeline_rel="", images={})
    task_steps = {task: uuid for uuid, task in step_task_ids(
        {u: s.title for u, s in job.pipeline.steps.items()}).items()}
    any_failed = False
    for entry in sorted(read_run_index(root), key=lambda e: int(e.get("position", 0))):
        key = RunKey.from_dict(entry)
        outcome, failed_tasks = outcomes.get(key.position, ("cancelled", []))
        if verdict.runs.get(key.position) == CANCELLED:
            outcome = "cancelled"
        elif outcome == "failed" and not notices.emitted(
                run_event_id(facts, key.position, "failed")) and (
                cancelled or notices.killed_marker(key.position).exists()):
            outcome = "cancelled"  # stopped by a cancel, not failed on its own
        any_failed = any_failed or outcome == "failed"
        failed_steps = [task_steps[t] for t in failed_tasks if t in task_steps]
        emit_run_event(notices, facts, subscribers,
                       _run(RunDescription(job=job_run, key=key), failed_steps), outcome,
                       sync=False)  # one sync for the batch, below
    notices.outbox.sync()
    if facts.kind == CRON:
        if not any_failed and not cancelled \
                and not notices.emitted(job_event_id(facts, "failed")):
            notices.emit(facts, subscribers, job_event(facts, "succeeded"))
        return
    what = "cancelled" if cancelled else "failed" if any_failed else "succeeded"
    notices.emit(facts, subscribers, job_event(facts, what))
