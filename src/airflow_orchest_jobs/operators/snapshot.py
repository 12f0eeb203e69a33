"""The first task of every Orchest DAG run: check the trigger, then create the job.

Creating a job means what it meant in Orchest: snapshot the project and freeze the
environment images. A ``per_job`` job does it once (its first run) and every later
run reuses the same snapshot and images; ``per_run`` does it for every DAG run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from ..config import load_settings
from ..core.errors import OrchestError
from ..core.job import SnapshotMode
from ..core.jobstate import FrozenJob, JobStates
from ..core.layout import StoreLayout
from ..core.request import conf_cost_warning, resolve_request
from ..core.rundesc import JobRun
from ..core.scan import snapshot_pipeline
from ..core.schedule import format_duration
from ..core.services import job_services, service_image_refs
from ..core.triggerform import FIELD_PREFIX, field_defaults, fold_form_conf
from ..core.variables import parse_level, pipeline_variable, project_variable, split_values
from ..engine.images import docker_client, environment_ref, freeze, job_image_owner, resolve_images
from .errors import user_error

if TYPE_CHECKING:
    from airflow.sdk import Context

    from ..core.jobdef import JobDefinition
    from ..core.settings import Settings


def request_for(job: JobDefinition, conf: dict[str, Any] | None):
    """The validated trigger request of ``job`` (raises AirflowFailException)."""
    # The UI's form adds a field per parameter and picks runs as strings: fold them into
    # the documented conf (a conf from the CLI or the REST API passes unchanged).
    from_form = conf is not None and any(key.startswith(FIELD_PREFIX) for key in conf)
    conf = fold_form_conf(conf, field_defaults(job.pipeline, job.parameters)
                          if from_form else None)
    try:
        return resolve_request(job.pipeline, conf, default_parameters=job.parameters,
                               default_runs=job.runs, default_env=job.env_variables,
                               default_timeout=job.pipeline_run_timeout,
                               default_stop_on_first_failure=job.stop_on_first_failure,
                               source=f"{job.dag_id}: trigger conf")
    except OrchestError as exc:
        raise user_error(exc) from None


class OrchestSnapshotOperator(BaseOperator):
    """Validate the conf, then snapshot the project and freeze its images (once per job)."""

    ui_color = "#e8f4fd"
    template_fields: Sequence[str] = ()

    def __init__(self, *, job: JobDefinition, **kwargs: Any):
        kwargs.setdefault("retries", 1)
        super().__init__(**kwargs)
        self.job = job

    def execute(self, context: Context) -> dict[str, Any]:
        """Returns the job run's :class:`JobRun` (what all its pipeline runs share)."""
        settings = load_settings()
        dag_run = context["dag_run"]
        request = request_for(self.job, dag_run.conf)
        if job_services(self.job.pipeline.services):
            from .run import remove_dead_services

            removed = remove_dead_services(settings, self.job.dag_id, context["ti"])
            if removed:
                self.log.info("Removed %d service container(s) left by ended job runs",
                              removed)
        self.log.info("Trigger accepted: %d of %d pipeline runs selected",
                      len(request.runs), len(request.grid))
        if request.pipeline_run_timeout or request.stop_on_first_failure:
            self.log.info("Time limit per pipeline run: %s; stop at the first failed "
                          "pipeline run: %s",
                          format_duration(request.pipeline_run_timeout)
                          if request.pipeline_run_timeout else "none",
                          "yes" if request.stop_on_first_failure else "no")

        warning = conf_cost_warning(dag_run.conf,
                                    len(request.runs) * len(self.job.pipeline.steps))
        if warning:
            self.log.warning("%s", warning)
        key = self.job.job_key(dag_run.run_id)
        try:
            state, created = JobStates(settings.store_dir).get_or_create(
                key, lambda: self._create_job(settings, key))
        except OrchestError as exc:
            raise user_error(exc) from None
        if created:
            self.log.info("Job created: snapshot %s, images %s", state.snapshot_id, state.images)
        else:
            self.log.info("Reusing the job's snapshot %s and frozen images %s (created %s)",
                          state.snapshot_id, state.images, state.created_at)
        plain, references = split_values(request.env_variables)
        return JobRun(
            job_key=key,
            job_run_key=f"{self.job.dag_id}/{dag_run.run_id}",
            run_root=str(StoreLayout(settings.store_dir).job_run(self.job.dag_id,
                                                                dag_run.run_id)),
            snapshot_id=state.snapshot_id,
            pipeline_rel=str(self.job.pipeline.rel_path),
            images=state.images,
            env=plain,
            secret_env=references,
            env_sources=tuple(self._env_sources()),
            has_services=bool(job_services(self.job.pipeline.services)),
            pipeline_run_timeout=request.pipeline_run_timeout,
            stop_on_first_failure=request.stop_on_first_failure,
        ).to_dict()

    def _env_sources(self) -> list[str]:
        """The project's and the pipeline's Airflow Variables that exist, checked now.

        Only their names travel on: the values (secrets, as in Orchest) are read by each
        step, masked. A malformed one fails the job run here, before any container.
        """
        from airflow.sdk import Variable

        job = self.job
        keys = [project_variable(job.project.name),
                pipeline_variable(job.project.name, job.pipeline.rel_path)]
        found = []
        for key in keys:
            text = Variable.get(key, default=None)
            try:
                parse_level(key, text)
            except OrchestError as exc:
                raise user_error(exc) from None
            if text is not None:
                found.append(key)
        if found:
            self.log.info("Environment variables from Airflow Variables %s", found)
        return found

    def _create_job(self, settings: Settings, key: str) -> FrozenJob:
        from ..core.snapshot.store import SnapshotStore

        job = self.job
        refs = {**resolve_images(job.pipeline, job.project.uuid, settings.environment_images),
                **service_image_refs(job.pipeline.services, lambda env: environment_ref(
                    env, job.project.uuid, settings.environment_images))}
        frozen = freeze(docker_client(settings.docker_url), refs,
                        job_image_owner(settings.store_dir, key))
        layout = StoreLayout(settings.store_dir)
        snapshot = SnapshotStore(layout.snapshots).create(job.project.path)
        self.log.info("Snapshot %s: %d files, %d bytes", snapshot.id, snapshot.file_count,
                      snapshot.total_bytes)
        extra: dict[str, Any] = {"dag_id": job.dag_id, "project": str(job.project.path)}
        if job.snapshot is SnapshotMode.PER_JOB:  # its DAG is built from this at every parse
            extra["pipeline_document"] = snapshot_pipeline(
                layout.snapshots, snapshot.id, str(job.pipeline.rel_path),
                settings.environment_images).document
        return FrozenJob(
            job_key=key,
            snapshot_id=snapshot.id,
            images=frozen,
            pipeline=str(job.pipeline.rel_path),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            extra=extra,
        )
