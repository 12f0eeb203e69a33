"""Event types and payloads exactly as Orchest's ``models/_events.py`` layered them.

Orchest built a payload layer by layer (``Event`` -> ``ProjectEvent`` -> ``JobEvent`` ->
``OneOffJobEvent``/``CronJobEvent`` -> ``CronJobRunEvent`` -> pipeline-run events); the
builders below produce the same nested dictionaries from what the plugin knows about a
job run. Quirks kept on purpose, since receivers were written against them: a cron job's
``job`` layer carries ``total_runs`` (Orchest's ``CronJobEvent`` merged the one-off
layer), ``timestamp`` is ``str()`` of an aware datetime (``2023-06-07 03:00:00.1+00:00``),
``failed_steps`` is present only for a failed run, ``number_in_run`` only for cron jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

#: Namespace of every id the notifications derive (events, deliveries, webhooks, jobs).
NAMESPACE = uuid.UUID("6f1d3c5e-0b7a-5d2e-9c41-3a8f0e2b7d90")

ONE_OFF = "one-off-job"
CRON = "cron-job"

#: The events this plugin sends, by Orchest's names.
ONE_OFF_EVENTS = tuple(f"project:one-off-job:{e}" for e in
                       ("started", "succeeded", "failed", "cancelled"))
ONE_OFF_RUN_EVENTS = tuple(f"project:one-off-job:pipeline-run:{e}" for e in
                           ("started", "succeeded", "failed", "cancelled"))
CRON_RUN_EVENTS = tuple(f"project:cron-job:run:{e}" for e in ("started", "succeeded", "failed"))
CRON_RUN_PIPELINE_RUN_EVENTS = tuple(f"project:cron-job:run:pipeline-run:{e}" for e in
                                     ("started", "succeeded", "failed", "cancelled"))
CRON_JOB_EVENTS = ("project:cron-job:paused", "project:cron-job:unpaused")
PING = "ping"
SENT_EVENTS = (*ONE_OFF_EVENTS, *ONE_OFF_RUN_EVENTS, *CRON_RUN_EVENTS,
               *CRON_RUN_PIPELINE_RUN_EVENTS, *CRON_JOB_EVENTS)

#: Orchest's pipeline-run statuses, by the run outcome names the plugin uses.
RUN_STATUS = {"started": "STARTED", "succeeded": "SUCCESS", "failed": "FAILURE",
              "cancelled": "ABORTED"}
#: A one-off job's status once its job run ended.
JOB_STATUS = {"succeeded": "SUCCESS", "failed": "FAILURE", "cancelled": "ABORTED"}


def derived_id(*parts: object) -> str:
    """A stable uuid for a tuple of facts: the same event always gets the same id."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


def timestamp(now: datetime | None = None) -> str:
    """Orchest's ``str(event.timestamp)``: ``2023-06-07 03:00:00.123456+00:00``."""
    return str(now or datetime.now(timezone.utc))


@dataclass(frozen=True)
class JobFacts:
    """What every event of one job run says about its project and job.

    ``kind``: :data:`ONE_OFF` or :data:`CRON`; ``job_run_number``: the job run's number
    among the job's runs (cron jobs' ``run.number``); ``total_runs``: pipeline runs of
    this job run.
    """

    project: str
    project_uuid: str
    dag_id: str
    run_id: str
    kind: str
    job_uuid: str
    job_name: str
    pipeline_name: str
    total_runs: int
    job_run_number: int = 0
    #: Airflow's clear number of the DAG run: a cleared job run notifies again.
    clear_number: int = 0
    #: The pipeline's steps: uuid -> title (for ``parameters`` and ``failed_steps``).
    step_titles: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_cron(self) -> bool:
        return self.kind == CRON

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "project_uuid": self.project_uuid,
                "dag_id": self.dag_id, "run_id": self.run_id, "kind": self.kind,
                "job_uuid": self.job_uuid, "job_name": self.job_name,
                "pipeline_name": self.pipeline_name, "total_runs": self.total_runs,
                "job_run_number": self.job_run_number, "clear_number": self.clear_number,
                "step_titles": dict(self.step_titles)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobFacts:
        return cls(project=str(data["project"]), project_uuid=str(data["project_uuid"]),
                   dag_id=str(data["dag_id"]), run_id=str(data["run_id"]),
                   kind=str(data["kind"]), job_uuid=str(data["job_uuid"]),
                   job_name=str(data["job_name"]),
                   pipeline_name=str(data["pipeline_name"]),
                   total_runs=int(data["total_runs"]),
                   job_run_number=int(data.get("job_run_number") or 0),
                   clear_number=int(data.get("clear_number") or 0),
                   step_titles={str(k): str(v) for k, v in
                                dict(data.get("step_titles") or {}).items()})


@dataclass(frozen=True)
class PipelineRunFacts:
    """One pipeline run as an event shows it."""

    #: Its place among the job run's selected runs (Orchest's index in the job run).
    position: int
    run_uuid: str
    #: ``{"pipeline_parameters" | step uuid: {name: value}}``, the run's values.
    parameters: Mapping[str, Mapping[str, Any]]
    #: Failed steps' uuids (only shown for a failed run).
    failed_steps: Sequence[str] = ()


def job_url_path(dag_id: str) -> str:
    """The job's page (Airflow's DAG view)."""
    return f"/dags/{quote(dag_id, safe='')}"


def pipeline_run_url_path(dag_id: str, run_id: str) -> str:
    """This plugin's pipeline-run view of the job run."""
    return (f"/orchest-jobs/ui/dags/{quote(dag_id, safe='')}/runs/"
            f"{quote(run_id, safe='')}")


def event_type(facts: JobFacts, what: str) -> str:
    """The job-level event (``started``, ``succeeded``, ``failed``, ``cancelled``).

    A cron job's job run is Orchest's "run" (a batch): ``project:cron-job:run:<what>``.
    """
    if facts.is_cron:
        return f"project:cron-job:run:{what}"
    return f"project:one-off-job:{what}"


def run_event_type(facts: JobFacts, outcome: str) -> str:
    """The pipeline-run event of a run (``started``, ``succeeded``, ``failed``,
    ``cancelled``)."""
    if facts.is_cron:
        return f"project:cron-job:run:pipeline-run:{outcome}"
    return f"project:one-off-job:pipeline-run:{outcome}"


def _event_layer(event_uuid: str, type_: str, when: str) -> dict[str, Any]:
    return {"uuid": event_uuid, "type": type_, "timestamp": when}


def _project_layer(facts: JobFacts) -> dict[str, Any]:
    return {"uuid": facts.project_uuid, "name": facts.project}


def _job_layer(facts: JobFacts, status: str) -> dict[str, Any]:
    # JobEvent, then OneOffJobEvent's total_runs (CronJobEvent merged the same layer).
    return {"uuid": facts.job_uuid, "name": facts.job_name, "status": status,
            "pipeline_name": facts.pipeline_name, "url_path": job_url_path(facts.dag_id),
            "total_runs": facts.total_runs}


def _run_layer(facts: JobFacts, run_status: str) -> dict[str, Any]:
    # CronJobRunEvent: the batch.
    return {"status": run_status, "number": facts.job_run_number,
            "total_pipeline_runs": facts.total_runs}


def parameters_payload(parameters: Mapping[str, Mapping[str, Any]],
                       step_titles: Mapping[str, str]) -> dict[str, Any]:
    """Orchest's ``_prepare_job_pipeline_run_parameters_payload``: grouped per step."""
    out: dict[str, Any] = {}
    for key, values in parameters.items():
        if key == "pipeline_parameters":
            out[key] = {"parameters": dict(values)}
        else:
            out[key] = {"step": {"uuid": key, "title": step_titles.get(key)},
                        "parameters": dict(values)}
    return out


def _pipeline_run_layer(facts: JobFacts, run: PipelineRunFacts, status: str
                        ) -> dict[str, Any]:
    # Orchest's _prepare_job_pipeline_run_payload.
    payload: dict[str, Any] = {"uuid": run.run_uuid,
                               "parameters": parameters_payload(run.parameters,
                                                                facts.step_titles),
                               "status": status}
    if facts.is_cron:
        payload["number"] = facts.job_run_number * facts.total_runs + run.position
        payload["number_in_run"] = run.position
    else:
        payload["number"] = run.position
    payload["url_path"] = pipeline_run_url_path(facts.dag_id, facts.run_id)
    if status == "FAILURE" and run.failed_steps:
        payload["failed_steps"] = [{"uuid": s, "title": facts.step_titles.get(s)}
                                   for s in run.failed_steps]
    return payload


def job_event(facts: JobFacts, what: str, *, run_status: str | None = None,
              now: datetime | None = None) -> dict[str, Any]:
    """A job-level event: a one-off job's or a cron job's job run (``run``) changed.

    ``what``: ``started``, ``succeeded``, ``failed`` or ``cancelled`` (one-off only).
    ``run_status``: a cron run's status as Orchest derived it from the run's events so
    far (default: from ``what``).
    """
    type_ = event_type(facts, what)
    event = _event_layer(job_event_id(facts, what), type_, timestamp(now))
    if facts.is_cron:
        job = _job_layer(facts, "STARTED")
        job["run"] = _run_layer(facts, run_status or RUN_STATUS[what])
    else:
        job = _job_layer(facts, JOB_STATUS.get(what, "STARTED"))
    event["project"] = {**_project_layer(facts), "job": job}
    return event


def pipeline_run_event(facts: JobFacts, run: PipelineRunFacts, outcome: str, *,
                       batch_status: str = "STARTED", now: datetime | None = None
                       ) -> dict[str, Any]:
    """A pipeline-run event (``started``, ``succeeded``, ``failed``, ``cancelled``).

    ``batch_status``: a cron run's status at that moment (``FAILURE`` once one of its
    pipeline runs failed).
    """
    status = RUN_STATUS[outcome]
    type_ = run_event_type(facts, outcome)
    event = _event_layer(run_event_id(facts, run.position, outcome), type_, timestamp(now))
    job = _job_layer(facts, "STARTED")
    pipeline_run = _pipeline_run_layer(facts, run, status)
    if facts.is_cron:
        job["run"] = {**_run_layer(facts, batch_status), "pipeline_run": pipeline_run}
    else:
        job["pipeline_run"] = pipeline_run
    event["project"] = {**_project_layer(facts), "job": job}
    return event


def cron_job_event(*, project: str, project_uuid: str, dag_id: str, job_name: str,
                   pipeline_name: str, total_runs: int, paused: bool, serial: int,
                   now: datetime | None = None) -> dict[str, Any]:
    """``project:cron-job:paused`` / ``unpaused`` (``serial``: which change this is)."""
    type_ = "project:cron-job:paused" if paused else "project:cron-job:unpaused"
    event = _event_layer(derived_id("cron-job", dag_id, type_, serial), type_,
                         timestamp(now))
    event["project"] = {"uuid": project_uuid, "name": project, "job": {
        "uuid": job_uuid_for(dag_id), "name": job_name,
        "status": "PAUSED" if paused else "STARTED", "pipeline_name": pipeline_name,
        "url_path": job_url_path(dag_id), "total_runs": total_runs}}
    return event


def ping_event(now: datetime | None = None) -> dict[str, Any]:
    """The test delivery's event (Orchest's ``send_test_ping_delivery``)."""
    return {"type": PING, "uuid": str(uuid.uuid4()), "timestamp": timestamp(now)}


def job_uuid_for(dag_id: str, run_id: str | None = None) -> str:
    """A job's uuid: per DAG (job files), or per DAG run (a pipeline DAG's run is a
    one-off job of its own)."""
    return derived_id("job", dag_id) if run_id is None else derived_id("job", dag_id, run_id)


def job_event_id(facts: JobFacts, what: str) -> str:
    return derived_id("event", facts.dag_id, facts.run_id, facts.clear_number,
                      event_type(facts, what))


def run_event_id(facts: JobFacts, position: int, outcome: str) -> str:
    return derived_id("event", facts.dag_id, facts.run_id, facts.clear_number,
                      run_event_type(facts, outcome), position)

