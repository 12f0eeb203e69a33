"""The actions of the pipeline-run view.

- **Re-run**: Airflow's public ``POST /api/v2/dags/{dag_id}/clearTaskInstances``, as
  the requesting user (``web.airflowapi``): every task instance of the chosen map
  indexes (``prepare``, the steps, the run's ``cleanup``) and the ``finalize`` teardown,
  as ``[task_id, map_index]`` pairs, the DAG run set queued. Airflow checks the user's
  permission and writes the audit log entry (``post_clear_task_instances``). Each run
  restarts from a fresh copy of the snapshot, in the same snapshot and frozen images.
- **Cancel run N**: what marking a DAG run failed does, for one map index: running step
  tasks become ``failed`` (Airflow then stops them and the step operator removes the
  container), waiting ones ``skipped``; the run's teardown still runs. A cancel record
  in the job run's folder (``core.jobstate``), written first, tells ``finalize`` and the
  views the run was cancelled rather than failed: it does not fail the job run.
- **Cancel job run**: what marking the DAG run failed does, task instance by task
  instance, after a job-run cancel record: the job run ends ``failed`` in Airflow and
  ``cancelled`` in the views. Both cancels are also in Airflow's audit log.

The cancels stay in the api-server's session: Airflow's public ``PATCH`` of a task
instance, after setting its state, clears every ``failed``/``upstream_failed`` instance
of the task's downstream tasks in the DAG run, at every map index, so another pipeline
run's failed steps would run again (see ``compat.py``). The caller checks
``requires_access_dag("PUT", DagAccessEntity.TASK_INSTANCE)`` first
(``DagAccessEntity.RUN`` for cancelling the job run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from ..config import load_settings, max_map_length
from ..core.jobstate import CancelRecord, forget_cancels, record_cancel
from ..core.layout import StoreLayout
from .airflowapi import AirflowApi
from .data import CANCEL_EVENT, CANCEL_JOB_RUN_EVENT
from .rows import RunRow, group_of

RUNNING = ("running", "deferred", "up_for_reschedule", "awaiting_input", "restarting")
FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")
#: The job run's verdict (a teardown): cleared with every re-run.
FINALIZE = "finalize"


def _dag_for(session, dag_run):
    from airflow.models.dagbag import DBDagBag

    dag = DBDagBag().get_dag_for_run(dag_run, session=session)
    if dag is None:
        raise LookupError(f"no serialized DAG for {dag_run.dag_id} {dag_run.run_id}")
    return dag


def _log(session, event: str, dag_run, user: str, extra: dict[str, Any],
         task_id: str | None = None, map_index: int | None = None) -> None:
    from airflow.models.log import Log

    entry = Log(event=event, dag_id=dag_run.dag_id, run_id=dag_run.run_id, owner=user,
                owner_display_name=user, extra=json.dumps(extra), task_id=task_id)
    entry.map_index = map_index
    session.add(entry)
    session.flush()


def clear_markers(rows: Iterable[RunRow], length: int) -> list[Any]:
    """The ``task_ids`` of the clear: ``[task_id, map_index]`` of every task instance of
    the runs (their rows hold them all: a mapped group's instances exist together), then
    ``finalize``."""
    markers: list[Any] = []
    for position, row in sorted({r.position: r for r in rows}.items()):
        group, map_index = group_of(position, length)
        markers += [[f"{group}.{task}", map_index] for task in sorted(row.tasks)]
    return [*markers, FINALIZE]


def rerun(api: AirflowApi, dag_id: str, run_id: str, rows: Sequence[RunRow]) -> int:
    """Clear the pipeline runs of ``rows`` as the user; returns the TIs Airflow cleared."""
    if not rows:
        return 0
    cleared = api.call("POST", f"/dags/{quote(dag_id, safe='')}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": run_id, "task_ids": clear_markers(rows, max_map_length()),
        "only_failed": False, "only_running": False, "reset_dag_runs": True,
        "include_upstream": False, "include_downstream": False, "include_future": False,
        "include_past": False, "run_on_latest_version": False})
    # Runs that run again are no longer cancelled, nor is their job run.
    forget_cancels(_root(dag_id, run_id), sorted({r.position for r in rows}), job_run=True)
    return int(cleared.get("total_entries", 0))


def _root(dag_id: str, run_id: str):
    """The job run's folder in the store (its cancel records)."""
    return StoreLayout(load_settings().store_dir).job_run(dag_id, run_id)


def _clear_number(dag_run) -> int:
    return int(getattr(dag_run, "clear_number", 0) or 0)


def _stop(session, dag, tis) -> int:
    """What Airflow's "mark failed" does to each unfinished task instance: running ones
    ``failed`` (Airflow stops them), waiting ones ``skipped``; teardowns left to run.
    Returns how many changed."""
    from airflow.utils.state import TaskInstanceState

    changed = 0
    for ti in tis:
        task = dag.task_dict.get(ti.task_id)
        if task is None or task.is_teardown or ti.state in FINISHED:
            continue
        new = TaskInstanceState.FAILED if ti.state in RUNNING else TaskInstanceState.SKIPPED
        changed += bool(ti.set_state(new, session=session))
    return changed


def cancel(session, dag_run, row: RunRow, user: str) -> int:
    """Stop the pipeline run of ``row``; returns how many task instances changed.

    A run still running or waiting gets a cancel record (it ends ``cancelled`` and does
    not fail its job run); one that had failed already is only stopped (it stays failed).
    """
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    dag = _dag_for(session, dag_run)
    position = row.position
    group, map_index = group_of(position, max_map_length())
    # Recorded and logged first: the views compare task end times with this time.
    if row.state in ("running", "queued"):
        record_cancel(_root(dag_run.dag_id, dag_run.run_id), CancelRecord.now(
            user, "pipeline-run view", position=position, index=row.index,
            clear_number=_clear_number(dag_run)))
    _log(session, CANCEL_EVENT, dag_run, user, {"position": position}, group, map_index)
    return _stop(session, dag, session.scalars(select(TI).where(
        TI.dag_id == dag_run.dag_id, TI.run_id == dag_run.run_id,
        TI.task_id.like(f"{group}.%"), TI.map_index == map_index)).all())


def cancel_job_run(session, dag_run, rows: Sequence[RunRow], user: str) -> int:
    """Cancel the whole job run: a job-run cancel record, then what Airflow's "mark
    failed" does (running tasks ``failed``, so Airflow stops them; waiting ones
    ``skipped``; the teardowns run and ``finalize`` fails the DAG run), task instance by
    task instance: Airflow's own marks every instance of a running mapped task failed,
    finished pipeline runs included. Returns how many task instances changed."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    dag = _dag_for(session, dag_run)
    record_cancel(_root(dag_run.dag_id, dag_run.run_id), CancelRecord.now(
        user, "pipeline-run view", clear_number=_clear_number(dag_run),
        failed_before=tuple(r.position for r in rows if r.state == "failed")))
    _log(session, CANCEL_JOB_RUN_EVENT, dag_run, user, {})
    return _stop(session, dag, session.scalars(select(TI).where(
        TI.dag_id == dag_run.dag_id, TI.run_id == dag_run.run_id)).all())
