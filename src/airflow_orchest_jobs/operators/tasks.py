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

from ..core.errors import OrchestError
from ..core.jobdef import JobDefinition
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
        from ..core.plan import plan_runs
        from ..core.rundesc import JobRun
        from .snapshot import max_map_length, request_for

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

    @task(task_id="prepare", map_index_template="{{ orchest_run_label }}",
          retries=PREPARE_RETRIES, retry_delay=PREPARE_RETRY_DELAY)
    def prepare(run: dict[str, Any], job_run: dict[str, Any], dag_run=None, ti=None) -> None:
        from airflow.sdk import get_current_context

        from ..config import load_settings
        from ..core.rundesc import describe
        from ..core.settings import step_owner
        from .run import admit_or_wait, check_out, start_services

        desc = describe(run, job_run)
        get_current_context()["orchest_run_label"] = desc.label  # names the map index
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

    @task(task_id="cleanup", map_index_template="{{ orchest_run_label }}")
    def cleanup(run: dict[str, Any], job_run: dict[str, Any]) -> None:
        from airflow.sdk import get_current_context

        from ..config import load_settings
        from ..core.rundesc import describe
        from .run import end_run

        desc = describe(run, job_run)
        get_current_context()["orchest_run_label"] = desc.label
        end_run(load_settings(), desc)

    return cleanup(run, job_run)


class FinalizeOperator(BaseOperator):
    """Mark the DAG run's runs finished, then apply the job's retention (a teardown)."""

    ui_color = "#e8f4fd"
    template_fields: Sequence[str] = ()

    def __init__(self, *, job: JobDefinition, **kwargs: Any):
        super().__init__(**kwargs)
        self.job = job

    def execute(self, context: Any) -> dict[str, Any]:
        from ..config import load_settings
        from ..core.retention import mark_finished
        from ..retire import retire
        from .run import end_job_run
        from .snapshot import run_root

        settings, job, run_id = load_settings(), self.job, context["dag_run"].run_id
        end_job_run(settings, job, job.dag_id, run_id)
        mark_finished(run_root(settings, job.dag_id, run_id))
        return retire(settings.store_dir, job.dag_id, job.max_retained_pipeline_runs,
                      settings.docker_url).as_dict()
