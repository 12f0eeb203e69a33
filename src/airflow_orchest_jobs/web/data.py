"""What the job views read: the run index and run folders in the store, Airflow's database.

Runs inside the api-server (Airflow is imported in the functions that need it). Each
request reads the DAG run's task instances in ONE query (columns only), whatever the
number of pipeline runs; run indexes and pipeline definitions are cached per file
version, so a 10,000-run table is parsed once.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.contract import notebook_html
from ..core.jobstate import JobStates
from ..core.layout import RUN_DEFINITION, StoreLayout, run_folder
from ..core.naming import step_task_ids
from ..core.plan import RUN_INDEX
from ..core.snapshot.store import SnapshotStore
from .rows import GROUP, TaskRecord

#: The Log event "cancel run N" writes (Airflow's audit log shows it too).
CANCEL_EVENT = "orchest_cancel_pipeline_run"
RERUN_EVENT = "orchest_rerun_pipeline_runs"
ORCHEST_TAG = "orchest"


@dataclass(frozen=True)
class StepInfo:
    uuid: str
    title: str
    task_id: str
    file_path: str
    #: The executed notebook's HTML inside the run's project copy, or None.
    notebook_html: str | None


class _FileCache:
    """Parsed JSON per (path, mtime, size): run indexes do not change once written."""

    def __init__(self, size: int = 64):
        self._items: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def load(self, path: Path) -> Any:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            value = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_FILES = _FileCache()


def run_index(root: Path) -> list[dict[str, Any]]:
    """The DAG run's pipeline runs in map order; [] before planning ran."""
    found = _FILES.load(root / RUN_INDEX)
    return list(found) if isinstance(found, list) else []


def pipeline_rel(store_dir: Path, dag_id: str, run_id: str, fallback: str | None) -> str | None:
    """The pipeline file inside the project, from the job state of this DAG run."""
    states = JobStates(store_dir)
    for key in (dag_id, f"{dag_id}/{run_id}"):
        try:
            state = states.get(key)
        except Exception:  # an unreadable state: the views still work without it
            state = None
        if state is not None and state.pipeline:
            return state.pipeline
    return fallback


def pipeline_steps(root: Path, entries: Sequence[dict[str, Any]], rel: str | None
                   ) -> list[StepInfo]:
    """The steps (in pipeline order) with their task ids, from a run's ``pipeline.json``."""
    if not entries:
        return []
    doc = _FILES.load(run_folder(root, int(entries[0]["index"])) / RUN_DEFINITION)
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), dict):
        return []
    steps = {k: v for k, v in doc["steps"].items() if isinstance(v, dict)}
    ids = step_task_ids({k: str(v.get("title") or k) for k, v in steps.items()})
    out = []
    for key, step in steps.items():
        file_path = str(step.get("file_path") or "")
        html = (notebook_html(rel, file_path)
                if rel is not None and file_path.lower().endswith(".ipynb") else None)
        out.append(StepInfo(key, str(step.get("title") or key), ids[key], file_path, html))
    return out


def pipeline_uuid(root: Path, entries: Sequence[dict[str, Any]]) -> str | None:
    if not entries:
        return None
    doc = _FILES.load(run_folder(root, int(entries[0]["index"])) / RUN_DEFINITION)
    return str(doc.get("uuid")) if isinstance(doc, dict) and doc.get("uuid") else None


def is_orchest_dag(session, dag_id: str) -> bool:
    from airflow.models.dag import DagTag
    from sqlalchemy import select

    return session.scalar(select(DagTag.dag_id).where(
        DagTag.dag_id == dag_id, DagTag.name == ORCHEST_TAG).limit(1)) is not None


def get_dag_run(session, dag_id: str, run_id: str):
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    return session.scalar(select(DagRun).where(DagRun.dag_id == dag_id,
                                               DagRun.run_id == run_id))


def task_records(session, dag_id: str, run_ids: Iterable[str]) -> list[tuple[str, TaskRecord]]:
    """(run id, record) of every mapped task instance of the runs' groups: one query."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    ids = list(run_ids)
    query = select(TI.run_id, TI.task_id, TI.map_index, TI.state, TI.start_date, TI.end_date,
                   TI.try_number).where(TI.dag_id == dag_id, TI.map_index >= 0,
                                        TI.task_id.like(f"{GROUP}%"))
    query = query.where(TI.run_id == ids[0]) if len(ids) == 1 else query.where(
        TI.run_id.in_(ids))
    return [(run_id, TaskRecord(task_id, map_index, None if state is None else str(state),
                                start, end, try_number or 0))
            for run_id, task_id, map_index, state, start, end, try_number
            in session.execute(query)]


def cancel_times(session, dag_id: str, run_id: str
                 ) -> tuple[datetime | None, dict[int, datetime]]:
    """When the DAG run was last marked failed (unless a later patch changed its state),
    and per run position when "cancel run N" last stopped it: from Airflow's audit log."""
    from airflow.models.log import Log
    from sqlalchemy import select

    last_patch: tuple[datetime, Any] | None = None
    per_run: dict[int, datetime] = {}
    rows = session.execute(select(Log.dttm, Log.event, Log.extra).where(
        Log.dag_id == dag_id, Log.run_id == run_id,
        Log.event.in_(["patch_dag_run", CANCEL_EVENT])))
    for dttm, event, extra in rows:
        if dttm is None:
            continue
        try:
            data = json.loads(extra or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            continue
        if event == "patch_dag_run":
            if "state" in data and (last_patch is None or dttm > last_patch[0]):
                last_patch = (dttm, data["state"])
        elif isinstance(data.get("position"), int):
            position = data["position"]
            if position not in per_run or dttm > per_run[position]:
                per_run[position] = dttm
    dag_time = last_patch[0] if last_patch and last_patch[1] == "failed" else None
    return dag_time, per_run


def view_info(session, dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The ``x-orchest`` annotation ``factory._params`` puts on the DAG's params, per DAG."""
    from airflow.models.serialized_dag import SerializedDagModel

    out: dict[str, dict[str, Any]] = {}
    if not dag_ids:
        return out
    for serialized in SerializedDagModel.get_latest_serialized_dags(dag_ids=list(dag_ids),
                                                                    session=session):
        cached = _INFO.get(serialized.dag_hash)
        if cached is None:
            cached = _info_from(serialized.data or {})
            _INFO[serialized.dag_hash] = cached
            if len(_INFO) > 1024:
                _INFO.pop(next(iter(_INFO)))
        out[serialized.dag_id] = cached
    return out


_INFO: dict[str, dict[str, Any]] = {}


def _info_from(data: dict[str, Any]) -> dict[str, Any]:
    params = (data.get("dag") or {}).get("params") or []
    for name, param in params if isinstance(params, list) else []:
        if name != "parameters" or not isinstance(param, dict):
            continue
        schema = param.get("schema") or {}
        schema = schema.get("__var", schema) if isinstance(schema, dict) else {}
        info = schema.get("x-orchest") if isinstance(schema, dict) else None
        if isinstance(info, dict):
            return dict(info.get("__var", info))
    return {}


def orchest_dags(session, readable: set[str]) -> list[Any]:
    """The Orchest DAGs (tag ``orchest``) the user may read, not stale."""
    from airflow.models.dag import DagModel, DagTag
    from sqlalchemy import select

    query = (select(DagModel).join(DagTag, DagTag.dag_id == DagModel.dag_id)
             .where(DagTag.name == ORCHEST_TAG, DagModel.dag_id.in_(readable),
                    DagModel.is_stale.is_(False)).order_by(DagModel.dag_id))
    return list(session.scalars(query))


def tags_of(session, dag_ids: Sequence[str]) -> dict[str, list[str]]:
    from airflow.models.dag import DagTag
    from sqlalchemy import select

    out: dict[str, list[str]] = {d: [] for d in dag_ids}
    for dag_id, name in session.execute(select(DagTag.dag_id, DagTag.name).where(
            DagTag.dag_id.in_(list(dag_ids)))):
        out.setdefault(dag_id, []).append(name)
    return out


def latest_runs(session, dag_ids: Sequence[str], per_dag: int) -> dict[str, list[Any]]:
    """The newest ``per_dag`` DAG runs of each DAG (one query, ordered by run_after)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import func, select

    rank = func.row_number().over(partition_by=DagRun.dag_id,
                                  order_by=DagRun.run_after.desc()).label("rank")
    inner = select(DagRun.id, rank).where(DagRun.dag_id.in_(list(dag_ids))).subquery()
    query = (select(DagRun).join(inner, inner.c.id == DagRun.id)
             .where(inner.c.rank <= per_dag).order_by(DagRun.run_after.desc()))
    out: dict[str, list[Any]] = {d: [] for d in dag_ids}
    for run in session.scalars(query):
        out[run.dag_id].append(run)
    return out


def snapshots(store_dir: Path) -> dict[str, Any]:
    """Every snapshot's header (id, created, files, bytes) by id: one line per manifest."""
    root = StoreLayout(store_dir).snapshots
    if not os.path.isdir(root):
        return {}
    try:
        return {s.id: s for s in SnapshotStore(root).list()}
    except Exception:
        return {}
