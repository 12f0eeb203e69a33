"""``project:cron-job:paused`` / ``unpaused``: seen by the scheduler's delivery loop.

Reads the cron-job DAGs' ``is_paused`` (Airflow's metadata DB; the loop runs in the
scheduler), compares with the record (``core.notifications.pauses``) and writes one
outbox delivery per change and subscribed webhook. The payload's job facts come from the
DAG: its ``project:`` tag, its display name (``<pipeline> · job <name>``) and the grid
size the factory annotated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..core.annotation import read_annotation
from ..core.notifications.events import cron_job_event
from ..core.notifications.outbox import Delivery, Outbox
from ..core.notifications.pauses import PauseRecord, changes
from ..core.notifications.webhook import delivery_id
from ..core.project import project_uuid
from .config import in_force_on_server

JOB_PREFIX = "orchest_job__"
CRON_TIMETABLE = "OrchestCronTimetable"


def cron_job_pauses(session: Any) -> dict[str, bool]:
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    rows = session.execute(select(DagModel.dag_id, DagModel.is_paused, DagModel.timetable_type)
                           .where(DagModel.dag_id.startswith(JOB_PREFIX),
                                  DagModel.is_stale.is_(False)))
    return {dag_id: bool(paused) for dag_id, paused, kind in rows
            if str(kind or "").endswith(CRON_TIMETABLE)}


def _facts(session: Any, dag_id: str) -> dict[str, Any]:
    from airflow.models.dag import DagModel, DagTag
    from sqlalchemy import select

    model = session.get(DagModel, dag_id)
    display = str(getattr(model, "dag_display_name", "") or dag_id)
    pipeline, _, job = display.rpartition(" · job ")
    tags = session.scalars(select(DagTag.name).where(DagTag.dag_id == dag_id))
    project = next((t[len("project:"):] for t in tags if t.startswith("project:")), "")
    info = _annotation(session, dag_id)
    return {"project": project or str(info.get("project", "")),
            "project_uuid": project_uuid(project) if project else "",
            "job_name": job or dag_id, "pipeline_name": pipeline or display,
            "total_runs": int(info.get("grid_size") or 0)}


def _annotation(session: Any, dag_id: str) -> dict[str, Any]:
    """The ``x-orchest`` facts the factory puts on the DAG's ``parameters`` param."""
    from airflow.models.serialized_dag import SerializedDagModel

    found = SerializedDagModel.get_latest_serialized_dags(dag_ids=[dag_id], session=session)
    for serialized in found:
        info = read_annotation(serialized.data or {})
        if info:
            return info
    return {}


def check_pauses(store_dir: Path, setting: tuple[str, ...]) -> int:
    """Record pause changes of cron jobs; the deliveries written."""
    from airflow.utils.session import create_session

    record = PauseRecord(store_dir)
    with create_session() as session:
        current = cron_job_pauses(session)
        new_record, found = changes(record.load(), current)
        written = 0
        if found:
            hooks = in_force_on_server(setting).webhooks
            outbox, now = Outbox(store_dir), time.time()
            for dag_id, paused, serial in found:
                facts = _facts(session, dag_id)
                event = cron_job_event(dag_id=dag_id, paused=paused, serial=serial, **facts)
                for hook in hooks:
                    if hook.subscribed(event["type"], facts["project"], dag_id):
                        written += outbox.add(Delivery(
                            delivery_id(event["uuid"], hook.conn_id), event["uuid"],
                            event["type"], hook.conn_id, event, now, now))
    record.save(new_record)
    return written
