"""Server-side pages of the job views: plain HTML shells plus a little JavaScript.

``/ui/jobs`` (the jobs overview, Airflow's navigation), ``/ui/dags/{dag_id}/runs/{run_id}``
(the pipeline-run table, a tab of the DAG run page) and ``.../files/{path}`` (a run
folder, read-only). Pages carry no data: the scripts fetch it from the API with the
user's own session, and render it with ``textContent`` (never as HTML). A strict
Content-Security-Policy allows only this app's own scripts and styles.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# types are imported inside create_router.
import html
import os
from pathlib import Path
from urllib.parse import quote

from ..core.jobstate import safe_name
from ..runfiles import URL_PREFIX, run_file_url

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


def resolve_run_dir(store_dir: Path, dag_id: str, run_id: str, relative: str) -> Path | None:
    """A folder inside the DAG run's folder, or None (missing, or outside it)."""
    root = (store_dir / "runs" / safe_name(dag_id) / safe_name(run_id)).resolve()
    target = Path(os.path.normpath(root / relative))
    if target != root and root not in target.parents:
        return None
    real = target.resolve()
    if not real.is_dir() or (real != root and root not in real.parents):
        return None
    return real


def listing(store_dir: Path, dag_id: str, run_id: str, relative: str, root: str) -> str | None:
    """A run folder as an HTML list: folders open here, files in the run-files app."""
    folder = resolve_run_dir(store_dir, dag_id, run_id, relative)
    if folder is None:
        return None
    base = (store_dir / "runs" / safe_name(dag_id) / safe_name(run_id)).resolve()
    rel = "" if folder == base else folder.relative_to(base).as_posix() + "/"
    page = (f"{root}{URL_PREFIX}/ui/dags/{quote(dag_id, safe='')}/runs/"
            f"{quote(run_id, safe='')}/files/")
    items = []
    if rel:
        parent = rel.rstrip("/").rpartition("/")[0]
        items.append(f'<li><a href="{html.escape(page + quote(parent + "/" if parent else ""))}">'
                     "../</a></li>")
    entries = sorted(os.scandir(folder), key=lambda e: (not e.is_dir(), e.name))
    for entry in entries[:5000]:
        name = entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
        if entry.is_dir(follow_symlinks=False):
            href = page + quote(rel + name)
        elif entry.is_file(follow_symlinks=False):
            href = run_file_url(dag_id, run_id, rel + entry.name, root)
        else:
            items.append(f"<li>{html.escape(name)} <span class=muted>(link)</span></li>")
            continue
        size = "" if name.endswith("/") else f' <span class=muted>{entry.stat().st_size:,} B</span>'
        items.append(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a>{size}</li>')
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
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import APIRouter, Depends, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    from ..config import load_settings
    from .api import root_path

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

    @router.get("/ui/dags/{dag_id}/runs/{run_id}/files/{relative:path}",
                response_class=HTMLResponse, dependencies=[read])
    def files_page(dag_id: str, run_id: str, relative: str) -> HTMLResponse:
        page = listing(load_settings().store_dir, dag_id, run_id, relative, root_path())
        if page is None:
            raise HTTPException(404, f"no folder {relative!r} in the run folder of {dag_id} "
                                f"{run_id} (deleted by retention, or not written yet)")
        return HTMLResponse(page, headers=HEADERS)

    @router.get("/static/{name}")
    def static(name: str) -> FileResponse:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, "no such file")
        kind = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        return FileResponse(path, media_type=kind.get(path.suffix, "application/octet-stream"),
                            headers={"X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "max-age=300"})

    return router
