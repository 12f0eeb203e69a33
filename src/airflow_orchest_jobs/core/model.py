"""The normalised, typed Orchest pipeline: what every file version loads into."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

#: Where a step container sees the run's project copy and the shared data folder.
PROJECT_DIR = "/project-dir"
DATA_DIR = "/data"

#: Notebook kernels Orchest knew, by the language name stored in the step.
KERNEL_LANGUAGES = ("python", "r", "julia", "javascript")


@dataclass(frozen=True)
class Step:
    uuid: str
    title: str
    #: As written in the file: relative to the pipeline file's folder, or absolute under /data/.
    file_path: str
    #: Parent step uuids; their order is the order of unnamed inputs.
    incoming: tuple[str, ...]
    #: Environment uuid (None for the legacy layout, which names a Docker ``image`` instead).
    environment: str | None
    image: str | None
    kernel: str | None
    parameters: Mapping[str, Any]

    @property
    def is_notebook(self) -> bool:
        return self.file_path.lower().endswith(".ipynb")


@dataclass(frozen=True)
class PipelineSettings:
    max_steps_parallelism: int = 0
    auto_eviction: bool = False
    data_passing_memory_size: str = "1GB"


@dataclass(frozen=True)
class Pipeline:
    #: Absolute path of the .orchest file and of the project folder that holds it.
    path: Path
    project_dir: Path
    name: str
    uuid: str
    #: Version after migration (always the newest) and as found in the file.
    version: str
    source_version: str | None
    parameters: Mapping[str, Any]
    settings: PipelineSettings
    #: Steps keyed by uuid, in file order (the order Orchest's grid uses).
    steps: Mapping[str, Step]
    services: Mapping[str, Any] = field(default_factory=dict)
    #: The migrated JSON document; per-run definitions are built from it.
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def folder_text(self) -> str:
        """The folder of the pipeline file, as text (step paths are relative to it)."""
        return os.path.dirname(os.fspath(self.path))

    @property
    def rel_path(self) -> PurePosixPath:
        """The pipeline file's path inside the project (posix)."""
        return PurePosixPath(self.path.relative_to(self.project_dir).as_posix())

    @property
    def environments(self) -> tuple[str, ...]:
        """Environment uuids the steps use, in first-use order."""
        seen: dict[str, None] = {}
        for step in self.steps.values():
            if step.environment:
                seen.setdefault(step.environment, None)
        return tuple(seen)

    def step_container_path(self, step: Step) -> str:
        """Where the step's file is inside a step container."""
        if step.file_path.startswith("/"):
            return posixpath.normpath(step.file_path)
        folder = posixpath.join(PROJECT_DIR, str(self.rel_path.parent))
        return posixpath.normpath(posixpath.join(folder, step.file_path))

    def step_host_path(self, step: Step, data_dir: Path | None = None) -> Path | None:
        """The step's file on the host, in the project (or under ``data_dir`` for /data/)."""
        if step.file_path.startswith("/"):
            if data_dir is None:
                return None
            rel = posixpath.relpath(posixpath.normpath(step.file_path), DATA_DIR)
            return data_dir / rel
        return Path(self.step_host_text(step))

    def step_host_text(self, step: Step) -> str:
        """A project step's file on the host, as text (``file_path`` relative to the
        pipeline file; parsing checks every step with it, Paths would cost)."""
        return posixpath.normpath(posixpath.join(self.folder_text, step.file_path))

    def definition(self, run_parameters: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> dict[str, Any]:
        """The pipeline JSON with one run's parameters substituted (Orchest's run copy)."""
        doc: dict[str, Any] = json.loads(json.dumps(self.document))
        for key, values in (run_parameters or {}).items():
            if key == "pipeline_parameters":
                doc.setdefault("parameters", {}).update(values)
            elif key in doc.get("steps", {}):
                doc["steps"][key].setdefault("parameters", {}).update(values)
        return doc
