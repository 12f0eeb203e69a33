"""The plain Airflow tasks of an Orchest DAG, beside the operators they work with.

``plan`` (expand the grid, write each run's definition), a run's ``prepare`` (slot,
checkout, services; only for runs with services or run limits) and ``cleanup``
teardown, and the job run's ``finalize`` teardown. Each is built inside a DAG by the
factory; the work lives in the core and in :mod:`.run`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from ..config import load_settings, max_map_length
from ..core.errors import OrchestError
from ..core.failfast import FailedRun, failed_run, mark_run_failed
from ..core.jobdef import JobDefinition
from ..core.jobstate import JobRunVerdict, job_run_verdict, read_cancels
from ..core.layout import StoreLayout
from ..core.plan import plan_runs
from ..core.rundesc import JobRun, describe
from ..core.settings import step_owner
from .context import MAP_INDEX_TEMPLATE, name_map_index
from .errors import user_error

#: The snapshot operator's task id: the plan reads the job run it returns.
SNAPSHOT_TASK_ID = "snapshot"


class PlanOperator(BaseOperator):
    """Expand the grid, write each selected run's definition, return the run keys.

    A plain operator rather than a ``@task``: the DAG processor builds one per DAG on
    every parse, and a decorated task costs several times as much to build and serialize.
    """

    ui_color = "#e8f4fd"
    template_fields: Sequence[str] = ()

    def __init__(self, *, job: JobDefinition, lanes: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.job = job
        self.lanes = lanes

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from .snapshot import request_for

        job_run = context["ti"].xcom_pull(task_ids=SNAPSHOT_TASK_ID)
        request = request_for(self.job, context["dag_run"].conf)
        try:
            keys = plan_runs(self.job.pipeline, request, JobRun.from_dict(job_run),
                             lanes=self.lanes, max_map_length=max_map_length())
        except OrchestError as exc:
            raise user_error(exc) from None
        from .notify import job_run_started

        job_run_started(context, self.job, keys)  # webhooks: writes the outbox only
        return keys


#: Retries of a run's ``prepare`` (every part of it is idempotent: the slot is the run's
#: own, the copy is made once, services replace their leftovers). Airflow 3.3's scheduler
#: can fail a rescheduled task whose previous try's "success" event arrives after the
#: next try was queued (same try number; apache/airflow#71172, open): a retry goes
#: through with a new try number. User errors fail at once (``user_error``: no retry).
PREPARE_RETRIES, PREPARE_RETRY_DELAY = 2, timedelta(seconds=2)


def prepare_task(job: JobDefinition, run, job_run, limits: list[tuple[str, int]]):
    """Wait for a run slot (if limited), check the snapshot out, start the services."""
    from airflow.sdk import task

    @task(task_id="prepare", map_index_template=MAP_INDEX_TEMPLATE,
          retries=PREPARE_RETRIES, retry_delay=PREPARE_RETRY_DELAY)
    def prepare(run: dict[str, Any], job_run: dict[str, Any], dag_run=None, ti=None) -> None:
        from airflow.sdk import get_current_context

        from .run import admit_or_wait, check_out, start_services

        desc = describe(run, job_run)
        name_map_index(get_current_context(), desc.label)
        settings = load_settings()
        generation = int(getattr(dag_run, "clear_number", 0) or 0)
        if desc.job.stop_on_first_failure:
            failed = failed_run(desc.job.run_root, generation)
            if failed is not None and failed.index != desc.key.index:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(f"Not started: {failed.describe()}, and the job "
                                           "stops at its first failed pipeline run "
                                           "(stop_on_first_failure)")
        if limits:
            admit_or_wait(settings, desc, limits, dag_run, ti)
        owner = step_owner(settings.step_user, os.geteuid(), os.getegid())
        check_out(settings, desc, owner, dag_run, ti, peers=[])
        if desc.job.has_services:
            try:
                start_services(settings, job, desc)
            except Exception:
                if desc.job.stop_on_first_failure:
                    mark_run_failed(desc.job.run_root, FailedRun(
                        desc.key.index, desc.label, "prepare (services)", generation))
                raise

    return prepare(run, job_run)


def cleanup_task(run, job_run):
    """The run's teardown: stop its services, give its run slots back."""
    from airflow.sdk import task

    @task(task_id="cleanup", map_index_template=MAP_INDEX_TEMPLATE)
    def cleanup(run: dict[str, Any], job_run: dict[str, Any]) -> None:
        from airflow.sdk import get_current_context

        from .run import end_run

        desc = describe(run, job_run)
        name_map_index(get_current_context(), desc.label)
        end_run(load_settings(), desc)

    return cleanup(run, job_run)


class FinalizeOperator(BaseOperator):
    """The job run's last task (a teardown that decides the DAG run's state).

    Removes every container the job run left (steps of killed tasks, services) on every
    engine it used, gives back its run slots, marks its runs finished and applies the
    job's retention; then decides the job run as Orchest did
    (:func:`~airflow_orchest_jobs.core.jobstate.job_run_verdict`): it fails when a
    pipeline run failed, a task outside the runs did not succeed, or the job run was
    cancelled; a pipeline run cancelled on its own does not fail it. The
    factory makes it the DAG's one leaf (``on_failure_fail_dagrun``) that runs whatever
    happened (``all_done``): Airflow's own rule would call a job run cancelled before its
    steps started a success (every leaf ``skipped``).
    """

    ui_color = "#e8f4fd"
    template_fields: Sequence[str] = ()

    def __init__(self, *, job: JobDefinition, **kwargs: Any):
        super().__init__(**kwargs)
        self.job = job

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from ..core.retention import mark_finished
        from ..engine.retire import retire
        from .run import end_job_run, remove_job_run_containers

        settings, job, run_id = load_settings(), self.job, context["dag_run"].run_id
        root = StoreLayout(settings.store_dir).job_run(job.dag_id, run_id)
        try:
            removed = remove_job_run_containers(settings, f"{job.dag_id}/{run_id}", root)
        except Exception as exc:  # the engine gone: the run's own outcome still decides
            self.log.warning("Could not look for containers the job run left on %s: %s",
                             settings.docker_url, exc)
            removed = 0
        if removed:
            self.log.info("Removed %d container(s) the job run left (cancelled or killed "
                          "tasks)", removed)
        verdict = self._verdict(context, root)
        self.log.info("Job run %s: %s (pipeline runs: %s)", run_id, verdict.outcome,
                      _counted(verdict.runs.values()) or "none")
        try:
            end_job_run(settings, job, job.dag_id, run_id)
            if root.is_dir():  # a job run that ended before its plan has no folder
                mark_finished(root)
            retired = retire(settings.store_dir, job.dag_id, job.max_retained_pipeline_runs,
                             settings.docker_url).as_dict()
        except OSError as exc:
            raise AirflowFailException(store_failure(settings.store_dir, exc)) from None
        from .notify import job_run_ended

        job_run_ended(context, job, verdict)  # webhooks: writes the outbox only
        if verdict.message:
            self.log.error("%s", verdict.message)  # the why, as a line of the task log
            raise AirflowFailException(verdict.message)
        return {**retired, "outcome": verdict.outcome}

    def _verdict(self, context: Any, root: Any) -> JobRunVerdict:
        ti, dag = context["ti"], self.dag
        states = ti.get_task_states(dag_id=dag.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        teardowns = {t.task_id for t in dag.tasks if t.is_teardown}
        clear_number = int(getattr(context["dag_run"], "clear_number", 0) or 0)
        return job_run_verdict(states, set(dag.task_dict), teardowns | {self.task_id},
                               max_map_length=max_map_length(),
                               cancels=read_cancels(root, clear_number))


def _counted(outcomes: Any) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))


def store_failure(store_dir: Any, exc: OSError) -> str:
    """``finalize`` could not write the store: what, where and the fix (not a traceback)."""
    where = exc.filename or store_dir
    return (f"Cannot record the end of this job run in the store {store_dir} "
            f"({exc.strerror or exc} at {where}); its runs are not marked finished and "
            "retention did not run. Free space (or fix permissions) on that file system, "
            "or point [orchest_jobs] store_dir at one with room, then clear this task.")
