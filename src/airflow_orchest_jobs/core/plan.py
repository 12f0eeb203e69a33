"""Planning a job run: one folder and one definition per selected pipeline run.

Pure logic behind the planning and prepare tasks. A run folder holds ``pipeline.json``
(the run's definition, parameters substituted) and ``project/`` (the snapshot checkout
the step containers see as ``/project-dir``).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import OrchestError
from .model import Pipeline
from .request import RunRequest
from .snapshot.fsops import write_atomically


def run_uuid(job_run_key: str, index: int) -> str:
    """Stable per (job run, run index): a cleared run keeps its uuid and folder."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orchest-run:{job_run_key}:{index}"))


def lanes_needed(count: int, max_map_length: int) -> int:
    return max(1, math.ceil(count / max_map_length))


def plan_runs(
    pipeline: Pipeline,
    request: RunRequest,
    *,
    run_root: Path,
    job_run_key: str,
    snapshot_id: str,
    images: Mapping[str, str],
    lanes: int,
    max_map_length: int,
    env_sources: list[str] | tuple[str, ...] = (),
    has_services: bool = False,
) -> list[dict[str, Any]]:
    """Write each selected run's definition; return one description per run.

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
    plain_env = {k: v for k, v in request.env_variables.items() if isinstance(v, str)}
    secret_env = {k: v for k, v in request.env_variables.items() if not isinstance(v, str)}
    out: list[dict[str, Any]] = []
    for position, index in enumerate(request.runs):
        folder = run_root / f"run-{index:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        definition = folder / "pipeline.json"
        write_atomically(definition, json.dumps(pipeline.definition(request.grid.run(index)),
                                                indent=2).encode(), folder, durable=False)
        out.append({
            "index": index,
            "position": position,
            "label": request.grid.label(index),
            "job_run_key": job_run_key,
            "has_services": has_services,
            "run_uuid": run_uuid(job_run_key, index),
            "run_dir": str(folder),
            "project_dir": str(folder / "project"),
            "definition": str(definition),
            "pipeline_rel": str(pipeline.rel_path),
            "snapshot_id": snapshot_id,
            "images": dict(images),
            "env": plain_env,
            "secret_env": secret_env,
            "env_sources": list(env_sources),
        })
    write_run_index(run_root, [
        {"index": run["index"], "label": run["label"], "run_uuid": run["run_uuid"],
         "parameters": request.grid.run(run["index"])} for run in out])
    return out


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


def prepare_run_folder(snapshots_root: Path, run: Mapping[str, Any],
                       owner: tuple[int, int] | None = None) -> None:
    """Fresh checkout of the snapshot, with the run's definition over the pipeline file.

    A retried or cleared run starts from a clean copy: nothing of a failed try leaks in.
    ``owner``: (uid, gid) to hand the copy to, when steps run as another user than us.
    """
    from .failfast import clear_failure
    from .snapshot.store import SnapshotStore, remove_tree

    clear_failure(Path(run["run_dir"]))
    dest = Path(run["project_dir"])
    if dest.exists():
        remove_tree(dest)
    SnapshotStore(snapshots_root).checkout(run["snapshot_id"], dest)
    target = dest / run["pipeline_rel"]
    target.unlink(missing_ok=True)
    target.write_bytes(Path(run["definition"]).read_bytes())
    if owner is not None:
        hand_over(dest, owner)


def hand_over(folder: Path, owner: tuple[int, int]) -> None:
    """Give a run's project copy to the (unprivileged) step user, when we are root."""
    if os.geteuid() != 0 or owner == (0, 0):
        return
    for parent, dirs, files in os.walk(folder):
        os.chown(parent, *owner)
        for name in dirs + files:
            os.chown(os.path.join(parent, name), *owner, follow_symlinks=False)
