"""Fail-fast pipeline runs: the first failed step of a run stops the rest of that run (and,
with ``stop_on_first_failure``, the first failed pipeline run stops its whole job run).

Orchest ran a pipeline run as one workflow with ``failFast``: the first failed step
aborted the run, running siblings were killed and steps not yet started never started.
Here the failing step writes one marker file in the run's folder (in the shared store,
so it works whatever host each step runs on); every other step of the run checks it
before starting its container and watches it while the container runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER = "failed-step.json"


@dataclass(frozen=True)
class FailedStep:
    """Which step failed a run (and the task instance that ran it)."""

    step_uuid: str
    title: str
    task_id: str
    map_index: int

    def describe(self) -> str:
        return f"step {self.title!r} ({self.step_uuid})"


def marker_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / MARKER


def mark_failed(run_dir: str | Path, failed: FailedStep) -> bool:
    """Record the run's first failure; False when another step failed first."""
    return _write_new(marker_path(run_dir), failed)


def failed_step(run_dir: str | Path) -> FailedStep | None:
    """The run's recorded failure, or None (a half-written marker counts once complete)."""
    try:
        data = json.loads(marker_path(run_dir).read_text())
        return FailedStep(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # being written right now: the watcher sees it on its next look


def clear_failure(run_dir: str | Path) -> None:
    marker_path(run_dir).unlink(missing_ok=True)


# --- The whole job run (``stop_on_first_failure``) -----------------------------------

#: In the job run's folder: the first pipeline run that failed, when the job stops there.
JOB_MARKER = "failed-run.json"


@dataclass(frozen=True)
class FailedRun:
    """The pipeline run whose failure stopped its job run (``stop_on_first_failure``)."""

    index: int
    label: str
    step_title: str
    #: The DAG run's clear count when it failed: a marker from before a clear is stale.
    generation: int = 0

    def describe(self) -> str:
        return f"pipeline run {self.index} ({self.label}) failed at step {self.step_title!r}"


def job_marker_path(run_root: str | Path) -> Path:
    return Path(run_root) / JOB_MARKER


def mark_run_failed(run_root: str | Path, failed: FailedRun) -> bool:
    """Record the job run's first failed pipeline run; False when one was recorded."""
    path = job_marker_path(run_root)
    if _write_new(path, failed):
        return True
    stale = failed_run(run_root)
    if stale is None or stale.generation >= failed.generation:
        return False
    path.unlink(missing_ok=True)  # left from before the DAG run was cleared
    return mark_run_failed(run_root, failed)


def failed_run(run_root: str | Path, generation: int | None = None) -> FailedRun | None:
    """The job run's recorded failed pipeline run (None: none, or one from before the
    DAG run's clear ``generation``)."""
    try:
        found = FailedRun(**json.loads(job_marker_path(run_root).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if generation is not None and found.generation < generation:
        return None
    return found


def _write_new(path: Path, failed: FailedStep | FailedRun) -> bool:
    """Write the marker unless one exists (exclusive create: the first writer wins)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(failed), handle)
    return True
