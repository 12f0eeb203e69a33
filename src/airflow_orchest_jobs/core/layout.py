"""Where everything lives in ``store_dir``: the one place that spells the layout out.

::

    store_dir/
      snapshots/                 content-addressed project snapshots (SnapshotStore)
      jobs/<job key>.json        frozen jobs: snapshot id, pinned images (JobStates)
      runs/<dag id>/<run id>/    one job run: runs.json, run-00003/{pipeline.json,project/}
      run-slots/<scope>/         leases of whole-run limits (RunSlots)

Every worker must see the same store at the same path (see the README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def safe_name(text: str) -> str:
    """A file-name-safe, still readable rendering of a job key or run id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:200]


def run_folder(run_root: Path, index: int) -> Path:
    """The folder of grid run ``index`` in a job run's folder."""
    return run_root / f"run-{index:05d}"


@dataclass(frozen=True)
class StoreLayout:
    root: Path

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def run_slots(self) -> Path:
        return self.root / "run-slots"

    def dag_runs(self, dag_id: str) -> Path:
        """Every job run folder of one DAG."""
        return self.runs / safe_name(dag_id)

    def job_run(self, dag_id: str, run_id: str) -> Path:
        """One job run's folder."""
        return self.dag_runs(dag_id) / safe_name(run_id)
