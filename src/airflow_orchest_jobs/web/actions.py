"""The actions of the pipeline-run view, done with Airflow's own code in the api-server.

- **Re-run**: clears every task instance of the chosen map indexes (``prepare``, the
  steps, the run's ``cleanup``) and the ``finalize`` teardown, with Airflow's clear (the
  same calls as ``POST /api/v2/dags/{dag_id}/clearTaskInstances``); each run restarts
  from a fresh copy of the snapshot, in the same snapshot and frozen images.
- **Cancel run N**: what marking a DAG run failed does, for one map index: running step
  tasks become ``failed`` (Airflow then stops them and the step operator removes the
  container), waiting ones ``skipped``; the run's teardown still runs. A cancel record
  in the job run's folder (``core.jobstate``), written first, tells ``finalize`` and the
  views the run was cancelled rather than failed: it does not fail the job run.
- **Cancel job run**: what marking the DAG run failed does (Airflow's own function), after
  a job-run cancel record: the job run ends ``failed`` in Airflow and ``cancelled`` in the
  views. Both cancels are also in Airflow's audit log.

The caller checks ``requires_access_dag("PUT", DagAccessEntity.TASK_INSTANCE)`` first
(``DagAccessEntity.RUN`` for cancelling the job run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..config import load_settings, max_map_length
from ..core.jobstate import CancelRecord, forget_cancels, record_cancel
from ..core.layout import StoreLayout
from .data import CANCEL_EVENT, CANCEL_JOB_RUN_EVENT, RERUN_EVENT
from .rows import RunRow, group_of

RUNNING = ("running", "deferred", "up_for_reschedule", "awaiting_input", "restarting")
FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")


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


def rerun(session, dag_run, positions: Sequence[int], user: str) -> int:
    """Clear the pipeline runs at ``positions`` of the run index; returns TIs cleared."""
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.state import DagRunState

    if not positions:
        return 0
    dag = _dag_for(session, dag_run)
    length = max_map_length()
    markers: list[Any] = []
    for position in sorted(set(positions)):
        group, map_index = group_of(position, length)
        markers += [(task_id, map_index) for task_id in dag.task_dict
                    if task_id.startswith(group + ".")]
    if "finalize" in dag.task_dict:
        markers.append("finalize")
    tis = dag.clear(dry_run=True, task_ids=markers, run_id=dag_run.run_id, session=session)
    clear_task_instances(list(tis), session, DagRunState.QUEUED)
    # Runs that run again are no longer cancelled, nor is their job run.
    forget_cancels(_root(dag_run), sorted(set(positions)), job_run=True)
    _log(session, RERUN_EVENT, dag_run, user, {"positions": sorted(set(positions))})
    return len(tis)


def _root(dag_run):
    return StoreLayout(load_settings().store_dir).job_run(dag_run.dag_id, dag_run.run_id)


def _clear_number(dag_run) -> int:
    return int(getattr(dag_run, "clear_number", 0) or 0)


def cancel(session, dag_run, row: RunRow, user: str) -> int:
    """Stop the pipeline run of ``row``; returns how many task instances changed.

    A run still running or waiting gets a cancel record (it ends ``cancelled`` and does
    not fail its job run); one that had failed already is only stopped (it stays failed).
    """
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    dag = _dag_for(session, dag_run)
    position = row.position
    group, map_index = group_of(position, max_map_length())
    # Recorded and logged first: the views compare task end times with this time.
    if row.state in ("running", "queued"):
        record_cancel(_root(dag_run), CancelRecord.now(
            user, "pipeline-run view", position=position, index=row.index,
            clear_number=_clear_number(dag_run)))
    _log(session, CANCEL_EVENT, dag_run, user, {"position": position}, group, map_index)
    tis = session.scalars(select(TI).where(
        TI.dag_id == dag_run.dag_id, TI.run_id == dag_run.run_id,
        TI.task_id.like(f"{group}.%"), TI.map_index == map_index)).all()
    changed = 0
    for ti in tis:
        task = dag.task_dict.get(ti.task_id)
        if task is None or task.is_teardown or ti.state in FINISHED:
            continue
        new = TaskInstanceState.FAILED if ti.state in RUNNING else TaskInstanceState.SKIPPED
        changed += bool(ti.set_state(new, session=session))
    return changed


def cancel_job_run(session, dag_run, rows: Sequence[RunRow], user: str) -> int:
    """Cancel the whole job run: a job-run cancel record, then what Airflow's "mark
    failed" does (running tasks ``failed``, so Airflow stops them; waiting ones
    ``skipped``; the teardowns run and ``finalize`` fails the DAG run), task instance by
    task instance: Airflow's own marks every instance of a running mapped task failed,
    finished pipeline runs included. Returns how many task instances changed."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    dag = _dag_for(session, dag_run)
    record_cancel(_root(dag_run), CancelRecord.now(
        user, "pipeline-run view", clear_number=_clear_number(dag_run),
        failed_before=tuple(r.position for r in rows if r.state == "failed")))
    _log(session, CANCEL_JOB_RUN_EVENT, dag_run, user, {})
    changed = 0
    for ti in session.scalars(select(TI).where(TI.dag_id == dag_run.dag_id,
                                               TI.run_id == dag_run.run_id)).all():
        task = dag.task_dict.get(ti.task_id)
        if task is None or task.is_teardown or ti.state in FINISHED:
            continue
        new = TaskInstanceState.FAILED if ti.state in RUNNING else TaskInstanceState.SKIPPED
        changed += bool(ti.set_state(new, session=session))
    return changed
