"""Serve pipeline-run files (executed notebooks as HTML, step logs) from the api-server.

Served by the plugin's app (``app.py``, under ``/orchest-jobs``) beside the job views' API
and pages (``/api/v1/...``, ``/ui/...``). A request is answered only for a DAG run that
exists in Airflow's database and whose DAG the user may read (task logs level); the
run folder is the one ``StoreLayout`` names for exactly that DAG run (names are
injective and never ``..``), and every component below it is opened from a directory
descriptor without following links (``core.confined``), so what is served is what was
checked, whatever a step does to its folder meanwhile. HTML is served with a sandboxing
Content-Security-Policy so notebook output cannot run script in the Airflow UI's origin.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose
# types are imported inside create_app.

import mimetypes
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..core import confined
from ..core.layout import StoreLayout
from .data import get_dag_run

RUN_FILE_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                               "style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@contextmanager
def opened_runs(store_dir: Path) -> Iterator[int]:
    """A descriptor of ``store_dir/runs``, resolved once (the store may be a symlink)."""
    fd = confined.open_top(os.path.realpath(StoreLayout(store_dir).runs))
    try:
        yield fd
    finally:
        os.close(fd)


def open_run_file(store_dir: Path, dag_id: str, run_id: str, names: Sequence[str]
                  ) -> tuple[int, os.stat_result]:
    """The regular file ``names`` in the DAG run's folder, opened; Refused otherwise."""
    with opened_runs(store_dir) as runs:
        return confined.open_file(runs, [*StoreLayout.job_run_names(dag_id, run_id), *names])


def open_run_folder(store_dir: Path, dag_id: str, run_id: str, names: Sequence[str]) -> int:
    """The folder ``names`` in the DAG run's folder, opened; Refused otherwise."""
    with opened_runs(store_dir) as runs:
        return confined.open_folder(runs, [*StoreLayout.job_run_names(dag_id, run_id),
                                           *names])


def resolve_run_file(store_dir: Path, dag_id: str, run_id: str, relative: str) -> Path | None:
    """The path of a regular file in the run folder, or None (for tools, not serving:
    a path can change after it is returned; the app serves from descriptors)."""
    try:
        fd, _ = open_run_file(store_dir, dag_id, run_id, confined.components(relative))
    except confined.Refused:
        return None
    os.close(fd)
    return StoreLayout(store_dir).job_run(dag_id, run_id).joinpath(*relative.split("/"))


def media_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "text/plain"
    if kind.startswith("text/") and "charset" not in kind:
        kind += "; charset=utf-8"
    return kind


def existing_run(session, dag_id: str, run_id: str) -> bool:
    """Whether Airflow knows exactly this DAG run (ids compared as written)."""
    found = get_dag_run(session, dag_id, run_id)
    return found is not None and found.dag_id == dag_id and found.run_id == run_id


def not_found(dag_id: str, run_id: str, relative: str):
    from fastapi import HTTPException

    return HTTPException(404, f"no file {relative[:200]!r} in the run folder of "
                         f"{dag_id[:250]} {run_id[:250]} (deleted by retention, not "
                         "written yet, or not a regular file)")
