"""What one Orchest DAG is built from: a pipeline plus how its job runs.

A pipeline DAG is a one-off job per DAG run (snapshot per run, defaults from the
parameters file); a job DAG follows its job file. Both share the same shape. Pure: the
DAG processor and ``validate`` build the same definitions, with the same checks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import OrchestError, Problem, problems_of
from .grid import ParameterSpace
from .job import DEFAULT_STEP_RETRY_DELAY, DagKind, SnapshotMode
from .jobstate import FrozenJob, JobStates
from .layout import StoreLayout
from .model import Pipeline
from .naming import job_dag_id, pipeline_dag_id
from .pipeline import pipeline_from_document
from .project import Project
from .scan import LoadedJob, LoadedPipeline, Scan, snapshot_pipeline
from .schedule import Schedule

log = logging.getLogger("airflow_orchest_jobs.jobdef")

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
    snapshot: SnapshotMode = SnapshotMode.PER_RUN
    kind: DagKind = DagKind.PIPELINE
    max_parallel_runs: int | None = None
    max_retained_pipeline_runs: int | None = None
    catchup: bool = False
    #: Stop a pipeline run at its first failed step (Orchest's behaviour).
    fail_fast: bool = True
    description: str = ""
    #: What the UI shows instead of the DAG id (the pipeline's name).
    display_name: str = ""
    source_files: tuple[Path, ...] = ()
    #: Snapshot the DAG structure was read from (a frozen per-job job), else None.
    frozen_snapshot: str | None = None
    #: Job-file options (see ``core.job.JobSpec``); pipeline DAGs keep the defaults.
    max_active_job_runs: int | None = None
    pipeline_run_timeout: float | None = None
    step_retries: int = 0
    step_retry_delay: float = DEFAULT_STEP_RETRY_DELAY
    stop_on_first_failure: bool = False
    start_date: datetime | None = None
    #: Created paused (a job file's ``"paused": true``).
    paused: bool = False

    def job_key(self, run_id: str) -> str:
        """Whose snapshot a DAG run uses: the job's own, or a one-off job per DAG run."""
        return self.dag_id if self.snapshot is SnapshotMode.PER_JOB else f"{self.dag_id}/{run_id}"

    def fingerprint(self) -> str:
        """Hash of every file the DAG depends on, by path, size and modification time: an
        edited step file is a new DAG version. The files are only stat-ed, never read:
        the DAG processor fingerprints every DAG on every parse."""
        digest = hashlib.blake2b(digest_size=10)
        digest.update((self.frozen_snapshot or "").encode())
        for path in sorted(set(self.source_files)):
            digest.update(os.fsencode(path))
            digest.update(_stat_key(path))
        return digest.hexdigest()


def _stat_key(path: Path) -> bytes:
    try:
        st = os.stat(path)
    except OSError:
        return b"missing"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()


def job_definitions(scan: Scan, store_dir: Path, environment_images: Mapping[str, str]
                    ) -> tuple[list[JobDefinition], dict[str, list[Problem]]]:
    """Every DAG's definition, and the problems of the files that make none.

    ``validate`` and the DAG factory both call this, so they agree on every file,
    including two files that would make the same DAG id.
    """
    problems = {file: list(found) for file, found in scan.problems.items()}
    found = []
    for loaded_pipeline in scan.pipelines:
        try:
            found.append(pipeline_definition(loaded_pipeline))
        except Exception as exc:  # one file's boundary: contain anything
            file = str(loaded_pipeline.pipeline.path)
            problems.setdefault(file, []).extend(problems_of(file, exc, log))
    states = JobStates(store_dir)
    for loaded in scan.jobs:
        try:
            found.append(job_definition(loaded, states, store_dir, environment_images))
        except Exception as exc:  # one file's boundary: contain anything
            file = str(loaded.spec.path)
            problems.setdefault(file, []).extend(problems_of(file, exc, log))
    definitions: dict[str, JobDefinition] = {}
    for definition in found:
        if definition.dag_id in definitions:
            file = str(definition.source_files[0])
            other = definitions[definition.dag_id].source_files[0]
            problems.setdefault(file, []).append(Problem(
                file, "", f"its DAG id {definition.dag_id!r} is already taken by {other}; "
                "rename one of the two files"))
            continue
        definitions[definition.dag_id] = definition
    return list(definitions.values()), problems


#: Airflow refuses longer DAG ids.
MAX_DAG_ID = 250


def _checked_dag_id(dag_id: str, file: Path) -> str:
    if len(dag_id) > MAX_DAG_ID:
        raise OrchestError.single(file, "", f"its DAG id would be {len(dag_id)} characters "
                                  f"long, Airflow allows {MAX_DAG_ID}; shorten the project "
                                  "folder's or the file's name")
    return dag_id


def pipeline_definition(loaded: LoadedPipeline) -> JobDefinition:
    pipeline = loaded.pipeline
    return JobDefinition(
        dag_id=_checked_dag_id(pipeline_dag_id(loaded.project.name, pipeline.rel_path),
                               pipeline.path),
        project=loaded.project,
        pipeline=pipeline,
        parameters=loaded.parameters,
        snapshot=SnapshotMode.PER_RUN,
        display_name=pipeline.name or str(pipeline.rel_path),
        description=f"Orchest pipeline {pipeline.name or pipeline.rel_path} "
                    f"({loaded.project.name}); each run is a one-off job",
        source_files=_source_files(pipeline, loaded.parameters_file),
    )


def job_definition(loaded: LoadedJob, states: JobStates, store_dir: Path,
                   environment_images: Mapping[str, str]) -> JobDefinition:
    spec, project = loaded.spec, loaded.project
    dag_id = _checked_dag_id(job_dag_id(project.name, spec.name), spec.path)
    pipeline = loaded.pipeline
    frozen = None
    if spec.snapshot is SnapshotMode.PER_JOB:
        state = states.get(dag_id)
        if state is not None:  # the job exists: its pipeline is the snapshot's, forever
            pipeline = frozen_pipeline(state, project, store_dir, environment_images)
            frozen = state.snapshot_id
    return JobDefinition(
        dag_id=dag_id,
        project=project,
        pipeline=pipeline,
        parameters=spec.parameters,
        runs=spec.runs,
        env_variables=spec.env_variables,
        schedule=spec.schedule,
        snapshot=spec.snapshot,
        kind=DagKind.JOB,
        display_name=f"{pipeline.name or pipeline.rel_path} · job {spec.name}",
        max_parallel_runs=spec.max_parallel_runs,
        max_retained_pipeline_runs=spec.max_retained_pipeline_runs,
        catchup=spec.catchup,
        fail_fast=spec.fail_fast,
        max_active_job_runs=spec.max_active_job_runs,
        pipeline_run_timeout=spec.pipeline_run_timeout,
        step_retries=spec.step_retries,
        step_retry_delay=spec.step_retry_delay,
        stop_on_first_failure=spec.stop_on_first_failure,
        start_date=spec.start_date,
        description=spec.description or f"Orchest job {spec.name} of {project.name}: "
                                        f"pipeline {spec.pipeline_path.name}",
        # A frozen job depends on its job file and its snapshot only, never on the project.
        source_files=(spec.path,) if frozen else (spec.path, *_source_files(pipeline, None)),
        frozen_snapshot=frozen,
        paused=spec.paused,
    )


def frozen_pipeline(state: FrozenJob, project: Project, store_dir: Path,
                    environment_images: Mapping[str, str]) -> Pipeline:
    """A frozen job's pipeline: the snapshot's, as kept in the job state when it was made.

    Parsing reads it from the job state, never from the snapshot; jobs frozen before the
    document was kept are read from a view of the snapshot (checked out once).
    """
    document = state.extra.get("pipeline_document")
    if document is not None:
        return pipeline_from_document(document, project.path / state.pipeline, project.path)
    return snapshot_pipeline(StoreLayout(store_dir).snapshots, state.snapshot_id,
                             state.pipeline, environment_images)


def _source_files(pipeline: Pipeline, parameters_file: Path | None) -> tuple[Path, ...]:
    files = [pipeline.path]
    if parameters_file is not None:
        files.append(parameters_file)
    for step in pipeline.steps.values():
        host = pipeline.step_host_path(step)
        if host is not None and not step.file_path.startswith("/"):
            files.append(host)
    return tuple(files)
