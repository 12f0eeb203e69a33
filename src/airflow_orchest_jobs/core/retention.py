"""What a job holds on disk, and keeping only its newest N finished pipeline runs.

Run folders live at ``<store>/runs/<dag>/<dag-run>/run-<index>/``. A DAG run's folder
gets a ``.finished`` marker when the run ends (the DAG's ``finalize`` teardown task);
only runs under such a marker are ever deleted, oldest first. Job states of one-off
jobs whose runs are all gone are dropped, and snapshots no job state references are
collected with their content.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .jobstate import JobStates
from .layout import RUN_FOLDER_PREFIX, StoreLayout, run_folder_index, safe_name
from .snapshot.store import SnapshotStore, remove_tree

FINISHED = ".finished"


@dataclass(frozen=True)
class PipelineRunFolder:
    dag_run: str
    path: Path
    finished_at: float | None

    @property
    def index(self) -> int:
        return run_folder_index(self.path.name)


@dataclass
class CleanReport:
    deleted_runs: list[Path] = field(default_factory=list)
    #: Job states dropped, with the snapshot each referenced.
    released_jobs: dict[str, str] = field(default_factory=dict)
    freed_bytes: int = 0


def mark_finished(run_root: Path) -> None:
    run_root.mkdir(parents=True, exist_ok=True)
    (run_root / FINISHED).write_text(f"{time.time():.3f}\n")


def _finished_at(run_root: Path) -> float | None:
    try:
        return float((run_root / FINISHED).read_text().strip())
    except (OSError, ValueError):
        return None


def pipeline_runs(store_dir: Path, dag_id: str) -> list[PipelineRunFolder]:
    """Every pipeline run folder of a DAG, oldest first (unfinished ones last)."""
    root = StoreLayout(store_dir).dag_runs(dag_id)
    found: list[PipelineRunFolder] = []
    for dag_run in sorted(p for p in root.glob("*") if p.is_dir()):
        finished = _finished_at(dag_run)
        for folder in sorted(dag_run.glob(f"{RUN_FOLDER_PREFIX}*")):
            found.append(PipelineRunFolder(dag_run.name, folder, finished))
    return sorted(found, key=lambda r: (r.finished_at is None, r.finished_at or 0,
                                        r.dag_run, r.index))


def folder_size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file a step is deleting right now
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def apply_retention(store_dir: Path, dag_id: str, keep: int | None) -> CleanReport:
    """Delete all but the newest ``keep`` finished pipeline runs of ``dag_id``."""
    report = CleanReport()
    if keep is None:
        return report
    finished = [r for r in pipeline_runs(store_dir, dag_id) if r.finished_at is not None]
    for run in finished[: max(0, len(finished) - keep)]:
        report.freed_bytes += folder_size(run.path)
        remove_tree(run.path)
        report.deleted_runs.append(run.path)
    root = StoreLayout(store_dir).dag_runs(dag_id)
    states = JobStates(store_dir)
    prefix = f"{dag_id}/"  # one-off (per-run) job keys are "<dag_id>/<run_id>"
    one_off = [state for state in states.all() if state.job_key.startswith(prefix)]
    for dag_run in [p for p in root.glob("*") if p.is_dir()]:
        if _finished_at(dag_run) is None or any(dag_run.glob(f"{RUN_FOLDER_PREFIX}*")):
            continue
        remove_tree(dag_run)
        for state in one_off:
            key = state.job_key
            if safe_name(key[len(prefix):]) == dag_run.name:
                states.delete(key)
                report.released_jobs[key] = state.snapshot_id
    return report


def collect_snapshots(store_dir: Path, candidates: set[str]) -> int:
    """Delete the ``candidates`` no job state references any more; bytes freed.

    Only snapshots of released jobs are candidates: one made by hand with the CLI
    is never collected behind its owner's back.
    """
    store = SnapshotStore(StoreLayout(store_dir).snapshots)
    referenced = {state.snapshot_id for state in JobStates(store_dir).all()}
    for snapshot_id in candidates - referenced:
        if store.exists(snapshot_id):
            store.delete(snapshot_id)
    return store.collect_garbage()
