"""Where the plugin's app answers on the api-server: its prefix, and the URL of a run's file.

Pure, so the step operator's notebook link (computed on a worker) and the web layer (the
api-server) build the very same URLs without importing each other.
"""

from __future__ import annotations

from urllib.parse import quote

#: The plugin's FastAPI app is mounted here (run files, the job views' API and pages).
URL_PREFIX = "/orchest-jobs"


def run_file_url(dag_id: str, run_id: str, relative: str, base_url: str = "") -> str:
    """URL of a file inside a DAG run's run folder (``run-00003/project/x.html``)."""
    return (f"{base_url.rstrip('/')}{URL_PREFIX}/runs/{quote(dag_id, safe='')}/"
            f"{quote(run_id, safe='')}/{quote(relative)}")
