"""What an Orchest installation kept outside its project folders, as plain records.

One shape for both sources (Orchest's PostgreSQL and its HTTP API), so the mapping
cannot depend on where a value came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class OrchestProject:
    uuid: str
    #: The folder under ``/userdir/projects/`` (the webserver's ``projects.path``).
    folder: str
    env_variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrchestPipeline:
    uuid: str
    project_uuid: str
    #: The ``.orchest`` file relative to its project (the webserver's ``pipelines.path``).
    path: str
    env_variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrchestJob:
    uuid: str
    name: str
    project_uuid: str
    pipeline_uuid: str
    #: Cron string of a cron job; None for a one-off job.
    schedule: str | None
    next_scheduled_time: datetime | None
    #: DRAFT, PENDING, STARTED, PAUSED, SUCCESS, FAILURE, ABORTED.
    status: str
    #: ``{key: {"key", "title", "parameters": {name: "<JSON-encoded list>"}}}``: the grid.
    strategy_json: dict[str, Any]
    #: One dict per selected run, ``{key: {name: value}}``.
    parameters: list[dict[str, Any]]
    #: The job's whole set (project + pipeline + job, merged when it was created).
    env_variables: dict[str, Any]
    max_retained_pipeline_runs: int = -1
    pipeline_name: str = ""
    #: ``pipeline_run_spec.run_config.pipeline_path`` (used when the pipeline row is gone).
    pipeline_path: str | None = None
    created_time: str = ""

    @property
    def is_cron(self) -> bool:
        return bool(self.schedule)


@dataclass(frozen=True)
class OrchestSubscription:
    event_type: str
    project_uuid: str | None = None
    job_uuid: str | None = None


@dataclass(frozen=True)
class OrchestWebhook:
    uuid: str
    name: str
    url: str
    secret: str
    verify_ssl: bool
    content_type: str
    subscriptions: tuple[OrchestSubscription, ...] = ()


@dataclass
class Installation:
    """Everything read from one Orchest, by one source."""

    source: str
    projects: list[OrchestProject]
    pipelines: list[OrchestPipeline]
    jobs: list[OrchestJob]
    #: None when the source cannot give them (the HTTP API never returns URLs and secrets).
    webhooks: list[OrchestWebhook] | None
    #: Orchest's settings, name -> value (``MAX_JOB_RUNS_PARALLELISM``...).
    settings: dict[str, Any] = field(default_factory=dict)
