"""Serve pipeline-run files (executed notebooks as HTML, step logs) from the api-server.

Mounted by the plugin under ``/orchest-jobs``, with the job views' API and pages
(``views/``: ``/api/v1/...``, ``/ui/...``). Every request is checked against the
DAG's permissions (task logs level), paths never leave the run folder, and HTML is
served with a sandboxing Content-Security-Policy so notebook output cannot run script
in the Airflow UI's origin.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from urllib.parse import quote

from .core.layout import StoreLayout

URL_PREFIX = "/orchest-jobs"


def run_file_url(dag_id: str, run_id: str, relative: str, base_url: str = "") -> str:
    """URL of a file inside a DAG run's run folder (``run-00003/project/x.html``)."""
    return (f"{base_url.rstrip('/')}{URL_PREFIX}/runs/{quote(dag_id, safe='')}/"
            f"{quote(run_id, safe='')}/{quote(relative)}")


def resolve_run_file(store_dir: Path, dag_id: str, run_id: str, relative: str) -> Path | None:
    """The file on disk, or None when it is missing or outside the DAG run's folder."""
    root = StoreLayout(store_dir).job_run(dag_id, run_id).resolve()
    target = Path(os.path.normpath(root / relative))
    if root not in target.parents or not target.is_file():
        return None
    real = target.resolve()
    return real if root in real.parents else None


def create_app():
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse

    from .config import load_settings

    app = FastAPI(title="Orchest jobs: run files and job views")

    @app.get(
        "/runs/{dag_id}/{run_id}/{relative:path}",
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))],
    )
    def run_file(dag_id: str, run_id: str, relative: str) -> FileResponse:
        path = resolve_run_file(load_settings().store_dir, dag_id, run_id, relative)
        if path is None:
            raise HTTPException(404, f"no file {relative!r} in the run folder of {dag_id} "
                                f"{run_id} (deleted by retention, or not written yet)")
        media_type = mimetypes.guess_type(path.name)[0] or "text/plain"
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        return FileResponse(path, media_type=media_type, headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                                       "style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        })

    from .views.api import create_router as api_router
    from .views.pages import create_router as pages_router

    app.include_router(api_router())
    app.include_router(pages_router())
    return app
