"""The JSON API behind the job views: ``/orchest-jobs/api/v1/...`` on the api-server.

- ``GET  /api/v1/jobs``: every Orchest DAG the user may read, with its latest job runs.
- ``GET  /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/pipelineRuns``: the pipeline-run
  table (``state``, ``q``, ``sort``, ``order``, ``offset``, ``limit``).
- ``GET  /api/v1/dags/{dag_id}/pipelineRuns``: the job's history, every pipeline run of
  every job run in one table (same parameters; ``sort=job_run``, newest first, default).
- ``POST .../pipelineRuns/rerun`` (``{"runs": [grid index, ...] | null, "states":
  ["failed"]}``: Airflow's ``clearTaskInstances`` called as the user, ``web.actions``),
  ``POST .../pipelineRuns/{index}/cancel`` and, to cancel the whole job run,
  ``POST /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}/cancel``.

Permissions are Airflow's, per DAG: reading needs what the run-files app needs (the DAG's
task logs), actions need ``PUT`` on its task instances (cancelling a job run: ``PUT`` on
its DAG runs, as marking it failed in Airflow); the user is the one of the
request (cookie or bearer token), so an action is done with the user's own rights.
POSTs must be JSON and same-origin (no cross-site form can trigger one).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# types are imported inside create_router.
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlparse

from ..config import api_base_url, load_settings, max_map_length
from ..core.contract import step_log_path
from ..core.jobstate import JobStates, job_run_outcome
from ..core.layout import PROJECT_COPY, StoreLayout, run_folder_name
from ..core.urls import URL_PREFIX, run_file_url
from . import data
from .actions import cancel as do_cancel
from .actions import cancel_job_run as do_cancel_job_run
from .actions import rerun as do_rerun
from .airflowapi import AirflowApi, ApiError
from .rows import (
    CLEANUP,
    HISTORY_SORT_KEYS,
    PREPARE,
    SORT_KEYS,
    Column,
    RunRow,
    build_rows,
    columns,
    count_states,
    group_of,
    select_rows,
)
from .states import RUN_STATES, step_state

MAX_LIMIT = 500
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\.)*"'
_PARAMETER = re.compile(rf"[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED})[ \t]*")


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type header is exactly ``application/json`` (any case), with
    optional well-formed parameters (RFC 9110), and nothing else."""
    if not content_type:
        return False
    kind, *parameters = content_type.split(";")
    if kind.strip(" \t").lower() != "application/json":
        return False
    return all(_PARAMETER.fullmatch(p) for p in parameters)


def root_path() -> str:
    """The path Airflow is served under (``[api] base_url``), '' at the host's root."""
    return urlparse(api_base_url()).path.rstrip("/")


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def history_url(dag_id: str) -> str:
    """The job's history page (every pipeline run of every job run)."""
    return f"{root_path()}{URL_PREFIX}/ui/dags/{quote(dag_id, safe='')}/history"


def airflow_urls(dag_id: str, run_id: str) -> dict[str, str]:
    root = root_path()
    dag, run = quote(dag_id, safe=""), quote(run_id, safe="")
    return {"dag": f"{root}/dags/{dag}", "dag_run": f"{root}/dags/{dag}/runs/{run}",
            "pipeline_runs": f"{root}{URL_PREFIX}/ui/dags/{dag}/runs/{run}",
            "files": f"{root}{URL_PREFIX}/ui/dags/{dag}/runs/{run}/files/",
            "history": f"{root}{URL_PREFIX}/ui/dags/{dag}/history"}


def pipeline_runs_response(session, user, dag_id: str, run_id: str, *,
                           states: list[str], query: str | None, sort: str, order: str,
                           offset: int, limit: int) -> dict[str, Any]:
    """The table: one query for the task instances, the rest in memory, one page out."""
    from fastapi import HTTPException

    dag_run = data.get_dag_run(session, dag_id, run_id)
    if dag_run is None:
        raise HTTPException(404, f"no DAG run {run_id!r} of DAG {dag_id!r}")
    bad = [s for s in states if s not in RUN_STATES]
    if bad:
        raise HTTPException(400, f"unknown state {bad[0]!r}; use one of {', '.join(RUN_STATES)}")
    settings = load_settings()
    root = StoreLayout(settings.store_dir).job_run(dag_id, run_id)
    entries = data.run_index(root)
    info = data.view_info(session, [dag_id]).get(dag_id, {})
    rel = data.pipeline_rel(settings.store_dir, dag_id, run_id, info.get("pipeline"))
    steps = data.pipeline_steps(root, entries, rel)
    uuid = data.pipeline_uuid(root, entries)
    cols = columns(entries, {s.uuid: s.title for s in steps})
    sortable = {*SORT_KEYS, *(c.id for c in cols)}
    if sort not in sortable:
        raise HTTPException(400, f"cannot sort by {sort!r}; use one of {', '.join(SORT_KEYS)} "
                            "or a column id")
    records = [r for _, r in data.task_records(session, dag_id, [run_id])]
    state = None if dag_run.state is None else str(dag_run.state)
    cancels = data.cancel_info(session, settings.store_dir, dag_run)
    length = max_map_length()
    rows = build_rows(entries, records, max_map_length=length,
                      dag_cancelled_at=cancels.job_run_at, run_cancelled_at=cancels.runs_at)
    now = datetime.now(timezone.utc)
    total, page = select_rows(rows, cols, now=now, states=states, query=query, sort=sort,
                              descending=order == "desc", offset=offset, limit=limit)
    urls = airflow_urls(dag_id, run_id)
    base = root_path()
    return {
        "dag_id": dag_id,
        "dag_run_id": run_id,
        "is_orchest": data.is_orchest_dag(session, dag_id),
        "dag_run": {"state": job_run_state(state, cancels, rows), "airflow_state": state,
                    "cancelled": _cancelled(cancels),
                    "run_type": str(dag_run.run_type),
                    "start_date": iso(dag_run.start_date), "end_date": iso(dag_run.end_date),
                    "run_after": iso(dag_run.run_after)},
        "planned": bool(entries),
        "can_edit": _can_edit(user, dag_id),
        "can_cancel": _can_cancel(user, dag_id),
        "links": urls,
        **_head(cols, steps),
        "counts": count_states(rows),
        "total_runs": len(rows),
        "total_entries": total,
        "offset": offset,
        "limit": limit,
        "pipeline_runs": [_row(r, cols, steps, uuid, dag_id, run_id, length, now, base)
                          for r in page],
    }


def history_response(session, dag_id: str, *, states: list[str], query: str | None,
                     sort: str, order: str, offset: int, limit: int) -> dict[str, Any]:
    """Every pipeline run of every job run of one DAG, as one table: the same rows,
    filters, search, sort and paging as one job run's (task instances: one query)."""
    from fastapi import HTTPException

    bad = [s for s in states if s not in RUN_STATES]
    if bad:
        raise HTTPException(400, f"unknown state {bad[0]!r}; use one of {', '.join(RUN_STATES)}")
    if not data.is_orchest_dag(session, dag_id):
        raise HTTPException(404, f"no Orchest DAG {dag_id!r}")
    settings = load_settings()
    length = max_map_length()
    dag_runs = data.all_runs(session, dag_id)
    by_run: dict[str, list[Any]] = {r.run_id: [] for r in dag_runs}
    for run_id, record in data.task_records(session, dag_id, None):
        by_run.setdefault(run_id, []).append(record)
    cancels = data.cancel_infos(session, settings.store_dir, dag_runs)
    info = data.view_info(session, [dag_id]).get(dag_id, {})
    rows: list[RunRow] = []
    entries_of: dict[str, list[dict[str, Any]]] = {}
    job_runs: dict[str, dict[str, Any]] = {}
    for dag_run in dag_runs:
        entries = data.run_index(StoreLayout(settings.store_dir).job_run(dag_id,
                                                                         dag_run.run_id))
        if not entries:
            continue
        entries_of[dag_run.run_id] = entries
        info_of = cancels[dag_run.run_id]
        built = build_rows(entries, by_run.get(dag_run.run_id, []), max_map_length=length,
                           dag_cancelled_at=info_of.job_run_at,
                           run_cancelled_at=info_of.runs_at)
        for row in built:
            row.job_run, row.job_run_after = dag_run.run_id, dag_run.run_after
        rows.extend(built)
        state = None if dag_run.state is None else str(dag_run.state)
        job_runs[dag_run.run_id] = {"state": job_run_state(state, info_of, built),
                                    "run_after": iso(dag_run.run_after)}
    # Steps and columns as the newest job run has them (a per-job job keeps them).
    steps_of: dict[str, Any] = {}

    def steps_for(run_id: str) -> list[Any]:
        if run_id not in steps_of:
            root = StoreLayout(settings.store_dir).job_run(dag_id, run_id)
            rel = data.pipeline_rel(settings.store_dir, dag_id, run_id, info.get("pipeline"))
            steps_of[run_id] = (data.pipeline_steps(root, entries_of[run_id], rel),
                                data.pipeline_uuid(root, entries_of[run_id]))
        return steps_of[run_id]

    newest = next(iter(entries_of), None)
    steps = steps_for(newest)[0] if newest else []
    cols = columns([e for entries in entries_of.values() for e in entries],
                   {s.uuid: s.title for s in steps})
    if sort not in {*HISTORY_SORT_KEYS, *(c.id for c in cols)}:
        raise HTTPException(400, f"cannot sort by {sort!r}; use one of "
                            f"{', '.join(HISTORY_SORT_KEYS)} or a column id")
    now = datetime.now(timezone.utc)
    total, page = select_rows(rows, cols, now=now, states=states, query=query, sort=sort,
                              descending=order == "desc", offset=offset, limit=limit)
    base = root_path()
    out = []
    for row in page:
        run_steps, uuid = steps_for(row.job_run)
        shown = _row(row, cols, run_steps, uuid, dag_id, row.job_run, length, now, base)
        urls = airflow_urls(dag_id, row.job_run)
        shown.update({"dag_run_id": row.job_run,
                      "job_run_state": job_runs[row.job_run]["state"],
                      "run_after": job_runs[row.job_run]["run_after"],
                      "links": {"dag_run": urls["dag_run"],
                                "pipeline_runs": urls["pipeline_runs"]}})
        out.append(shown)
    return {
        "dag_id": dag_id,
        "is_orchest": True,
        "links": {"dag": airflow_urls(dag_id, "")["dag"]},
        **_head(cols, steps),
        "counts": count_states(rows),
        "total_runs": len(rows),
        "total_job_runs": len(entries_of),
        "total_entries": total,
        "offset": offset,
        "limit": limit,
        "pipeline_runs": out,
    }


def job_run_state(state: str | None, cancels: data.CancelInfo, rows: list[RunRow]
                  ) -> str | None:
    """The job run's state in the views: ``cancelled`` for one the user cancelled (a cancel
    record; or, without one, marked failed in Airflow while runs were unfinished)."""
    cancelled = cancels.job_run_cancelled or (
        cancels.job_run_at is not None and (not rows or any(r.state == "cancelled"
                                                            for r in rows)))
    return job_run_outcome(state, cancelled)


def _cancelled(cancels: data.CancelInfo) -> dict[str, Any] | None:
    record = cancels.records.job_run
    if record is None:
        return None
    return {"at": record.at, "by": record.by, "via": record.via}


def _row(row: RunRow, cols, steps, pipeline_uuid: str | None, dag_id: str, run_id: str,
         length: int, now: datetime, base: str) -> dict[str, Any]:
    group, map_index = group_of(row.position, length)
    folder = run_folder_name(row.index)
    project = f"{folder}/{PROJECT_COPY}"
    dag, run = quote(dag_id, safe=""), quote(run_id, safe="")
    task_page = f"{base}/dags/{dag}/runs/{run}/tasks/{{}}/mapped/{map_index}"
    out_steps = []
    for step in steps:
        task = row.tasks.get(step.task_id)
        airflow_state = task.state if task else None
        log = (run_file_url(dag_id, run_id,
                            f"{project}/{step_log_path(pipeline_uuid, step.uuid)}", base)
               if pipeline_uuid else None)
        out_steps.append({
            "uuid": step.uuid, "title": step.title, "task_id": step.task_id,
            "state": step_state(airflow_state, row.state), "airflow_state": airflow_state,
            "try_number": row.tries.get(step.task_id, 0),
            "start_date": iso(task.start if task else None),
            "end_date": iso(task.end if task else None),
            "log_url": log,
            "notebook_url": run_file_url(dag_id, run_id, f"{project}/{step.notebook_html}",
                                         base)
            if step.notebook_html else None,
            "task_url": task_page.format(quote(f"{group}.{step.task_id}", safe="")),
        })
    prepare = row.tasks.get(PREPARE)
    duration = row.duration(now)
    return {
        "index": row.index, "position": row.position, "label": row.entry.get("label"),
        "run_uuid": row.entry.get("run_uuid"), "state": row.state,
        "group": group, "map_index": map_index,
        "start_date": iso(row.start), "end_date": iso(row.end),
        "duration": round(duration, 3) if duration is not None else None,
        "parameters": {c.id: c.value(row.entry) for c in cols
                       if c.value(row.entry) is not c.value({})},
        "prepare": {"state": prepare.state if prepare else None,
                    "task_url": task_page.format(quote(f"{group}.{PREPARE}", safe=""))},
        "cleanup": (row.tasks[CLEANUP].state if CLEANUP in row.tasks else None),
        "steps": out_steps,
        "files_url": f"{base}{URL_PREFIX}/ui/dags/{dag}/runs/{run}/files/{folder}/",
    }


def _head(cols: Sequence[Column], steps: Sequence[data.StepInfo]) -> dict[str, Any]:
    """The parameter columns and the steps, as both tables (a job run's, the history) send."""
    return {"columns": [{"id": c.id, "key": c.key, "name": c.name, "title": c.title,
                         "varying": c.varying} for c in cols],
            "steps": [{"uuid": s.uuid, "title": s.title, "task_id": s.task_id,
                       "file_path": s.file_path, "notebook": s.notebook_html is not None}
                      for s in steps]}


def _can_cancel(user, dag_id: str) -> bool:
    """Cancelling a job run is marking its DAG run failed: ``PUT`` on the DAG's runs."""
    return _may_put(user, dag_id, "RUN")


def _can_edit(user, dag_id: str) -> bool:
    return _may_put(user, dag_id, "TASK_INSTANCE")


def _may_put(user, dag_id: str, entity: Literal["RUN", "TASK_INSTANCE"]) -> bool:
    """Whether the auth manager lets ``user`` change the DAG's ``entity`` (a
    ``DagAccessEntity`` name), with the DAG's team."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.models.dag import DagModel

    return bool(get_auth_manager().is_authorized_dag(
        method="PUT", access_entity=DagAccessEntity[entity],
        details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)), user=user))


def readable_dag_ids(session, user) -> set[str]:
    """DAGs whose runs and files the user may see (the run-files app's permission)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    manager = get_auth_manager()
    ids = manager.get_authorized_dag_ids(user=user, method="GET", session=session)
    return {d for d in ids if manager.is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.TASK_LOGS, details=DagDetails(id=d),
        user=user)}


def jobs_response(session, user, runs_per_job: int) -> dict[str, Any]:
    """Every Orchest DAG the user may read: schedule, snapshot, images, latest job runs."""
    settings = load_settings()
    dags = data.orchest_dags(session, readable_dag_ids(session, user))
    ids = [d.dag_id for d in dags]
    tags = data.tags_of(session, ids)
    infos = data.view_info(session, ids)
    latest = data.latest_runs(session, ids, runs_per_job) if ids else {}
    snapshots = data.snapshots(settings.store_dir)
    states = JobStates(settings.store_dir)
    length = max_map_length()
    out = []
    for dag in dags:
        info = infos.get(dag.dag_id, {})
        dag_tags = tags.get(dag.dag_id, [])
        kind = ("invalid" if "orchest:invalid" in dag_tags else
                "job" if "orchest:job" in dag_tags else info.get("kind", "pipeline"))
        project = next((t.split(":", 1)[1] for t in dag_tags if t.startswith("project:")),
                       info.get("project"))
        runs = latest.get(dag.dag_id, [])
        job_runs = _job_runs(session, dag.dag_id, runs, settings.store_dir, length)
        key = dag.dag_id if info.get("snapshot") == "per_job" else (
            f"{dag.dag_id}/{runs[0].run_id}" if runs else None)
        state = _state(states, key)
        snapshot = snapshots.get(state.snapshot_id) if state else None
        urls = airflow_urls(dag.dag_id, "")
        out.append({
            "dag_id": dag.dag_id, "kind": kind, "project": project,
            "description": dag.description, "pipeline": info.get("pipeline"),
            "schedule": dag.timetable_summary, "schedule_description": dag.timetable_description,
            "next_run": iso(dag.next_dagrun_create_after) if not dag.is_paused else None,
            "is_paused": bool(dag.is_paused),
            "snapshot_mode": info.get("snapshot"),
            "snapshot": ({"id": state.snapshot_id, "created_at": state.created_at,
                          "files": snapshot.file_count if snapshot else None,
                          "bytes": snapshot.total_bytes if snapshot else None,
                          "job_run": None if info.get("snapshot") == "per_job"
                          else runs[0].run_id} if state else None),
            "frozen_images": dict(state.images) if state else {},
            "max_retained_pipeline_runs": info.get("max_retained_pipeline_runs"),
            "max_parallel_runs": info.get("max_parallel_runs"),
            "grid_size": info.get("grid_size"),
            "links": {"dag": urls["dag"], "history": history_url(dag.dag_id)},
            "job_runs": job_runs,
        })
    return {"jobs": out, "total_entries": len(out)}


def _state(states, key: str | None):
    if key is None:
        return None
    try:
        return states.get(key)
    except Exception:
        return None


def _job_runs(session, dag_id: str, runs: list[Any], store_dir, length: int
              ) -> list[dict[str, Any]]:
    """The latest DAG runs of one DAG with per-state counts (one TI query for all)."""
    if not runs:
        return []
    by_run: dict[str, list[Any]] = {r.run_id: [] for r in runs}
    for run_id, record in data.task_records(session, dag_id, list(by_run)):
        by_run[run_id].append(record)
    out = []
    for run in runs:
        state = None if run.state is None else str(run.state)
        entries = data.run_index(StoreLayout(store_dir).job_run(dag_id, run.run_id))
        cancels = data.cancel_info(session, store_dir, run)
        rows = build_rows(entries, by_run[run.run_id], max_map_length=length,
                          dag_cancelled_at=cancels.job_run_at,
                          run_cancelled_at=cancels.runs_at)
        out.append({"dag_run_id": run.run_id, "state": job_run_state(state, cancels, rows),
                    "airflow_state": state, "run_type": str(run.run_type),
                    "run_after": iso(run.run_after), "start_date": iso(run.start_date),
                    "end_date": iso(run.end_date), "total_runs": len(rows),
                    "counts": count_states(rows),
                    "links": airflow_urls(dag_id, run.run_id)})
    return out


def create_router():
    """The API routes (FastAPI imported here: only the api-server builds them)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
    from pydantic import BaseModel

    router = APIRouter(prefix="/api/v1")
    read = Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))
    edit = Depends(requires_access_dag("PUT", DagAccessEntity.TASK_INSTANCE))
    cancel_run = Depends(requires_access_dag("PUT", DagAccessEntity.RUN))

    def same_origin(request: Request) -> None:
        """POSTs: JSON only, and from this origin (cookies are sent on same-site POSTs)."""
        if not is_json_media_type(request.headers.get("content-type")):
            raise HTTPException(415, "send the action as JSON (Content-Type: application/json)")
        origin = request.headers.get("origin")
        if origin and urlparse(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, "cross-origin request refused")

    @router.get("/jobs")
    def jobs(session: SessionDep, user: GetUserDep,
             runs_per_job: Annotated[int, Query(ge=1, le=20)] = 3) -> dict[str, Any]:
        return jobs_response(session, user, runs_per_job)

    @router.get("/dags/{dag_id}/dagRuns/{dag_run_id}/pipelineRuns", dependencies=[read])
    def pipeline_runs(
        dag_id: str, dag_run_id: str, session: SessionDep, user: GetUserDep,
        state: Annotated[list[str] | None, Query()] = None,
        q: Annotated[str | None, Query(max_length=500)] = None,
        sort: str = "index", order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    ) -> dict[str, Any]:
        wanted = [s for item in state or [] for s in item.split(",") if s]
        return pipeline_runs_response(session, user, dag_id, dag_run_id, states=wanted,
                                      query=q, sort=sort, order=order, offset=offset,
                                      limit=limit)

    class RerunBody(BaseModel):
        runs: list[int] | None = None
        states: list[str] = ["failed"]

    def _positions(session, dag_id: str, run_id: str, indices: list[int] | None,
                   states: list[str]) -> tuple[Any, list[RunRow]]:
        dag_run = data.get_dag_run(session, dag_id, run_id)
        if dag_run is None:
            raise HTTPException(404, f"no DAG run {run_id!r} of DAG {dag_id!r}")

        store = load_settings().store_dir
        entries = data.run_index(StoreLayout(store).job_run(dag_id, run_id))
        records = [r for _, r in data.task_records(session, dag_id, [run_id])]
        cancels = data.cancel_info(session, store, dag_run)
        rows = build_rows(entries, records, max_map_length=max_map_length(),
                          dag_cancelled_at=cancels.job_run_at,
                          run_cancelled_at=cancels.runs_at)
        if indices is not None:
            by_index = {r.index: r for r in rows}
            missing = [i for i in indices if i not in by_index]
            if missing:
                raise HTTPException(404, f"run {missing[0]} is not part of this job run")
            return dag_run, [by_index[i] for i in indices]
        return dag_run, [r for r in rows if r.state in states]

    @router.post("/dags/{dag_id}/dagRuns/{dag_run_id}/pipelineRuns/rerun",
                 dependencies=[edit, Depends(same_origin)])
    def rerun(dag_id: str, dag_run_id: str, session: SessionDep, request: Request,
              body: Annotated[RerunBody, Body()]) -> dict[str, Any]:
        """Sync (threadpool): it waits on Airflow's REST API of this same api-server."""
        bad = [s for s in body.states if s not in RUN_STATES]
        if bad:
            raise HTTPException(400, f"unknown state {bad[0]!r}")
        _, rows = _positions(session, dag_id, dag_run_id, body.runs, body.states)
        session.commit()  # ends the read transaction before Airflow's clear writes
        try:
            cleared = do_rerun(AirflowApi.for_request(request), dag_id, dag_run_id, rows)
        except ApiError as error:
            raise HTTPException(error.status, error.detail) from None
        return {"pipeline_runs": len(rows), "task_instances_cleared": cleared}

    @router.post("/dags/{dag_id}/dagRuns/{dag_run_id}/pipelineRuns/{index}/cancel",
                 dependencies=[edit, Depends(same_origin)])
    def cancel(dag_id: str, dag_run_id: str, index: int, session: SessionDep,
               user: GetUserDep) -> dict[str, Any]:
        dag_run, rows = _positions(session, dag_id, dag_run_id, [index], [])
        changed = do_cancel(session, dag_run, rows[0], user.get_name())
        return {"index": index, "task_instances_stopped": changed}

    @router.post("/dags/{dag_id}/dagRuns/{dag_run_id}/cancel",
                 dependencies=[cancel_run, Depends(same_origin)])
    def cancel_job_run(dag_id: str, dag_run_id: str, session: SessionDep,
                       user: GetUserDep) -> dict[str, Any]:
        dag_run, rows = _positions(session, dag_id, dag_run_id, None, list(RUN_STATES))
        if str(dag_run.state) not in ("queued", "running"):
            raise HTTPException(409, f"job run {dag_run_id!r} already ended "
                                f"({dag_run.state}); there is nothing to cancel")
        changed = do_cancel_job_run(session, dag_run, rows, user.get_name())
        return {"dag_run_id": dag_run_id, "task_instances_stopped": changed}

    @router.get("/dags/{dag_id}/pipelineRuns", dependencies=[read])
    def job_history(
        dag_id: str, session: SessionDep, user: GetUserDep,
        state: Annotated[list[str] | None, Query()] = None,
        q: Annotated[str | None, Query(max_length=500)] = None,
        sort: str = "job_run", order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    ) -> dict[str, Any]:
        wanted = [s for item in state or [] for s in item.split(",") if s]
        return history_response(session, dag_id, states=wanted, query=q, sort=sort,
                                order=order, offset=offset, limit=limit)

    return router
