"""The Airflow plugin: the run-files app on the api-server, the notebook link, the timetable,
the webhook delivery loop, the listener that records a job run marked failed in Airflow as
cancelled."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from . import listener
from .core.urls import URL_PREFIX
from .dag.timetable import MovedOrchestCronTimetable, OrchestCronTimetable
from .operators.links import NotebookHtmlLink
from .webhooks.listener import listener as webhook_delivery


class _LazyApp:
    """Build the FastAPI app only in the api-server (workers never import FastAPI for it)."""

    def __init__(self):
        self._app = None

    def _get(self):
        if self._app is None:
            from .web.app import create_app

            self._app = create_app()
        return self._app

    def __getattr__(self, name):
        return getattr(self._get(), name)

    async def __call__(self, scope, receive, send):
        await self._get()(scope, receive, send)


class OrchestJobsPlugin(AirflowPlugin):
    name = "orchest_jobs"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "Orchest jobs"}]
    operator_extra_links = [NotebookHtmlLink()]
    # The job views (web/): a nav entry and a tab on every DAG run page, served by the app.
    external_views = [
        {"name": "Orchest jobs", "href": f"{URL_PREFIX}/ui/jobs", "destination": "nav",
         "url_route": "orchest-jobs", "icon": f"{URL_PREFIX}/static/icon.svg"},
        {"name": "Pipeline runs", "href": f"{URL_PREFIX}/ui/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
         "destination": "dag_run", "url_route": "orchest-pipeline-runs"},
    ]
    # The scheduler deserializes a custom timetable only when a plugin registers it.
    timetables = [OrchestCronTimetable, MovedOrchestCronTimetable]
    # Webhooks: the scheduler (and triggerer) deliver the outbox (webhooks/listener.py);
    # "mark failed" on a running job run is a cancel (listener.py).
    listeners = [webhook_delivery, listener]
