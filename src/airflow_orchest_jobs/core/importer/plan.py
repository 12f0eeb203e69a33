"""An Orchest installation -> what to write: per project, its folder, job files and
Variables; installation-wide, the webhook Connections and the parallelism setting.

Every item that cannot be carried is one line naming the project and job and the fix;
a project with such a line is not written under ``--apply`` (all or nothing per project).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import OrchestError
from ..model import Pipeline
from ..naming import job_dag_id
from ..pipeline import load_pipeline
from ..project import JOB_SUFFIX
from ..variables import pipeline_variable, project_variable
from .jobs import disposition, file_stem, job_file_text, map_job
from .model import Installation, OrchestJob, OrchestPipeline, OrchestProject
from .webhooks import WEBHOOKS_VARIABLE, ConnectionSpec, map_webhooks

#: Orchest's default for MAX_JOB_RUNS_PARALLELISM (one pipeline run at a time).
ORCHEST_DEFAULT_PARALLELISM = 1


@dataclass
class JobRow:
    """One line of the dry-run table."""

    name: str
    file: str
    dag_id: str
    state: str
    runs: str
    #: The environment uuids its steps use (``image:<ref>`` for an old step image).
    environments: tuple[str, ...] = ()


@dataclass
class ProjectPlan:
    folder: str
    orchest_uuid: str
    #: Folder to copy into ``projects_dir/<folder>`` (None: it must already be there).
    source: Path | None
    #: Job files: path relative to the project -> text.
    files: dict[str, str] = field(default_factory=dict)
    #: Airflow Variables: name -> value (project, pipeline and job-only variables).
    variables: dict[str, str] = field(default_factory=dict)
    jobs: list[JobRow] = field(default_factory=list)
    #: job uuid -> job file (relative): keeps names stable across imports.
    job_files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportPlan:
    projects: list[ProjectPlan] = field(default_factory=list)
    connections: dict[str, ConnectionSpec] = field(default_factory=dict)
    #: conn ids for the ``orchest_jobs_webhooks`` Variable (merged with what it holds).
    webhook_ids: list[str] = field(default_factory=list)
    #: ``[orchest_jobs]`` settings: key -> value.
    settings: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sources:
    """Where project files come from: each project's folder (``--userdir``), or each
    job's frozen snapshot (``--from-job-snapshots``), or None (already in place)."""

    project_dir: Callable[[OrchestProject], Path | None]
    snapshot_dir: Callable[[OrchestJob], Path | None] | None = None
    #: Project folders already in ``projects_dir`` (used when a source gives none).
    existing_dir: Callable[[str], Path | None] = lambda folder: None


def _selected(job: OrchestJob, wanted: Collection[str]) -> bool:
    return not wanted or job.uuid in wanted or job.name in wanted or \
        file_stem(job.name) in wanted


def plan_import(installation: Installation, sources: Sources, now: datetime, *,
                projects: Collection[str] = (), jobs: Collection[str] = (),
                known_files: Mapping[str, str] | None = None) -> ImportPlan:
    """``known_files``: job uuid -> ``<folder>/<relative job file>`` from earlier imports."""
    known = dict(known_files or {})
    plan = ImportPlan()
    by_uuid = {p.uuid: p for p in installation.projects}
    unknown = sorted(set(projects) - {p.folder for p in installation.projects}
                     - set(by_uuid))
    for name in unknown:
        plan.problems.append(f"--projects {name}: no such project in Orchest (its projects: "
                             f"{', '.join(sorted(p.folder for p in installation.projects))})")
    pipelines = {(p.project_uuid, p.uuid): p for p in installation.pipelines}
    dag_ids: dict[str, tuple[str, str]] = {}  # job uuid -> (folder, dag id)
    for project in sorted(installation.projects, key=lambda p: p.folder):
        if projects and project.folder not in projects and project.uuid not in projects:
            continue
        its_jobs = sorted((j for j in installation.jobs if j.project_uuid == project.uuid
                           and _selected(j, jobs)), key=lambda j: (j.created_time, j.uuid))
        its_pipelines = [p for p in installation.pipelines if p.project_uuid == project.uuid]
        if sources.snapshot_dir is None:
            project_plan = _plan_project(project, its_pipelines, its_jobs, pipelines,
                                         sources.project_dir(project)
                                         or sources.existing_dir(project.folder),
                                         sources.project_dir(project), now, known, dag_ids)
            plan.projects.append(project_plan)
        else:
            for job in its_jobs:
                stem = file_stem(job.name)
                folder = f"{project.folder}--{stem}"
                snapshot = sources.snapshot_dir(job)
                renamed = OrchestProject(project.uuid, folder, project.env_variables)
                project_plan = _plan_project(renamed, its_pipelines, [job], pipelines,
                                             snapshot, snapshot, now, known, dag_ids)
                if snapshot is None and project_plan.jobs:
                    project_plan.problems.append(
                        f"job {job.name!r}: no snapshot folder jobs/{project.uuid}/"
                        f"{job.pipeline_uuid}/{job.uuid}/snapshot in the userdir; copy "
                        "Orchest's /userdir/jobs too, or import without --from-job-snapshots")
                plan.projects.append(project_plan)
    if installation.webhooks is None:
        plan.notes.append("webhooks: Orchest's HTTP API never returns their URLs and "
                          "secrets, so none were imported; import with --db, or add each "
                          "as an orchest_webhook Connection (README: Moving from Orchest)")
    else:
        folders = {p.uuid: p.folder for p in installation.projects}
        plan.connections, plan.webhook_ids, notes = map_webhooks(
            installation.webhooks, folders, dag_ids)
        plan.notes += notes
    parallelism = installation.settings.get("MAX_JOB_RUNS_PARALLELISM",
                                            ORCHEST_DEFAULT_PARALLELISM)
    if isinstance(parallelism, int) and not isinstance(parallelism, bool) and parallelism > 0:
        plan.settings["max_parallel_pipeline_runs"] = str(parallelism)
    else:
        plan.problems.append(f"setting MAX_JOB_RUNS_PARALLELISM {parallelism!r} is not a "
                             "positive integer; set [orchest_jobs] max_parallel_pipeline_runs "
                             "by hand")
    return plan


def _plan_project(project: OrchestProject, its_pipelines: list[OrchestPipeline],
                  its_jobs: list[OrchestJob],
                  pipelines: Mapping[tuple[str, str], OrchestPipeline],
                  files_dir: Path | None, source: Path | None, now: datetime,
                  known: Mapping[str, str], dag_ids: dict[str, tuple[str, str]]
                  ) -> ProjectPlan:
    out = ProjectPlan(folder=project.folder, orchest_uuid=project.uuid, source=source)
    where = f"project {project.folder}"
    if files_dir is None:
        out.problems.append(f"{where}: its folder is neither in the userdir nor in "
                            "projects_dir; pass --userdir (Orchest's /userdir) or copy "
                            f"/userdir/projects/{project.folder} into projects_dir")
    if project.env_variables:
        out.variables[project_variable(project.folder)] = _env_json(project.env_variables)
    for pipeline in its_pipelines:
        if pipeline.env_variables:
            out.variables[pipeline_variable(project.folder, pipeline.path)] = _env_json(
                pipeline.env_variables)
    taken: set[str] = set()
    loaded: dict[str, Pipeline | str] = {}
    for job in its_jobs:
        _plan_job(out, project, job, pipelines, files_dir, now, known, taken, loaded,
                  dag_ids)
    return out


def _plan_job(out: ProjectPlan, project: OrchestProject, job: OrchestJob,
              pipelines: Mapping[tuple[str, str], OrchestPipeline], files_dir: Path | None,
              now: datetime, known: Mapping[str, str], taken: set[str],
              loaded: dict[str, Pipeline | str], dag_ids: dict[str, tuple[str, str]]
              ) -> None:
    label = f"project {project.folder}: job {job.name!r} ({job.uuid})"
    state, _, _ = disposition(job, now)
    if not state:
        why = {"DRAFT": "a draft, never started", "STARTED": "running now (its runs are "
               "Orchest's)"}.get(job.status, f"a finished one-off job ({job.status})")
        out.notes.append(f"{label}: not imported: {why}")
        return
    row = pipelines.get((job.project_uuid, job.pipeline_uuid))
    pipeline_rel = row.path if row is not None else job.pipeline_path
    if not pipeline_rel:
        out.problems.append(f"{label}: its pipeline {job.pipeline_uuid} is gone from Orchest; "
                            "leave the job out (--jobs) or re-create it")
        return
    pipeline_rel = posixpath.normpath(pipeline_rel.lstrip("/"))
    if files_dir is None:
        return
    if pipeline_rel not in loaded:
        try:
            loaded[pipeline_rel] = load_pipeline(files_dir / pipeline_rel, files_dir,
                                                 check_files=False)
        except OrchestError as exc:
            loaded[pipeline_rel] = "; ".join(str(p) for p in exc.problems)
        except OSError as exc:
            loaded[pipeline_rel] = f"cannot be read ({exc.strerror})"
    pipeline = loaded[pipeline_rel]
    if isinstance(pipeline, str):
        out.problems.append(f"{label}: its pipeline {pipeline_rel} does not load ({pipeline}); "
                            "fix the pipeline file")
        return
    stem = _unique_stem(job, project.folder, pipeline_rel, known, taken)
    inherited = dict(project.env_variables)
    if row is not None:
        inherited.update(row.env_variables)
    mapped = map_job(job, project=project.folder, stem=stem, pipeline=pipeline,
                     pipeline_rel=pipeline_rel, inherited=inherited, now=now)
    folder = posixpath.dirname(pipeline_rel)
    rel = posixpath.join(folder, stem + JOB_SUFFIX) if folder else stem + JOB_SUFFIX
    dag_id = job_dag_id(project.folder, stem)
    out.problems += [f"{label}: {p}" for p in mapped.problems]
    out.notes += [f"{label}: {n}" for n in mapped.notes]
    out.files[rel] = job_file_text(mapped.document)
    out.variables.update(mapped.variables)
    out.job_files[job.uuid] = rel
    environments = sorted({s.environment or f"image:{s.image}" for s in
                           pipeline.steps.values() if s.environment or s.image})
    out.jobs.append(JobRow(job.name, rel, dag_id, mapped.state, mapped.runs_text,
                           tuple(environments)))
    dag_ids[job.uuid] = (project.folder, dag_id)


def _unique_stem(job: OrchestJob, folder: str, pipeline_rel: str, known: Mapping[str, str],
                 taken: set[str]) -> str:
    """The name an earlier import gave the job, else its file-safe name, made unique in
    the project (job DAG ids are per project and name)."""
    earlier = known.get(job.uuid, "")
    if earlier.startswith(folder + "/"):
        stem = posixpath.basename(earlier)[: -len(JOB_SUFFIX)]
        if stem not in taken:
            taken.add(stem)
            return stem
    base = file_stem(job.name)
    stem, n = base, 2
    others = {posixpath.basename(v)[: -len(JOB_SUFFIX)] for k, v in known.items()
              if k != job.uuid and v.startswith(folder + "/")}
    while stem in taken or stem in others:
        stem, n = f"{base}-{n}", n + 1
    taken.add(stem)
    return stem


def _env_json(env: Mapping[str, Any]) -> str:
    """A project or pipeline Variable's value: a JSON object of strings, sorted."""
    return json.dumps({k: v if isinstance(v, str) else json.dumps(v)
                       for k, v in sorted(env.items())}, ensure_ascii=False)


__all__ = [
    "WEBHOOKS_VARIABLE",
    "ConnectionSpec",
    "ImportPlan",
    "JobRow",
    "ProjectPlan",
    "Sources",
    "plan_import",
]
