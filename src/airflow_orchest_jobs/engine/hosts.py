"""Workers on several Docker hosts: a step never runs twice at once, a lost worker's
containers never outlive it.

A worker killed mid-step (SIGKILL, host gone) leaves its step container running on its
engine; Airflow retries the task instance on another worker once its heartbeat times out.
Two guards keep one step of one pipeline run from running twice at once:

* **before a step container starts** (:func:`claim_engine`), containers of the same run
  and step are removed from this engine and from every engine an earlier try of the step
  ran on (each try records its engine in the run folder, on the shared store; an engine
  this worker cannot reach, or that is not the recorded one any more, is skipped: its host
  is taken to be gone, with its containers);
* **a worker that comes back** removes what it left behind (:func:`sweep_worker`): every
  step container is labelled with its worker's name, and a Celery worker sweeps its
  engine when it is ready (:mod:`.celery_config`; nothing of its can be running then).

Docker is imported inside functions only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..core.flock import locked
from ..core.labels import LABEL_RUN, LABEL_STEP, LABEL_WORKER

#: Environment variable naming this worker (set by the Celery hook for its processes).
WORKER_VARIABLE = "ORCHEST_JOBS_WORKER"
#: Seconds to reach another try's engine before taking its host to be gone.
REMOTE_TIMEOUT = 5
#: Folder of the run folder where each step's tries record their engine.
RECORDS = "engines"

log = logging.getLogger(__name__)


def worker_name() -> str:
    """This worker's name: its Celery node name, else Airflow's hostname of the host."""
    name = os.environ.get(WORKER_VARIABLE)
    if name:
        return name
    try:
        from airflow.sdk.api.client import get_hostname

        return str(get_hostname())
    except Exception:  # not in a task: the plain host name
        return socket.getfqdn()


def _labels_filter(run_uuid: str, step_uuid: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_RUN}={run_uuid}", f"{LABEL_STEP}={step_uuid}"]}


def remove_containers(cli: Any, filters: dict[str, Any],
                      created_before: float | None = None) -> list[str]:
    """Force-remove every container (running or not) matching ``filters`` (and created
    before ``created_before``, epoch seconds, if given); their ids."""
    removed = []
    for container in cli.containers(all=True, filters=filters):
        if created_before is not None and container.get("Created", 0) >= created_before:
            continue
        if force_remove(cli, container["Id"]):
            removed.append(container["Id"])
    return removed


def force_remove(cli: Any, container_id: str) -> bool:
    """Force-remove one container: True when removed (or already being removed), False
    when it is gone; any other engine error is raised."""
    import docker.errors

    try:
        cli.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: already being removed
            raise
    return True


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, path)  # atomic on the shared store


def engine_identity(cli: Any) -> str:
    """Which engine ``cli`` talks to: its ID, host name and data root together (engines of
    cloned machines, or several on one host, share the ID of their key file)."""
    info = cli.info()
    return "|".join(str(info.get(k, "")) for k in ("ID", "Name", "DockerRootDir"))


def _fence_remote(record: dict[str, Any], run_uuid: str, step_uuid: str) -> list[str]:
    """Remove the step's containers from another try's engine, if it is still that one."""
    import docker

    cli = docker.APIClient(base_url=record["docker_url"], timeout=REMOTE_TIMEOUT)
    try:
        if engine_identity(cli) != record["engine"]:
            return []  # that address is another engine now (or from this host): not ours
        return remove_containers(cli, _labels_filter(run_uuid, step_uuid))
    finally:
        cli.close()


def claim_engine(cli: Any, docker_url: str | None, run_dir: str | Path, run_uuid: str,
                 step_uuid: str, ti: Any = None, logger: Any = log) -> dict[str, str]:
    """Before a step container starts: remove what earlier tries of this step left running
    (here and on the engines they ran on), record this try's engine (``ti``: the task
    instance, for its try number); the labels to add."""
    import docker.errors

    try_number = getattr(ti, "try_number", None)

    engine = engine_identity(cli)
    left = remove_containers(cli, _labels_filter(run_uuid, step_uuid))
    if left:
        logger.info("Removed %d container(s) of an earlier try of this step on this engine: %s",
                    len(left), ", ".join(c[:12] for c in left))
    path = Path(run_dir) / RECORDS / f"{step_uuid}.json"
    with locked(path.with_suffix(".lock")):
        records = _records(path)
        for record in {r.get("engine"): r for r in records if r.get("engine")}.values():
            if record["engine"] == engine:
                continue
            try:
                removed = _fence_remote(record, run_uuid, step_uuid)
            except (docker.errors.DockerException, OSError) as exc:
                logger.warning("Engine %s of try %s (worker %s) not reachable (%s): its host is "
                               "taken to be gone, with its containers", record.get("docker_url"),
                               record.get("try"), record.get("worker"), exc)
                continue
            if removed:
                logger.info("Removed %d container(s) of try %s of this step from worker %s's "
                            "engine %s (that worker was lost)", len(removed), record.get("try"),
                            record.get("worker"), record.get("docker_url"))
        records.append({"try": try_number, "engine": engine, "docker_url": docker_url,
                        "worker": worker_name(), "at": time.time()})
        _write_records(path, records)
    return {LABEL_WORKER: worker_name()}


def sweep_worker(docker_url: str, worker: str, started: float | None = None) -> list[str]:
    """Remove every step container ``worker`` started on the engine at ``docker_url``
    before it (re)started at ``started`` (epoch seconds; None: all of them)."""
    import docker

    cli = docker.APIClient(base_url=docker_url, timeout=30)
    try:
        return remove_containers(cli, {"label": [f"{LABEL_WORKER}={worker}"]},
                                 created_before=started)
    finally:
        cli.close()
