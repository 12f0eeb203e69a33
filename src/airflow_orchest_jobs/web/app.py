"""The plugin's FastAPI app on the api-server: run files, the job views' API and pages.

Mounted by the plugin under ``core.urls.URL_PREFIX`` and built on the first request (the
plugin's app is lazy), so the scheduler, workers and the DAG processor never build it.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# types are imported inside create_app.

from ..config import load_settings
from ..core import confined
from .api import create_router as api_router
from .pages import create_router as pages_router
from .runfiles import RUN_FILE_HEADERS, existing_run, media_type, not_found, open_run_file


def create_app():
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="Orchest jobs: run files and job views")

    @app.middleware("http")
    async def refuse_nul(request, call_next):
        """No DAG, run or file name holds NUL (a URL's ``%00``), and PostgreSQL refuses it
        in a query: Airflow's own access check would end such a request in a 500."""
        if "\x00" in request.scope.get("path", ""):
            return JSONResponse({"detail": "not found"}, status_code=404)
        return await call_next(request)

    @app.get(
        "/runs/{dag_id}/{run_id}/{relative:path}",
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))],
    )
    def run_file(dag_id: str, run_id: str, relative: str,
                 session: SessionDep) -> StreamingResponse:
        try:
            names = confined.components(relative)
        except confined.Refused:
            raise not_found(dag_id, run_id, relative) from None
        if not existing_run(session, dag_id, run_id):
            raise not_found(dag_id, run_id, relative)
        try:
            fd, info = open_run_file(load_settings().store_dir, dag_id, run_id, names)
        except confined.Refused:
            raise not_found(dag_id, run_id, relative) from None
        return StreamingResponse(confined.read_chunks(fd, info.st_size),
                                 media_type=media_type(names[-1]), headers=RUN_FILE_HEADERS)

    app.include_router(api_router())
    app.include_router(pages_router())
    return app
