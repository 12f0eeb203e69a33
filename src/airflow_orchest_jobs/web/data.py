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

from ..core.annotation import read_annotation
from ..core.contract import notebook_html
from ..core.jobstate import Cancels, JobStates, read_cancels
from ..core.layout import RUN_DEFINITION, StoreLayout, run_folder
from ..core.naming import step_task_ids
from ..core.plan import RUN_INDEX
from ..core.snapshot.store import SnapshotStore
from .rows import GROUP, TaskRecord

#: The Log events "cancel run N" and "cancel job run" write (Airflow's audit log shows
#: them too); the cancel records in the job run's folder are what counts.
CANCEL_EVENT = "orchest_cancel_pipeline_run"
CANCEL_JOB_RUN_EVENT = "orchest_cancel_job_run"
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


def task_records(session, dag_id: str, run_ids: Iterable[str] | None
                 ) -> list[tuple[str, TaskRecord]]:
    """(run id, record) of every mapped task instance of the runs' groups: one query
    (``run_ids`` None: of every DAG run of the DAG)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    query = select(TI.run_id, TI.task_id, TI.map_index, TI.state, TI.start_date, TI.end_date,
                   TI.try_number).where(TI.dag_id == dag_id, TI.map_index >= 0,
                                        TI.task_id.like(f"{GROUP}%"))
    if run_ids is not None:
        ids = list(run_ids)
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
    return many_cancel_times(session, dag_id, [run_id]).get(run_id, (None, {}))


def many_cancel_times(session, dag_id: str, run_ids: Sequence[str]
                      ) -> dict[str, tuple[datetime | None, dict[int, datetime]]]:
    """:func:`cancel_times` of several DAG runs of one DAG, in one query."""
    from airflow.models.log import Log
    from sqlalchemy import select

    patches: dict[str, tuple[datetime, Any]] = {}
    per_run: dict[str, dict[int, datetime]] = {}
    query = select(Log.run_id, Log.dttm, Log.event, Log.extra).where(
        Log.dag_id == dag_id,
        Log.event.in_(["patch_dag_run", CANCEL_EVENT, CANCEL_JOB_RUN_EVENT]))
    if len(run_ids) == 1:
        query = query.where(Log.run_id == run_ids[0])
    for run_id, dttm, event, extra in session.execute(query):
        if dttm is None or run_id is None:
            continue
        try:
            data = json.loads(extra or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            continue
        if event == CANCEL_JOB_RUN_EVENT:
            data = {"state": "failed"}  # the view's "cancel job run" marks it failed
        if event in ("patch_dag_run", CANCEL_JOB_RUN_EVENT):
            last = patches.get(run_id)
            if "state" in data and (last is None or dttm > last[0]):
                patches[run_id] = (dttm, data["state"])
        elif isinstance(data.get("position"), int):
            position, runs = data["position"], per_run.setdefault(run_id, {})
            if position not in runs or dttm > runs[position]:
                runs[position] = dttm
    out = {}
    for run_id in run_ids:
        last = patches.get(run_id)
        out[run_id] = (last[0] if last and last[1] == "failed" else None,
                       per_run.get(run_id, {}))
    return out


@dataclass(frozen=True)
class CancelInfo:
    """A job run's cancels as the views use them: the records in its folder (written by
    the actions and by the listener of Airflow's "mark failed"), else Airflow's log."""

    records: Cancels
    #: When the job run was cancelled (or last marked failed), None if it was not.
    job_run_at: datetime | None
    #: When each cancelled pipeline run (by position) was cancelled.
    runs_at: dict[int, datetime]

    @property
    def job_run_cancelled(self) -> bool:
        return self.records.job_run is not None


def cancel_info(session, store_dir: Path, dag_run) -> CancelInfo:
    """The cancels of one DAG run: its cancel records first, Airflow's log for the rest."""
    return cancel_infos(session, store_dir, [dag_run])[dag_run.run_id]


def cancel_infos(session, store_dir: Path, dag_runs: Sequence[Any]) -> dict[str, CancelInfo]:
    """:func:`cancel_info` of several DAG runs of one DAG (one log query)."""
    if not dag_runs:
        return {}
    logged = many_cancel_times(session, dag_runs[0].dag_id, [r.run_id for r in dag_runs])
    out = {}
    for dag_run in dag_runs:
        records = read_cancels(StoreLayout(store_dir).job_run(dag_run.dag_id, dag_run.run_id),
                               int(getattr(dag_run, "clear_number", 0) or 0))
        logged_job_run, logged_runs = logged.get(dag_run.run_id, (None, {}))
        runs_at = {**logged_runs, **{p: r.time for p, r in records.runs.items()}}
        job_run_at = records.job_run.time if records.job_run is not None else logged_job_run
        out[dag_run.run_id] = CancelInfo(records, job_run_at, runs_at)
    return out


def all_runs(session, dag_id: str) -> list[Any]:
    """Every DAG run of one DAG, newest first."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    return list(session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                                .order_by(DagRun.run_after.desc(), DagRun.id.desc())))


def view_info(session, dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The ``x-orchest`` annotation (``core.annotation``) of each DAG."""
    from airflow.models.serialized_dag import SerializedDagModel

    out: dict[str, dict[str, Any]] = {}
    if not dag_ids:
        return out
    for serialized in SerializedDagModel.get_latest_serialized_dags(dag_ids=list(dag_ids),
                                                                    session=session):
        cached = _INFO.get(serialized.dag_hash)
        if cached is None:
            cached = read_annotation(serialized.data or {})
            _INFO[serialized.dag_hash] = cached
            if len(_INFO) > 1024:
                _INFO.pop(next(iter(_INFO)))
        out[serialized.dag_id] = cached
    return out


_INFO: dict[str, dict[str, Any]] = {}


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
