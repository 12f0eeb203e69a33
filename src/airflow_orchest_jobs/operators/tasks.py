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
from ..core.jobdef import JobDefinition
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
            return plan_runs(self.job.pipeline, request, JobRun.from_dict(job_run),
                             lanes=self.lanes, max_map_length=max_map_length())
        except OrchestError as exc:
            raise user_error(exc) from None


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
        if limits:
            admit_or_wait(settings, desc, limits, dag_run, ti)
        owner = step_owner(settings.step_user, os.geteuid(), os.getegid())
        check_out(settings, desc, owner, dag_run, ti, peers=[])
        if desc.job.has_services:
            start_services(settings, job, desc)

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


#: Task states that keep a job run from succeeding, and how the verdict names them.
NOT_SUCCESS = {"failed": "failed", "upstream_failed": "not started (upstream failed)",
               "skipped": "skipped"}


def job_run_verdict(states: dict[str, Any], task_ids: set[str], ignored: set[str]
                    ) -> str | None:
    """Why the job run did not succeed (None: it did), from its task states.

    ``states``: ``{task_id or task_id_mapindex: state}`` (Airflow's task-states answer);
    ``ignored``: the teardowns (their own outcome never decides, as in Airflow). A skipped
    task is not a success: a job run or pipeline run cancelled (marked failed) before
    the task ran, or a step that fail-fast stopped (its run has a failed step too).
    """
    found: dict[str, list[str]] = {}
    for key, state in states.items():
        task_id, _, index = key.rpartition("_")
        if key in task_ids or not index.isdigit() or task_id not in task_ids:
            task_id, index = key, ""
        if task_id in ignored or str(state) not in NOT_SUCCESS:
            continue
        found.setdefault(str(state), []).append(f"{task_id}[{index}]" if index else task_id)
    if not found:
        return None
    parts = []
    for state, keys in found.items():
        shown = ", ".join(sorted(keys)[:5]) + (", ..." if len(keys) > 5 else "")
        parts.append(f"{len(keys)} task(s) {NOT_SUCCESS[state]} ({shown})")
    hint = (" Skipped tasks: the job run or a pipeline run was cancelled (marked failed) "
            "before they ran, or fail-fast stopped them." if "skipped" in found else "")
    return "This job run did not succeed: " + "; ".join(parts) + "." + hint


class FinalizeOperator(BaseOperator):
    """The job run's last task (a teardown that decides the DAG run's state).

    Removes every container the job run left (steps of killed tasks, services) on every
    engine it used, gives back its run slots, marks its runs finished and applies the
    job's retention; then fails when any task of the job run did not succeed. The
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
        verdict = self._verdict(context)
        try:
            end_job_run(settings, job, job.dag_id, run_id)
            if root.is_dir():  # a job run that ended before its plan has no folder
                mark_finished(root)
            retired = retire(settings.store_dir, job.dag_id, job.max_retained_pipeline_runs,
                             settings.docker_url).as_dict()
        except OSError as exc:
            raise AirflowFailException(store_failure(settings.store_dir, exc)) from None
        if verdict:
            raise AirflowFailException(verdict)
        return retired

    def _verdict(self, context: Any) -> str | None:
        ti, dag = context["ti"], self.dag
        states = ti.get_task_states(dag_id=dag.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        teardowns = {t.task_id for t in dag.tasks if t.is_teardown}
        return job_run_verdict(states, set(dag.task_dict), teardowns | {self.task_id})


def store_failure(store_dir: Any, exc: OSError) -> str:
    """``finalize`` could not write the store: what, where and the fix (not a traceback)."""
    where = exc.filename or store_dir
    return (f"Cannot record the end of this job run in the store {store_dir} "
            f"({exc.strerror or exc} at {where}); its runs are not marked finished and "
            "retention did not run. Free space (or fix permissions) on that file system, "
            "or point [orchest_jobs] store_dir at one with room, then clear this task.")
