"""The run description: what planning writes and every task of a pipeline run reads.

Two parts, so a big grid costs little: a :class:`JobRun` (what every pipeline run of one
job run shares: snapshot, frozen images, variables, the job run's folder) travels once,
as the ``snapshot`` task's XCom; a :class:`RunKey` (index, label, run uuid) is all that
is mapped per run. Paths derive from the job run's folder (:mod:`.layout`), never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .layout import PROJECT_COPY, RUN_DEFINITION, run_folder


@dataclass(frozen=True)
class JobRun:
    """Shared by every pipeline run of one job run."""

    #: Whose snapshot and images these are: the job (``per_job``) or this job run.
    job_key: str
    #: ``<dag id>/<run id>``: run uuids and service labels derive from it.
    job_run_key: str
    #: The job run's folder in the store (``runs/<dag>/<run>``).
    run_root: str
    snapshot_id: str
    #: The pipeline file inside the project (posix); the run's definition replaces it.
    pipeline_rel: str
    #: Image key (environment uuid, ``image:<ref>``, ``service-image:<ref>``) -> pinned ref.
    images: Mapping[str, str]
    #: Job and trigger variables: plain values, and references resolved by each step.
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, Any] = field(default_factory=dict)
    #: Airflow Variables holding project and pipeline variables (read by each step).
    env_sources: tuple[str, ...] = ()
    has_services: bool = False
    #: Seconds each pipeline run may take from its start (None: no limit).
    pipeline_run_timeout: float | None = None
    #: The first failed pipeline run stops the whole job run.
    stop_on_first_failure: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env_sources"] = list(self.env_sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRun:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["env_sources"] = tuple(known.get("env_sources") or ())
        return cls(**known)


@dataclass(frozen=True)
class RunKey:
    """What differs per pipeline run: the only mapped value."""

    index: int
    #: Its place among the job run's selected runs (they start in this order).
    position: int
    label: str
    run_uuid: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunKey:
        return cls(index=int(data["index"]), position=int(data.get("position", 0)),
                   label=str(data["label"]), run_uuid=str(data["run_uuid"]))


@dataclass(frozen=True)
class RunDescription:
    """One pipeline run as its tasks see it."""

    job: JobRun
    key: RunKey

    @property
    def run_dir(self) -> Path:
        """The run's folder: its definition, project copy and bookkeeping."""
        return run_folder(Path(self.job.run_root), self.key.index)

    @property
    def project_dir(self) -> Path:
        """The run's project copy (``/project-dir`` in its containers)."""
        return self.run_dir / PROJECT_COPY

    @property
    def definition(self) -> Path:
        """The run's pipeline definition, parameters substituted (``/pipeline.json``)."""
        return self.run_dir / RUN_DEFINITION

    @property
    def run_uuid(self) -> str:
        return self.key.run_uuid

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def images(self) -> Mapping[str, str]:
        return self.job.images

    def as_mapping(self) -> dict[str, Any]:
        """The flat form (tests and custom DAGs may give a run this way)."""
        return {**self.job.to_dict(), **self.key.to_dict(), "run_dir": str(self.run_dir),
                "project_dir": str(self.project_dir), "definition": str(self.definition)}


def describe(run: Mapping[str, Any], job_run: Mapping[str, Any] | None = None
             ) -> RunDescription:
    """A run description from its mapped key and the shared job run.

    Without ``job_run``, ``run`` is the flat form (every key of both parts, plus
    ``run_dir``), as a hand-built DAG may give it.
    """
    if job_run is None:
        job = JobRun.from_dict({"job_key": "", "job_run_key": "", "snapshot_id": "",
                                "pipeline_rel": "", "images": {},
                                "run_root": str(Path(run["run_dir"]).parent), **run})
        return _Flat(job=job, key=RunKey.from_dict(run), flat=dict(run))
    return RunDescription(job=JobRun.from_dict(job_run), key=RunKey.from_dict(run))


@dataclass(frozen=True)
class _Flat(RunDescription):
    """A run given whole, whose folders may be anywhere (not under a run root)."""

    flat: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.flat["run_dir"])

    @property
    def project_dir(self) -> Path:
        return Path(self.flat.get("project_dir") or self.run_dir / "project")

    @property
    def definition(self) -> Path:
        return Path(self.flat.get("definition") or self.run_dir / "pipeline.json")
