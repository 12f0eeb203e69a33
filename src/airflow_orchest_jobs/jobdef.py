"""What one Orchest DAG is built from: a pipeline plus how its job runs.

A pipeline DAG is a one-off job per DAG run (snapshot per run, defaults from the
parameters file); a job DAG follows its job file. Both share the same shape.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.grid import ParameterSpace
from .core.model import Pipeline
from .core.project import Project
from .core.schedule import Schedule


@dataclass
class JobDefinition:
    dag_id: str
    project: Project
    pipeline: Pipeline
    #: Default grid: the parameters file (or the job file's parameters), {} = defaults.
    parameters: ParameterSpace
    runs: tuple[int, ...] | None = None
    env_variables: Mapping[str, Any] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    #: "per_job": one snapshot for the job's life (job DAGs); "per_run": every DAG run.
    snapshot: str = "per_run"
    #: True for job files: job state keyed by the DAG; False: each DAG run is a job.
    is_job: bool = False
    max_parallel_runs: int | None = None
    max_retained_pipeline_runs: int | None = None
    catchup: bool = False
    #: Stop a pipeline run at its first failed step (Orchest's behaviour).
    fail_fast: bool = True
    description: str = ""
    source_files: tuple[Path, ...] = ()
    #: Snapshot the DAG structure was read from (a frozen per-job job), else None.
    frozen_snapshot: str | None = None

    def job_key(self, run_id: str) -> str:
        """Whose snapshot a DAG run uses: the job's own, or a one-off job per DAG run."""
        return self.dag_id if self.snapshot == "per_job" else f"{self.dag_id}/{run_id}"

    def fingerprint(self) -> str:
        """Hash of every file the DAG depends on: a changed step file is a new DAG version."""
        digest = hashlib.blake2b(digest_size=10)
        digest.update((self.frozen_snapshot or "").encode())
        for path in sorted(set(self.source_files)):
            digest.update(os.fsencode(path))
            digest.update(file_digest(path))
        return digest.hexdigest()


_DIGESTS: dict[tuple[str, int, int, int], bytes] = {}


def file_digest(path: Path) -> bytes:
    """Content hash, reused while size, mtime and inode are unchanged (per process)."""
    try:
        st = path.stat()
    except OSError:
        return b"missing"
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    found = _DIGESTS.get(key)
    if found is None:
        with open(path, "rb") as handle:
            found = hashlib.file_digest(handle, "blake2b").digest()
        _DIGESTS[key] = found
    return found
