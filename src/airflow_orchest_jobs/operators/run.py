"""A pipeline run's start and end around its steps: run slots and services.

Called from the run's ``prepare`` task (take a run slot or wait for one, then start the
run's services) and from its ``cleanup`` teardown (stop the services, give the slots
back), and from the job run's first and last tasks as a safety net for what a killed
worker or a cancelled DAG run left behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import OrchestError
from ..core.jobstate import cancel_record, forget_cancels
from ..core.labels import LABEL_JOB, LABEL_RUN, LABEL_SERVICE, LABEL_STEP
from ..core.layout import StoreLayout
from ..core.plan import ensure_checkout
from ..core.rundesc import RunDescription
from ..core.runslots import RunSlots, Ticket
from ..core.services import job_services, service_specs
from ..engine.clients import DockerUnavailable
from ..engine.hosts import RECORDS, engine_identity, force_remove
from ..engine.images import image_key
from ..engine.services import ServiceStartError, start_run_services, stop_run_services
from .dockerhook import engine_api, engine_client, remote_connector
from .errors import user_error
from .notify import pipeline_run_started
from .variables import run_variables

if TYPE_CHECKING:
    from ..core.jobdef import JobDefinition
    from ..core.settings import Settings

log = logging.getLogger(__name__)

#: Task instance states of a task that ran (it was not cleared).
FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")
#: DAG run states in which a job run still owns its slots and services.
LIVE_STATES = ("queued", "running")
#: Seconds a waiting run sleeps before asking again: more the further back in line. At
#: least twice ``[workers] min_heartbeat_interval`` (5 s): Airflow's supervisor can see a
#: task's exit that late, and a reschedule re-queued before the old try's executor event
#: arrives is failed by the scheduler (apache/airflow#71172; see PREPARE_RETRIES).
MIN_WAIT, MAX_WAIT = 10, 30
#: Seconds the next run in line keeps asking inside its task before it reschedules.
IN_TASK_WAIT = 8


def admit_or_wait(settings: Settings, run: RunDescription,
                  limits: list[tuple[str, int]], dag_run: Any, ti: Any) -> None:
    """Take the run's slots, or give the worker slot back until it may start.

    Waiting is Airflow's reschedule (the task is ``up_for_reschedule``): a run waiting
    for a slot holds no worker, so waiting runs can never starve running ones.
    """
    from airflow.sdk.exceptions import AirflowRescheduleException

    ticket = Ticket(run_uuid=run.run_uuid, dag_id=dag_run.dag_id, run_id=dag_run.run_id,
                    position=run.key.position, run_root=run.job.run_root)

    def is_live(dag_id: str, run_id: str) -> bool:
        try:
            return str(ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)) in LIVE_STATES
        except Exception:  # a DAG run deleted from the database: not live
            return False

    slots = RunSlots(settings.store_dir)
    # Ask a few times in the task first: a rescheduled task goes back through the
    # scheduler, and short reschedules race its executor events (Airflow then marks the
    # task failed: "finished with state success, but ... queued"; MIN_WAIT).
    deadline = time.monotonic() + IN_TASK_WAIT
    while True:
        admission = slots.try_admit(ticket, limits, is_live)
        if admission.admitted:
            log.info("Run slot taken (%s)", ", ".join(f"{s}: {n}" for s, n in limits))
            return
        if time.monotonic() >= deadline or admission.distance > 1:
            break
        time.sleep(1)
    wait = max(MIN_WAIT, min(MAX_WAIT, MIN_WAIT + admission.distance // 4))
    log.info("Waiting for a run slot: %s; asking again in %d s", admission.reason, wait)
    raise AirflowRescheduleException(datetime.now(timezone.utc) + timedelta(seconds=wait))


def check_out(settings: Settings, run: RunDescription, owner: tuple[int, int],
              dag_run: Any, ti: Any, peers: Sequence[str]) -> None:
    """Make the run's project copy if this is the first of its first tasks to start.

    ``peers``: the run's other first tasks (task ids inside the group) that may make
    it; after a clear, the copy is made afresh only when they were cleared too.
    """
    group = ti.task_id.rpartition(".")[0]
    others = [f"{group}.{peer}" if group else peer for peer in peers]
    others = [task_id for task_id in others if task_id != ti.task_id]

    def others_rerunning() -> bool:
        if not others:
            return True
        states = ti.get_task_states(dag_id=ti.dag_id, map_index=ti.map_index,
                                    task_ids=others, run_ids=[ti.run_id])
        found = states.get(ti.run_id, {})
        return not any(str(found.get(f"{task_id}_{ti.map_index}")) in FINISHED
                       for task_id in others)

    generation = int(getattr(dag_run, "clear_number", 0) or 0)
    forget_stale_cancel(run, generation)
    try:
        made = ensure_checkout(StoreLayout(settings.store_dir).snapshots, run, generation,
                               owner, others_rerunning)
    except OrchestError as exc:
        raise user_error(exc) from None
    if made:
        log.info("Checked out snapshot %s into %s", run.job.snapshot_id, run.project_dir)
        pipeline_run_started(settings.store_dir, run, dag_run)  # webhooks: the outbox only


def forget_stale_cancel(run: RunDescription, generation: int) -> None:
    """A run cancelled before the DAG run's last clear runs again: its cancel is over."""
    record = cancel_record(run.job.run_root, run.key.position)
    if record is not None and record.clear_number < generation:
        forget_cancels(run.job.run_root, [run.key.position])


def start_services(settings: Settings, job: JobDefinition, run: RunDescription) -> None:
    """Start the run's services (and the holder of its network namespace), or fail."""
    try:
        specs = service_specs(job.pipeline, run.run_uuid, job.project.uuid)
    except OrchestError as exc:
        raise user_error(exc) from None
    plain, private = run_variables(run)
    first_step = next(iter(job.pipeline.steps.values()))
    client = engine_client(settings)
    try:
        holder = start_run_services(
            client, run.run_uuid, specs, run.images, settings.network_mode,
            settings.data_dir, run.project_dir, {**private, **plain},
            job_key=run.job.job_run_key, holder_image=run.images.get(image_key(first_step)))
    except ServiceStartError as exc:
        raise user_error(f"{exc}\nNo step of this pipeline run was started.") from None
    log.info("Services up for run %s (%s) in the namespace of %s",
             run.label, ", ".join(s.name for s in specs), holder)


def end_run(settings: Settings, run: RunDescription) -> None:
    """Stop the run's services and give its slots back (idempotent)."""
    RunSlots(settings.store_dir).release(run.run_uuid)
    if run.job.has_services:
        removed = stop_run_services(engine_client(settings), run.run_uuid)
        if removed:
            log.info("Stopped and removed %s", ", ".join(removed))


def end_job_run(settings: Settings, job: JobDefinition, dag_id: str, run_id: str) -> None:
    """What the job run's runs still hold when it ends: slots and service containers."""
    freed = RunSlots(settings.store_dir).release_job_run(dag_id, run_id)
    if freed:
        log.info("Gave back %d run slot(s) left by unfinished runs", freed)
    if job_services(job.pipeline.services):
        removed = _remove_service_containers(settings, lambda key: key == f"{dag_id}/{run_id}")
        if removed:
            log.info("Removed %d service container(s) left by unfinished runs", removed)


#: Seconds before a second sweep when the first removed a step's container: a killed
#: step task may still be ending (Airflow gives it 5 s) when ``finalize`` starts.
SWEEP_AGAIN_AFTER = 6


def remove_job_run_containers(settings: Settings, job_run_key: str, run_root: Any) -> int:
    """Every container left by the job run (steps, services, holders; labelled with
    ``job_run_key``), on this worker's engine and on every other engine its steps ran on
    (the engines recorded in its run folders); how many were removed."""
    cli = engine_api(settings)
    try:
        local = engine_identity(cli)
        removed, steps = _remove_labelled(cli, job_run_key)
        if steps:
            time.sleep(SWEEP_AGAIN_AFTER)
            removed += _remove_labelled(cli, job_run_key)[0]
    finally:
        cli.close()
    connect = remote_connector(settings)
    for url in _other_engines(run_root, local):
        removed += _remove_remote(connect, url, job_run_key)
    return removed


def _remove_labelled(cli: Any, job_run_key: str) -> tuple[int, int]:
    """Force-remove the job run's containers on one engine: (removed, of which steps)."""
    import docker.errors

    removed = steps = 0
    for box in cli.containers(all=True, filters={"label": [f"{LABEL_JOB}={job_run_key}"]}):
        try:
            if not force_remove(cli, box["Id"]):
                continue
        except docker.errors.APIError as exc:
            log.warning("Could not remove container %s: %s", box["Id"][:12], exc)
            continue
        removed += 1
        steps += LABEL_STEP in (box.get("Labels") or {})
    return removed, steps


def _other_engines(run_root: Any, local: str) -> dict[str, str]:
    """{docker_url: engine identity} of the engines the job run's steps recorded, but
    this worker's."""

    engines: dict[str, str] = {}
    for path in Path(run_root).glob(f"*/{RECORDS}/*.json"):
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and record.get("engine") not in (None, local) \
                    and record.get("docker_url"):
                engines[str(record["docker_url"])] = str(record["engine"])
    return engines


def _remove_remote(connect: Any, url: str, job_run_key: str) -> int:
    import docker.errors

    try:
        cli = connect(url)
    except (docker.errors.DockerException, DockerUnavailable) as exc:
        log.warning("Engine %s not reachable (%s): its host is taken to be gone", url, exc)
        return 0
    try:
        return _remove_labelled(cli, job_run_key)[0]
    except (docker.errors.DockerException, OSError) as exc:
        log.warning("Engine %s not reachable (%s): its host is taken to be gone", url, exc)
        return 0
    finally:
        cli.close()


def remove_dead_services(settings: Settings, dag_id: str, ti: Any) -> int:
    """Service containers of this DAG's job runs that are over (a killed worker's)."""
    def dead(job_run_key: str) -> bool:
        owner, _, run_id = job_run_key.partition("/")
        if owner != dag_id or not run_id:
            return False
        try:
            return str(ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)) not in LIVE_STATES
        except Exception:
            return True

    return _remove_service_containers(settings, dead)


def _remove_service_containers(settings: Settings, chosen: Any) -> int:
    import docker.errors

    client = engine_client(settings)
    # ignore_removed: other job runs remove their own service containers meanwhile.
    boxes = [box for box in client.containers.list(all=True, filters={"label": LABEL_SERVICE},
                                                   ignore_removed=True)
             if chosen(box.labels.get(LABEL_JOB, ""))]
    for box in boxes:
        try:
            box.remove(force=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            log.warning("Could not remove %s (run %s): %s", box.name,
                        box.labels.get(LABEL_RUN), exc)
    return len(boxes)


