"""Extra links on step tasks: a notebook step links to its executed notebook as HTML."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from ..config import api_base_url
from ..core.contract import notebook_html
from ..core.layout import PROJECT_COPY
from ..core.rundesc import describe
from ..core.urls import run_file_url


class NotebookHtmlLink(BaseOperatorLink):
    """Computed by the worker once the step ran (Airflow 3 stores links in XCom)."""

    name = "Notebook (HTML)"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        step, run = getattr(operator, "step", None), getattr(operator, "run", None)
        if step is None or not step.is_notebook or not isinstance(run, dict):
            return ""

        job_run = getattr(operator, "job_run", None)
        try:
            run_dir = describe(run, job_run if isinstance(job_run, dict) else None).run_dir
        except (KeyError, TypeError, ValueError):
            return ""  # not rendered (the task did not run)
        html = notebook_html(operator.pipeline.rel_path.as_posix(), step.file_path)
        if html is None:
            return ""  # a notebook under /data/: its HTML is in the data folder
        relative = f"{run_dir.name}/{PROJECT_COPY}/{html}"

        return run_file_url(ti_key.dag_id, ti_key.run_id, relative, api_base_url())
