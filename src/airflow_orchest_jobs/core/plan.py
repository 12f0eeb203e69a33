"""Planning a job run: one folder and one definition per selected pipeline run.

Pure logic behind the planning and prepare tasks. A run folder holds ``pipeline.json``
(the run's definition, parameters substituted) and ``project/`` (the snapshot checkout
the step containers see as ``/project-dir``).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import OrchestError
from .failfast import clear_failure
from .flock import locked
from .model import Pipeline
from .request import RunRequest
from .rundesc import JobRun, RunDescription, RunKey
from .snapshot.fsops import write_atomically


def run_uuid(job_run_key: str, index: int) -> str:
    """Stable per (job run, run index): a cleared run keeps its uuid and folder."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orchest-run:{job_run_key}:{index}"))


def lanes_needed(count: int, max_map_length: int) -> int:
    return max(1, math.ceil(count / max_map_length))


def plan_runs(
    pipeline: Pipeline,
    request: RunRequest,
    job: JobRun,
    *,
    lanes: int,
    max_map_length: int,
) -> list[dict[str, Any]]:
    """Write each selected run's definition; return one :class:`RunKey` dict per run.

    Airflow maps at most ``max_map_length`` instances per mapped group, so a DAG has
    ``lanes`` copies of the group, each taking a slice; a grid that needs more lanes
    than the DAG has is refused here, before anything runs.
    """
    count = len(request.runs)
    if count > lanes * max_map_length:
        raise OrchestError.single(
            "trigger conf", "runs",
            f"{count} pipeline runs selected, but this DAG can map at most "
            f"{lanes * max_map_length} ({lanes} group(s) of [core] max_map_length = "
            f"{max_map_length}); select fewer runs, put the bigger grid in the parameters "
            "file (the DAG then gets more groups), or raise [core] max_map_length "
            "(AIRFLOW__CORE__MAX_MAP_LENGTH)")
    run_root = Path(job.run_root)
    keys: list[RunKey] = []
    index_entries: list[dict[str, Any]] = []
    for position, index in enumerate(request.runs):
        key = RunKey(index=index, position=position, label=request.grid.label(index),
                     run_uuid=run_uuid(job.job_run_key, index))
        parameters = request.grid.run(index)
        desc = RunDescription(job=job, key=key)
        desc.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(desc.definition, json.dumps(pipeline.definition(parameters),
                                                     indent=2).encode(),
                         desc.run_dir, durable=False)
        keys.append(key)
        index_entries.append({**key.to_dict(), "parameters": parameters})
    write_run_index(run_root, index_entries)
    return [key.to_dict() for key in keys]


#: In a job run's folder: one entry per selected pipeline run, in grid order.
RUN_INDEX = "runs.json"


def write_run_index(run_root: Path, entries: list[dict[str, Any]]) -> None:
    """The job run's pipeline runs (index, label, run uuid, parameters), for the views.

    ``parameters`` has the parameters-file shape: ``{"pipeline_parameters": {...},
    "<step uuid>": {...}}`` with one value each.
    """
    run_root.mkdir(parents=True, exist_ok=True)
    write_atomically(run_root / RUN_INDEX, json.dumps(entries).encode(), run_root,
                     durable=False)


def read_run_index(run_root: Path) -> list[dict[str, Any]]:
    """What :func:`write_run_index` wrote; [] before planning ran."""
    try:
        return list(json.loads((run_root / RUN_INDEX).read_text()))
    except FileNotFoundError:
        return []


#: In a run's folder: which clear of the DAG run its project copy was made for.
CHECKOUT_MARKER = "checkout.json"


def prepare_run_folder(snapshots_root: Path, run: RunDescription,
                       owner: tuple[int, int] | None = None) -> None:
    """Fresh checkout of the snapshot, with the run's definition over the pipeline file.

    A retried or cleared run starts from a clean copy: nothing of a failed try leaks in.
    ``owner``: (uid, gid) to hand the copy to, when steps run as another user than us.
    """
    from .snapshot.store import SnapshotStore, remove_tree

    clear_failure(run.run_dir)
    dest = run.project_dir
    if dest.exists():
        remove_tree(dest)
    SnapshotStore(snapshots_root).checkout(run.job.snapshot_id, dest)
    target = dest / run.job.pipeline_rel
    target.unlink(missing_ok=True)
    target.write_bytes(run.definition.read_bytes())
    if owner is not None:
        hand_over(dest, owner)


def ensure_checkout(snapshots_root: Path, run: RunDescription, generation: int,
                    owner: tuple[int, int] | None,
                    others_rerunning: Callable[[], bool]) -> bool:
    """Check the run's copy out once, by whichever of its first tasks starts first.

    ``generation`` is the DAG run's clear count: a copy made before the last clear is
    made afresh only when the whole run re-runs (``others_rerunning``: the run's other
    first tasks were cleared too), never under a step that kept its result. Returns
    whether this call made the copy.
    """
    marker = run.run_dir / CHECKOUT_MARKER
    with locked(run.run_dir / ".checkout.lock"):
        try:
            made_for = int(json.loads(marker.read_text())["generation"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            made_for = None
        if made_for is not None and (made_for >= generation or not others_rerunning()):
            if made_for < generation:
                _write_marker(marker, generation)
            return False
        prepare_run_folder(snapshots_root, run, owner)
        _write_marker(marker, generation)
        return True


def _write_marker(marker: Path, generation: int) -> None:
    """The copy's generation, and when the run (re-)started: its time limit counts from
    there (``pipeline_run_timeout``)."""
    started = time.time()
    write_atomically(marker, json.dumps({"generation": generation,
                                         "started_at": started}).encode(), marker.parent,
                     durable=False)


def run_started_at(run_dir: Path) -> float | None:
    """When the run's latest (re-)run started (epoch seconds), None before its checkout."""
    try:
        value = json.loads((run_dir / CHECKOUT_MARKER).read_text()).get("started_at")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def hand_over(folder: Path, owner: tuple[int, int]) -> None:
    """Give a run's project copy to the (unprivileged) step user, when we are root."""
    if os.geteuid() != 0 or owner == (0, 0):
        return
    for parent, dirs, files in os.walk(folder):
        os.chown(parent, *owner)
        for name in dirs + files:
            os.chown(os.path.join(parent, name), *owner, follow_symlinks=False)
