"""DAG, task and folder names derived from Orchest names (Airflow allows [A-Za-z0-9_.-])."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe(text: str) -> str:
    return _UNSAFE.sub("_", text)


def pipeline_dag_id(project: str, pipeline_rel: PurePosixPath | str) -> str:
    rel = str(pipeline_rel)
    return f"orchest__{safe(project)}__{safe(rel.removesuffix('.orchest'))}"


def job_dag_id(project: str, job_name: str) -> str:
    return f"orchest_job__{safe(project)}__{safe(job_name)}"


def error_dag_id(project: str, file_rel: str) -> str:
    return f"orchest_invalid__{safe(project)}__{safe(file_rel)}"


def step_task_ids(steps: dict[str, str]) -> dict[str, str]:
    """Readable, unique task ids from step titles: ``{uuid: title}`` -> ``{uuid: task_id}``."""
    ids: dict[str, str] = {}
    taken: set[str] = {"prepare"}
    for uuid, title in steps.items():
        base = re.sub(r"_+", "_", safe(title.strip().lower().replace(" ", "_"))).strip("_.-")
        base = (base or "step")[:60]
        task_id = base if base not in taken else f"{base}_{safe(uuid)[:8]}"
        while task_id in taken:
            task_id += "_"
        taken.add(task_id)
        ids[uuid] = task_id
    return ids


#: The mapped task group of pipeline runs; the groups after the first (each holds at
#: most ``[core] max_map_length`` runs) are ``pipeline_run_2``, ``pipeline_run_3``, ...
GROUP = "pipeline_run"


def group_of(position: int, max_map_length: int) -> tuple[str, int]:
    """(group id, map index) of the ``position``-th run of a job run's run index."""
    lane, map_index = divmod(position, max_map_length)
    return (GROUP if lane == 0 else f"{GROUP}_{lane + 1}"), map_index


def position_of(task_id: str, map_index: int, max_map_length: int) -> tuple[int, str] | None:
    """(position, task inside the group) of a task instance, None when not in a run group."""
    group, _, task = task_id.partition(".")
    if not task or map_index < 0:
        return None
    if group == GROUP:
        lane = 0
    elif group.startswith(GROUP + "_") and group[len(GROUP) + 1:].isdigit():
        lane = int(group[len(GROUP) + 1:]) - 1
    else:
        return None
    return lane * max_map_length + map_index, task
