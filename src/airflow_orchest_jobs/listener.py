"""Airflow's "mark failed" on a running Orchest job run is a cancel: record it.

Airflow's UI and REST API (``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` with
``state=failed``) call the ``on_dag_run_failed`` listener hook in the api-server, in
the request's transaction. For an Orchest DAG run that had not ended (its ``finalize``
had not finished), this writes the job-run cancel record (``core.jobstate``) that
``finalize`` and the views read: the job run ends ``failed`` in Airflow, ``cancelled`` in
the views, never ``success``. The hook's other callers (the scheduler failing a DAG run
on its own) are left alone. Registered by the plugin (``listeners``); loaded in every
Airflow process, so this module imports nothing heavy until the hook fires.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from .config import load_settings, max_map_length
from .core.jobstate import CancelRecord, record_cancel
from .core.layout import StoreLayout

log = logging.getLogger(__name__)

#: The DAG ids of the factory's DAGs (pipelines, job files).
ORCHEST_PREFIXES = ("orchest__", "orchest_job__")
#: How Airflow's API phrases the hook's message for a state set by a user.
MANUAL = "manually set"
FINALIZE = "finalize"
FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    if MANUAL not in str(msg or "") or not str(dag_run.dag_id).startswith(ORCHEST_PREFIXES):
        return
    try:
        record_marked_failed(dag_run)
    except Exception:  # never in the way of Airflow's own request
        log.exception("Could not record the cancel of %s %s", dag_run.dag_id, dag_run.run_id)


def record_marked_failed(dag_run: Any) -> bool:
    """Write the job-run cancel record if the job run had not ended; whether it did."""
    from airflow.models.log import Log
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    # The api-server's (the web layer): other processes never get here.
    from .web.data import run_index, task_records
    from .web.rows import build_rows

    session = object_session(dag_run)
    if session is None:
        return False
    # Reads only, never flushing the request's pending changes: the request's transaction
    # holds the database's write lock from its first flush to its commit (one writer on
    # SQLite), so nothing here may lengthen it or fail it.
    with session.no_autoflush:
        finalize = session.scalar(select(TI.state).where(
            TI.dag_id == dag_run.dag_id, TI.run_id == dag_run.run_id,
            TI.task_id == FINALIZE, TI.map_index == -1))
        if finalize is not None and str(finalize) in FINISHED:
            return False  # the job run had ended: marking it failed is no cancel
        at, by = _request_entry(session, dag_run, Log, select)
        settings = load_settings()
        root = StoreLayout(settings.store_dir).job_run(dag_run.dag_id, dag_run.run_id)
        failed_before: tuple[int, ...] = ()
        if at is not None:
            entries = run_index(root)
            records = [r for _, r in task_records(session, dag_run.dag_id, [dag_run.run_id])]
            rows = build_rows(entries, records, max_map_length=max_map_length(),
                              dag_cancelled_at=at)
            failed_before = tuple(r.position for r in rows if r.state == "failed")
    record = CancelRecord.now(by or "a user", "marked failed in Airflow",
                              failed_before=failed_before,
                              clear_number=int(getattr(dag_run, "clear_number", 0) or 0))
    if at is not None:
        record = CancelRecord(**{**record.__dict__, "at": at.isoformat()})
    record_cancel(root, record)
    log.info("Recorded the cancel of %s %s (%s)", dag_run.dag_id, dag_run.run_id, record.by)
    return True


def _request_entry(session: Any, dag_run: Any, log_model: Any, select: Any
                   ) -> tuple[Any, str]:
    """The audit log entry of the request marking the run failed (added to the session
    before the state changed, not flushed yet): its time and user."""
    pending = [entry for entry in session.new if isinstance(entry, log_model)
               and entry.event == "patch_dag_run" and entry.dag_id == dag_run.dag_id
               and entry.run_id == dag_run.run_id]
    if pending:
        entry = pending[-1]
        return entry.dttm, entry.owner or ""
    logged = session.execute(select(log_model.dttm, log_model.owner).where(
        log_model.dag_id == dag_run.dag_id, log_model.run_id == dag_run.run_id,
        log_model.event == "patch_dag_run").order_by(log_model.dttm.desc()).limit(1)).first()
    return (logged[0], logged[1] or "") if logged else (None, "")

