"""The plugin's settings as a plain value, so the core never reads Airflow's config itself."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OrchestError

SECTION = "orchest_jobs"

#: key -> (description, default as text; "{AIRFLOW_HOME}" is expanded in any value)
OPTIONS: dict[str, tuple[str, str]] = {
    "projects_dir": (
        "Folder whose sub-folders are Orchest projects; every pipeline and job file in "
        "them becomes a DAG.",
        "{AIRFLOW_HOME}/orchest/projects",
    ),
    "store_dir": (
        "Folder for snapshots, frozen-job state and pipeline run folders. Must be shared "
        "by all workers (and, under docker-compose, have the same path on the host).",
        "{AIRFLOW_HOME}/orchest/store",
    ),
    "data_dir": (
        "Host folder mounted read-write at /data in every step container (Orchest's /data).",
        "{AIRFLOW_HOME}/orchest/data",
    ),
    "environment_images": (
        'JSON object mapping an environment uuid (or "*" for any) to a Docker image '
        "reference; wins over the orchest-env-<project-uuid>-<env-uuid> tag.",
        "{}",
    ),
    "network_mode": (
        "Docker network mode of step containers (bridge, none, host, or a network name).",
        "bridge",
    ),
    "docker_url": ("Docker engine address.", "unix://var/run/docker.sock"),
    "registry": (
        "Docker registry (host[:port][/prefix]; http:// or https:// in front to say how its "
        "API is reached) that creating a job pushes every environment image to, pinned by "
        "digest, so workers on other hosts pull it. Empty: images are pinned by local image "
        "id and stay on the engine that froze them (one Docker host).",
        "",
    ),
    "max_parallel_pipeline_runs": (
        "At most this many pipeline runs at once in the whole installation, counted from a "
        "run's first task to its last (Orchest's MAX_JOB_RUNS_PARALLELISM); 0: no limit.",
        "0",
    ),
    "step_user": (
        "uid:gid step containers run as. Empty: the Airflow worker's own uid:gid, or "
        "65534:65534 (nobody) when the worker runs as root; 0:0 runs steps as root.",
        "",
    ),
    "step_memory_limit": (
        "Memory a step container may use (bytes, or with a k/m/g suffix, e.g. 8g; swap "
        "included); 0: no limit (Orchest's default: data steps' needs vary too much for one).",
        "0",
    ),
    "step_pids_limit": (
        "At most this many processes and threads in a step container (a fork bomb stops "
        "there); 0: no limit.",
        "1024",
    ),
    "step_tmp_size": (
        "Size of a step container's private tmpfs /tmp (it is memory; bytes or k/m/g, e.g. "
        "1g); 0: the engine's default (half the host's memory).",
        "1g",
    ),
    "webhooks": (
        "Comma-separated ids of Airflow connections (type orchest_webhook) whose webhooks "
        "receive Orchest's job notifications, besides those the Airflow Variable "
        "orchest_jobs_webhooks lists.",
        "",
    ),
}


#: key -> (Airflow's option type, an example value), shown in ``airflow config list``.
EXAMPLES: dict[str, tuple[str, str]] = {
    "projects_dir": ("string", "/srv/orchest/projects"),
    "store_dir": ("string", "/srv/orchest/store"),
    "data_dir": ("string", "/srv/orchest/data"),
    "environment_images": ("string", '{"*": "registry.example.com/python-orchest:3.11"}'),
    "network_mode": ("string", "none"),
    "docker_url": ("string", "tcp://docker-host:2376"),
    "registry": ("string", "registry.example.com:5000/orchest"),
    "max_parallel_pipeline_runs": ("integer", "4"),
    "step_user": ("string", "1000:1000"),
    "step_memory_limit": ("string", "8g"),
    "step_pids_limit": ("integer", "4096"),
    "step_tmp_size": ("string", "2g"),
    "webhooks": ("string", "slack_alerts,ops_webhook"),
}


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def expand_home(value: str) -> str:
    return value.replace("{AIRFLOW_HOME}", str(airflow_home()))


def default_value(key: str) -> str:
    return expand_home(OPTIONS[key][1])


@dataclass(frozen=True)
class Settings:
    projects_dir: Path
    store_dir: Path
    data_dir: Path
    environment_images: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "bridge"
    docker_url: str = "unix://var/run/docker.sock"
    registry: str = ""
    step_user: str = ""
    max_parallel_pipeline_runs: int = 0
    #: Step container limits in bytes / processes; 0: none (see OPTIONS).
    step_memory_limit: int = 0
    step_pids_limit: int = 1024
    step_tmp_size: int = 1 << 30
    #: Connection ids of webhooks in force (with the Variable ``orchest_jobs_webhooks``).
    webhooks: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, str | None]) -> Settings:
        """Build from raw text values (missing or empty keys take their default)."""

        def get(key: str) -> str:
            value = values.get(key)
            return expand_home(value) if value not in (None, "") else default_value(key)

        raw_images = get("environment_images")
        try:
            images = json.loads(raw_images)
        except json.JSONDecodeError as exc:
            raise OrchestError.single(
                f"[{SECTION}] environment_images",
                "",
                f"not valid JSON ({exc.msg}); write an object such as "
                '{"*": "my-image:tag"}',
            ) from None
        if not isinstance(images, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in images.items()
        ):
            raise OrchestError.single(
                f"[{SECTION}] environment_images",
                "",
                'must be a JSON object of strings, environment uuid (or "*") to image',
            )
        return cls(
            projects_dir=Path(get("projects_dir")).expanduser(),
            store_dir=Path(get("store_dir")).expanduser(),
            data_dir=Path(get("data_dir")).expanduser(),
            environment_images=images,
            network_mode=get("network_mode"),
            docker_url=get("docker_url"),
            registry=_check_registry(values.get("registry") or ""),
            step_user=_check_user(values.get("step_user") or ""),
            max_parallel_pipeline_runs=_check_count("max_parallel_pipeline_runs",
                                                    get("max_parallel_pipeline_runs")),
            step_memory_limit=_check_size("step_memory_limit", get("step_memory_limit")),
            step_pids_limit=_check_count("step_pids_limit", get("step_pids_limit")),
            step_tmp_size=_check_size("step_tmp_size", get("step_tmp_size")),
            webhooks=tuple(c.strip() for c in (values.get("webhooks") or "").split(",")
                           if c.strip()),
        )

    @classmethod
    def from_environment(cls) -> Settings:
        """Read ``AIRFLOW__ORCHEST_JOBS__<KEY>`` variables only (no Airflow import)."""
        prefix = f"AIRFLOW__{SECTION.upper()}__"
        return cls.from_mapping({k: os.environ.get(prefix + k.upper()) for k in OPTIONS})


NOBODY = (65534, 65534)


def _check_user(value: str) -> str:
    value = value.strip()
    if value and not re.fullmatch(r"\d+:\d+", value):
        raise OrchestError.single(f"[{SECTION}] step_user", "", f"{value!r} is not uid:gid; "
                                  "write numbers such as 1000:1000, or leave it empty")
    return value


def _check_count(key: str, value: str) -> int:
    try:
        count = int(value.strip())
    except ValueError:
        count = -1
    if count < 0:
        raise OrchestError.single(f"[{SECTION}] {key}", "", f"{value!r} is not a whole number "
                                  ">= 0; write e.g. 4, or 0 for no limit")
    return count


_SIZE = re.compile(r"(\d+)\s*([kmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _check_size(key: str, value: str) -> int:
    """A size in bytes from ``1073741824``, ``1024m`` or ``1g`` (binary units, as Docker)."""
    found = _SIZE.fullmatch(value.strip())
    if not found:
        raise OrchestError.single(f"[{SECTION}] {key}", "", f"{value!r} is not a size; write "
                                  "bytes or a number with k, m or g (e.g. 1g), or 0 for none")
    return int(found.group(1)) * _UNITS[found.group(2).lower()]


_REGISTRY = re.compile(r"(https?://)?[A-Za-z0-9][A-Za-z0-9.-]*(:\d+)?(/[a-z0-9][a-z0-9._/-]*)?")


def _check_registry(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and not _REGISTRY.fullmatch(value):
        raise OrchestError.single(f"[{SECTION}] registry", "", f"{value!r} is not a registry "
                                  "address; write host[:port][/prefix], e.g. "
                                  "registry.example.com:5000 or http://127.0.0.1:5000")
    return value


def step_owner(step_user: str, euid: int, egid: int) -> tuple[int, int]:
    """The (uid, gid) a step runs as: never root unless asked for with ``0:0``."""
    if step_user:
        uid, gid = step_user.split(":")
        return int(uid), int(gid)
    return NOBODY if euid == 0 else (euid, egid)
