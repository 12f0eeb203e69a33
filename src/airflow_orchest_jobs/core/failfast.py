"""Fail-fast pipeline runs: the first failed step of a run stops the rest of that run.

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
    path = marker_path(run_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(failed), handle)
    return True


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
