"""Scan projects into pipelines and jobs, keeping each file's problems to itself.

One bad pipeline or job file never hides the good ones: the scan returns what loaded
and, separately, the problems of what did not. That holds by construction: whatever a
file's loading raises (a problem found, or an exception no check foresaw) becomes that
file's problems, and whatever a project's loading raises becomes that project's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OrchestError, Problem, problems_of
from .grid import ParameterSpace, load_parameters
from .job import JobSpec, load_job, read_job_file
from .model import Pipeline
from .pipeline import load_pipeline
from .project import Project, discover_projects, parameters_file_for
from .textcheck import name_problem

log = logging.getLogger("airflow_orchest_jobs.scan")


@dataclass
class LoadedPipeline:
    project: Project
    pipeline: Pipeline
    #: The default parameter space: the ``<pipeline>.parameters.json`` file, or {}.
    parameters: ParameterSpace
    parameters_file: Path | None


@dataclass
class LoadedJob:
    project: Project
    spec: JobSpec
    pipeline: Pipeline


@dataclass
class Scan:
    pipelines: list[LoadedPipeline] = field(default_factory=list)
    jobs: list[LoadedJob] = field(default_factory=list)
    #: Problems by the file they belong to (pipeline, parameters, job or environment file).
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    def add(self, file: Path | str, exc: BaseException) -> None:
        """``exc``'s problems as ``file``'s (any exception: see ``errors.problems_of``)."""
        self.problems.setdefault(str(file), []).extend(problems_of(file, exc, log))

    @property
    def all_problems(self) -> list[Problem]:
        return [p for problems in self.problems.values() for p in problems]


def snapshot_pipeline(snapshots_root: Path, snapshot_id: str, pipeline_rel: str,
                      environment_images: Mapping[str, str]) -> Pipeline:
    """A pipeline as a snapshot holds it (from a read-only view of the store)."""
    from .snapshot.store import SnapshotStore

    view = SnapshotStore(snapshots_root).view(snapshot_id)
    return load_pipeline(view.root / pipeline_rel, view.root,
                         environments=known_environments(Project(view.root),
                                                         environment_images),
                         check_files=True)


def known_environments(project: Project, environment_images: Mapping[str, str]
                       ) -> set[str] | None:
    """Environment uuids a step may name; None when ``"*"`` maps every environment."""
    if "*" in environment_images:
        return None
    return set(project.environments) | set(environment_images)


def scan_project(project: Project, environment_images: Mapping[str, str] | None = None,
                 data_dir: Path | None = None, scan: Scan | None = None) -> Scan:
    """Load every pipeline and job file of ``project`` into ``scan`` (see module docstring)."""
    scan = scan if scan is not None else Scan()
    try:
        _scan_project(project, environment_images or {}, data_dir, scan)
    except Exception as exc:  # the project's boundary: contain anything
        scan.add(project.path, exc)
    return scan


def _scan_project(project: Project, environment_images: Mapping[str, str],
                  data_dir: Path | None, scan: Scan) -> None:
    bad_name = name_problem(project.name)
    if bad_name:
        raise OrchestError.single(project.path, "", bad_name)
    try:
        environments = known_environments(project, environment_images)
    except Exception as exc:  # one file's boundary
        scan.add(project.path / ".orchest" / "environments", exc)
        environments = None
    by_path: dict[Path, Pipeline] = {}
    for path in project.pipelines:
        try:
            pipeline = load_pipeline(path, project.path, environments=environments,
                                     data_dir=data_dir)
            params_file = parameters_file_for(path)
            params = load_parameters(params_file, pipeline) if params_file.is_file() else {}
        except Exception as exc:  # one file's boundary
            scan.add(path, exc)
            continue
        by_path[path] = pipeline
        scan.pipelines.append(LoadedPipeline(project, pipeline, params,
                                             params_file if params_file.is_file() else None))
    for path in project.job_files:
        try:
            _, pipeline_path = read_job_file(path, project.path)
            job_pipeline = by_path.get(pipeline_path)
            if job_pipeline is None:
                raise OrchestError.single(path, "pipeline", f"pipeline {pipeline_path.name} "
                                          "has problems of its own (see that file); fix them")
            scan.jobs.append(LoadedJob(project, load_job(path, project.path, job_pipeline),
                                       job_pipeline))
        except Exception as exc:  # one file's boundary
            scan.add(path, exc)


def scan_projects(projects_dir: Path, environment_images: Mapping[str, str] | None = None,
                  data_dir: Path | None = None) -> Scan:
    scan = Scan()
    for project in discover_projects(projects_dir):
        scan_project(project, environment_images, data_dir, scan)
    return scan
