"""Server-side pages of the job views: plain HTML shells plus a little JavaScript.

``/ui/jobs`` (the jobs overview, Airflow's navigation), ``/ui/dags/{dag_id}/runs/{run_id}``
(the pipeline-run table, a tab of the DAG run page), ``/ui/dags/{dag_id}/history`` (the
same table over every job run of the DAG) and ``.../files/{path}`` (a run
folder, read-only, opened as the run-files app opens files: see ``runfiles``). Pages
carry no data: the scripts fetch it from the API with the user's own session, and
render it with ``textContent`` (never as HTML). A strict Content-Security-Policy
allows only this app's own scripts and styles.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# types are imported inside create_router.
import html
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from ..config import load_settings
from ..core import confined
from ..core.urls import URL_PREFIX, run_file_url
from .api import root_path
from .runfiles import existing_run, open_run_folder

STATIC = Path(__file__).parent / "static"
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def shell(title: str, script: str, root: str, **data: str) -> str:
    """The HTML of a page: a title, data attributes for the script, the script."""
    attrs = " ".join(f'data-{k.replace("_", "-")}="{html.escape(v, quote=True)}"'
                     for k, v in data.items())
    static = f"{root}{URL_PREFIX}/static"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>"
            f'<link rel="stylesheet" href="{static}/views.css"></head>'
            f'<body><main id="app" {attrs} data-root="{html.escape(root, quote=True)}">'
            f"<h1>{html.escape(title)}</h1><p class=muted>Loading…</p></main>"
            f'<script src="{static}/common.js"></script>'
            f'<script src="{static}/{script}"></script></body></html>')


#: Entries read from one folder, and shown (a step can make a folder of millions).
SCAN_LIMIT = 20_000
SHOW_LIMIT = 5_000


def listing(store_dir: Path, dag_id: str, run_id: str, names: Sequence[str], root: str) -> str:
    """A run folder as an HTML list: folders open here, regular files in the run-files
    app; links are listed, never followed or linked to. Refused when not a folder."""
    fd = open_run_folder(store_dir, dag_id, run_id, names)
    try:
        entries = confined.list_folder(fd, SCAN_LIMIT)
    finally:
        os.close(fd)
    rel = "".join(f"{name}/" for name in names)
    page = (f"{root}{URL_PREFIX}/ui/dags/{quote(dag_id, safe='')}/runs/"
            f"{quote(run_id, safe='')}/files/")
    items = []
    if names:
        parent = "".join(f"{name}/" for name in names[:-1])
        items.append(f'<li><a href="{html.escape(page + quote(parent))}">../</a></li>')
    entries.sort(key=lambda e: (e.kind != "folder", e.name))
    for entry in entries[:SHOW_LIMIT]:
        if entry.kind == "folder":
            href = page + quote(rel + entry.name + "/")
            items.append(f'<li><a href="{html.escape(href)}">{html.escape(entry.name)}/</a></li>')
        elif entry.kind == "file":
            href = run_file_url(dag_id, run_id, rel + entry.name, root)
            items.append(f'<li><a href="{html.escape(href)}">{html.escape(entry.name)}</a>'
                         f' <span class=muted>{entry.size:,} B</span></li>')
        else:
            what = "link, not followed" if entry.kind == "link" else "not a regular file"
            items.append(f"<li>{html.escape(entry.name)} <span class=muted>({what})</span></li>")
    if len(entries) > SHOW_LIMIT:
        more = "more" if len(entries) < SCAN_LIMIT else "or more"
        items.append(f"<li class=muted>{len(entries) - SHOW_LIMIT:,} {more} not shown</li>")
    title = f"{dag_id} · {run_id} · /{rel}"
    static = f"{root}{URL_PREFIX}/static"
    back = f"{root}{URL_PREFIX}/ui/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            f'<link rel="stylesheet" href="{static}/views.css"></head><body><main>'
            f'<p><a href="{html.escape(back)}">← pipeline runs</a></p>'
            f"<h1>Files (read-only)</h1><p class=muted>{html.escape(title)}</p>"
            f'<ul class="files">{"".join(items)}</ul></main></body></html>')


def create_router():
    """The page routes; permission as the run-files app (the DAG's task logs)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import APIRouter, Depends, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    router = APIRouter()
    read = Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))

    @router.get("/ui/jobs", response_class=HTMLResponse)
    def jobs_page(user: GetUserDep) -> HTMLResponse:
        root = root_path()
        return HTMLResponse(shell("Orchest jobs", "jobs.js", root,
                                  api=f"{root}{URL_PREFIX}/api/v1/jobs"), headers=HEADERS)

    @router.get("/ui/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse,
                dependencies=[read])
    def runs_page(dag_id: str, run_id: str) -> HTMLResponse:
        root = root_path()
        api = (f"{root}{URL_PREFIX}/api/v1/dags/{quote(dag_id, safe='')}/dagRuns/"
               f"{quote(run_id, safe='')}/pipelineRuns")
        return HTMLResponse(shell(f"Pipeline runs · {dag_id}", "runs.js", root, api=api,
                                  dag_id=dag_id, run_id=run_id), headers=HEADERS)

    @router.get("/ui/dags/{dag_id}/history", response_class=HTMLResponse, dependencies=[read])
    def history_page(dag_id: str) -> HTMLResponse:
        root = root_path()
        api = f"{root}{URL_PREFIX}/api/v1/dags/{quote(dag_id, safe='')}/pipelineRuns"
        return HTMLResponse(shell(f"Job history · {dag_id}", "runs.js", root, api=api,
                                  dag_id=dag_id, mode="history"), headers=HEADERS)

    @router.get("/ui/dags/{dag_id}/runs/{run_id}/files/{relative:path}",
                response_class=HTMLResponse, dependencies=[read])
    def files_page(dag_id: str, run_id: str, relative: str,
                   session: SessionDep) -> HTMLResponse:
        missing = HTTPException(404, f"no folder {relative[:200]!r} in the run folder of "
                                f"{dag_id[:250]} {run_id[:250]} (deleted by retention, or "
                                "not written yet)")
        try:
            names = confined.components(relative, folder=True)
        except confined.Refused:
            raise missing from None
        if not existing_run(session, dag_id, run_id):
            raise missing
        try:
            page = listing(load_settings().store_dir, dag_id, run_id, names, root_path())
        except confined.Refused:
            raise missing from None
        return HTMLResponse(page, headers=HEADERS)

    @router.get("/static/{name}")
    def static(name: str) -> FileResponse:
        try:
            path = STATIC / confined.check_name(name)
            found = not name.startswith(".") and path.is_file()
        except (confined.Refused, OSError, ValueError):  # NUL, over-long names
            found = False
        if not found:
            raise HTTPException(404, "no such file")
        kind = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        return FileResponse(path, media_type=kind.get(path.suffix, "application/octet-stream"),
                            headers={"X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "max-age=300"})

    return router
