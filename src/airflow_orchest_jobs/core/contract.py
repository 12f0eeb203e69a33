"""The run contract: what a step container sees, so unmodified Orchest code runs in it.

Pure (no Airflow, no Docker): the step operator turns these values into a container, and
tests check them without either. See ``shared/orchest-format.md``, "What a step container
sees": the run's project copy at /project-dir, /data, the run's definition at
``ORCHEST_PIPELINE_PATH``, Orchest's variables, and a runner choosing the interpreter.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .model import DATA_DIR, PROJECT_DIR, Pipeline, Step

__all__ = [
    "DATA_DIR",
    "DEFINITION_PATH",
    "ORCHEST_NAMES",
    "PROJECT_DIR",
    "RUNNER_DIR",
    "RUNNER_FILES",
    "RUNNER_IMAGE_VARIABLE",
    "SESSION_TYPE",
    "runner_dir",
    "stage_runner",
    "step_command",
    "step_environment",
    "step_log_path",
    "step_working_dir",
]

#: Where the runner folder is mounted (read-only) in every step container.
RUNNER_DIR = "/orchest-runner"
#: The runner's files (the rest of the ``runtime`` package is not needed in containers).
RUNNER_FILES = ("runner.sh", "notebook.py")
#: Names the image in the runner's "missing interpreter" error (ours, not Orchest's).
RUNNER_IMAGE_VARIABLE = "ORCHEST_RUNNER_IMAGE"
#: Where Orchest mounted the run's definition (also at ORCHEST_PIPELINE_PATH here).
DEFINITION_PATH = "/pipeline.json"
#: Variables Orchest set itself; they win over user variables of the same name.
ORCHEST_NAMES = ("ORCHEST_STEP_UUID", "ORCHEST_PIPELINE_UUID", "ORCHEST_PIPELINE_PATH",
                 "ORCHEST_PROJECT_UUID", "ORCHEST_SESSION_UUID", "ORCHEST_SESSION_TYPE")
#: Jobs ran as Orchest's non-interactive sessions.
SESSION_TYPE = "noninteractive"


def step_environment(
    job_env: Mapping[str, str],
    *,
    pipeline: Pipeline,
    step: Step,
    project_uuid: str,
    run_uuid: str,
) -> dict[str, str]:
    """Job variables first, then Orchest's own names, which win (as in Orchest)."""
    env = {str(name): str(value) for name, value in job_env.items()}
    env.update(
        ORCHEST_STEP_UUID=step.uuid,
        ORCHEST_PIPELINE_UUID=pipeline.uuid,
        ORCHEST_PIPELINE_PATH=posixpath.join(PROJECT_DIR, str(pipeline.rel_path)),
        ORCHEST_PROJECT_UUID=project_uuid,
        ORCHEST_SESSION_UUID=run_uuid,
        ORCHEST_SESSION_TYPE=SESSION_TYPE,
    )
    return env


def step_command(pipeline: Pipeline, step: Step) -> list[str]:
    """The container command: the runner, given the step file's container path.

    Parameters never appear here: steps read them from the definition file.
    """
    return ["/bin/sh", posixpath.join(RUNNER_DIR, "runner.sh"), pipeline.step_container_path(step)]


def step_working_dir(pipeline: Pipeline, step: Step) -> str:
    """The folder of the step's file inside the container (Orchest's working directory)."""
    return posixpath.dirname(pipeline.step_container_path(step))


def notebook_html(pipeline_rel: str, file_path: str) -> str | None:
    """Where the runner writes a notebook step's HTML, relative to the project copy
    (``pipeline_rel``: the pipeline file's path in the project); None for a notebook
    outside the project (under /data/, its HTML is in the data folder)."""
    if file_path.startswith("/"):
        return None
    path = posixpath.normpath(posixpath.join(posixpath.dirname(pipeline_rel), file_path))
    if path == ".." or path.startswith("../"):
        return None
    return posixpath.splitext(path)[0] + ".html"


def step_log_path(pipeline_uuid: str, step_uuid: str) -> str:
    """Where the runner keeps a step's output, relative to the project copy (as Orchest)."""
    return f".orchest/pipelines/{pipeline_uuid}/logs/{step_uuid}.log"


def runner_dir() -> Path:
    """Host path of the runner's files in the installed package."""
    return Path(__file__).resolve().parent.parent / "runtime"


def stage_runner(folder: Path) -> Path:
    """Copy the runner's files into ``folder`` (a host-visible place) and return it.

    The package may live where the Docker engine cannot see it (inside an Airflow
    container talking to the host's engine); the run folder follows the store's path
    rule, so a copy there can always be bind-mounted. Safe to call concurrently.
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = runner_dir()
    for name in RUNNER_FILES:
        data = (source / name).read_bytes()
        target = folder / name
        if target.is_file() and target.read_bytes() == data:
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return folder
