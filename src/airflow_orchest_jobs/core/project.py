"""An Orchest project on disk: its pipelines, environments, parameters and job files."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import OrchestError, Problem
from .jsonfile import read_json
from .snapshot.selection import ignore_rules

PIPELINE_SUFFIX = ".orchest"
PARAMETERS_SUFFIX = ".parameters.json"
JOB_SUFFIX = ".job.json"
#: Folders never searched: stale notebook copies, git internals, Orchest run output.
SKIPPED_DIRS = frozenset({".ipynb_checkpoints", ".git", "__pycache__", "node_modules"})


def project_uuid(name: str) -> str:
    """A stable uuid for a project folder name (Orchest kept it in a database)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "orchest-project:" + name))


@dataclass(frozen=True)
class Environment:
    uuid: str
    name: str
    language: str
    base_image: str
    gpu_support: bool
    folder: Path

    @property
    def setup_script(self) -> Path:
        return self.folder / "setup_script.sh"


def parameters_file_for(pipeline_path: Path) -> Path:
    """``main.orchest`` -> ``main.parameters.json`` beside it (Orchest's convention)."""
    return pipeline_path.with_name(pipeline_path.name[: -len(PIPELINE_SUFFIX)] + PARAMETERS_SUFFIX)


@dataclass(frozen=True)
class Project:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def uuid(self) -> str:
        return project_uuid(self.name)

    @cached_property
    def _files(self) -> tuple[list[Path], list[Path]]:
        pipelines: list[Path] = []
        jobs: list[Path] = []
        for path in self._walk((PIPELINE_SUFFIX, JOB_SUFFIX)):
            (pipelines if path.name.endswith(PIPELINE_SUFFIX) else jobs).append(path)
        return sorted(pipelines), sorted(jobs)

    def _walk(self, suffixes: tuple[str, ...]) -> Iterator[Path]:
        """Regular files named ``*<suffix>`` under the project, skipping ignored folders and
        git-ignored paths. Names are matched first: every parse walks every project, and
        most files (step files, data) are neither pipelines nor jobs."""
        rules = ignore_rules(self.path)
        for folder, dirs, files in os.walk(self.path):
            rel_folder = os.path.relpath(folder, self.path)
            rel_folder = "" if rel_folder == "." else rel_folder + "/"
            dirs[:] = sorted(
                d for d in dirs
                if d not in SKIPPED_DIRS
                and not (rel_folder == ".orchest/" and d == "pipelines")
                and not os.path.islink(os.path.join(folder, d))
                and not rules.is_ignored(rel_folder + d + "/")
            )
            for name in files:
                if not name.endswith(suffixes):
                    continue
                full = os.path.join(folder, name)
                try:  # a link, fifo or socket is never read (a fifo would block the parse)
                    regular = stat.S_ISREG(os.lstat(full).st_mode)
                except OSError:
                    regular = False
                if not regular or rules.is_ignored(rel_folder + name):
                    continue
                yield Path(full)

    @property
    def pipelines(self) -> list[Path]:
        return self._files[0]

    @property
    def job_files(self) -> list[Path]:
        return self._files[1]

    @cached_property
    def environments(self) -> dict[str, Environment]:
        """Environments by uuid; a malformed definition raises with every problem found."""
        found: dict[str, Environment] = {}
        problems: list[Problem] = []
        root = self.path / ".orchest" / "environments"
        for props in sorted(root.glob("*/properties.json")):
            try:
                data = read_json(props, "environment definition")
            except OrchestError as exc:
                problems.extend(exc.problems)
                continue
            if not isinstance(data, dict):
                problems.append(Problem(str(props), "", "must be a JSON object"))
                continue
            env_uuid = str(data.get("uuid") or props.parent.name)
            if env_uuid != props.parent.name:
                problems.append(Problem(str(props), "uuid", f"is {env_uuid!r} but the folder "
                                        f"is {props.parent.name!r}; make them equal"))
                continue
            found[env_uuid] = Environment(
                uuid=env_uuid,
                name=str(data.get("name", env_uuid)),
                language=str(data.get("language", "python")),
                base_image=str(data.get("base_image", "")),
                gpu_support=bool(data.get("gpu_support", False)),
                folder=props.parent,
            )
        if problems:
            raise OrchestError(problems)
        return found


def discover_projects(projects_dir: Path) -> list[Project]:
    """Every sub-folder of ``projects_dir`` is a project (hidden folders skipped)."""
    if not projects_dir.is_dir():
        raise OrchestError.single(projects_dir, "", "projects folder does not exist; create it "
                                  "or set [orchest_jobs] projects_dir")
    return [
        Project(entry)
        for entry in sorted(projects_dir.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    ]
