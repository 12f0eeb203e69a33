"""The two actions of the pipeline-run view, done with Airflow's own code in the api-server.

- **Re-run**: clears every task instance of the chosen map indexes (``prepare``, the
  steps, the run's ``cleanup``) and the ``finalize`` teardown, with Airflow's clear (the
  same calls as ``POST /api/v2/dags/{dag_id}/clearTaskInstances``); each run restarts
  from a fresh copy of the snapshot, in the same snapshot and frozen images.
- **Cancel run N**: what marking a DAG run failed does, for one map index: running step
  tasks become ``failed`` (Airflow then stops them and the step operator removes the
  container), waiting ones ``skipped``; the run's teardown still runs. Logged as
  ``orchest_cancel_pipeline_run`` in Airflow's audit log, which tells the views the run
  was cancelled rather than failed.

The caller checks ``requires_access_dag("PUT", DagAccessEntity.TASK_INSTANCE)`` first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..config import max_map_length
from .data import CANCEL_EVENT, RERUN_EVENT
from .rows import group_of

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
    _log(session, RERUN_EVENT, dag_run, user, {"positions": sorted(set(positions))})
    return len(tis)


def cancel(session, dag_run, position: int, user: str) -> int:
    """Stop the pipeline run at ``position``; returns how many task instances changed."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    dag = _dag_for(session, dag_run)
    group, map_index = group_of(position, max_map_length())
    # Logged first: the views compare task end times with this time.
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
