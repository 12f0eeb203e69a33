"""Retention as one operation: old run folders, then what released jobs held.

Used by every job run's ``finalize`` task and by ``airflow-orchest-jobs jobs clean``:
keep the newest ``keep`` finished pipeline runs of a DAG, and for one-off jobs left
with no run, release their frozen image tags and collect their snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.retention import apply_retention, collect_snapshots
from .images import docker_client, job_image_owner, release


@dataclass(frozen=True)
class Retired:
    deleted_runs: int
    released_jobs: list[str]
    freed_bytes: int

    def as_dict(self) -> dict:
        return {"deleted_runs": self.deleted_runs, "released_jobs": self.released_jobs,
                "freed_bytes": self.freed_bytes}


def retire(store_dir: Path, dag_id: str, keep: int | None, docker_url: str) -> Retired:
    """Apply ``keep`` to ``dag_id``'s runs; release and collect what nothing uses."""
    report = apply_retention(store_dir, dag_id, keep)
    freed = report.freed_bytes
    if report.released_jobs:
        client = docker_client(docker_url)
        for key in report.released_jobs:
            release(client, job_image_owner(store_dir, key))
        freed += collect_snapshots(store_dir, set(report.released_jobs.values()))
    return Retired(len(report.deleted_runs), sorted(report.released_jobs), freed)
