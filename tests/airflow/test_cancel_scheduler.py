"""A cancel is a cancel, on the session's real scheduler: whenever it comes, the job run
ends not-``success`` and no container of it is left on the engine.

One two-step pipeline (``a`` sleeps, then ``b``), four DAG runs side by side, each
cancelled at another moment: right after the trigger (before ``snapshot`` ends), once
``snapshot`` succeeded (``plan`` queued or running), while ``a`` runs (Airflow's REST API,
``PATCH .../dagRuns/{run}`` state=failed), and while ``a`` runs through the pipeline-run
view's "Cancel job run" (``POST .../dagRuns/{run}/cancel``). (Cancelling one pipeline
run is no job-run cancel: ``test_job_run_states.py``.)
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.deployment import Deployment
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

SLEEPER = """\
import time
print("sleeping", flush=True)
time.sleep(300)
"""
#: Seconds for a cancelled run's containers to be gone (on_kill, then finalize's sweep).
CLEANUP_TIMEOUT = 60


def _job_containers(docker_client, dag_id: str, run_id: str) -> list:
    return docker_client.containers.list(all=True, filters={
        "label": f"orchest-jobs.job={dag_id}/{run_id}"})


def _mark_failed(deployment: Deployment, dag_id: str, run_id: str) -> None:
    response = deployment.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}",
                              json={"state": "failed"})
    assert response.status_code == 200, response.text


def _plugin_cancel(deployment: Deployment, dag_id: str, run_id: str) -> None:
    if not deployment.token:
        deployment.login()
    response = requests.post(
        f"{deployment.base_url}/orchest-jobs/api/v1/dags/{dag_id}/dagRuns/{run_id}"
        "/cancel", json={}, timeout=60,
        headers={"Authorization": f"Bearer {deployment.token}"})
    assert response.status_code == 200, response.text


def test_a_cancel_at_any_moment_never_ends_success_and_leaves_no_container(
        deployment: Deployment, docker_client) -> None:
    name = f"cancel{uuid.uuid4().hex[:6]}"
    write_project(deployment.projects_dir / name, pipeline_doc(
        [step("a", "a.py", title="a"), step("b", "b.py", title="b", incoming=["a"])],
        uuid=f"cancel-{name}"), files={"a.py": SLEEPER, "b.py": "print('b ran')\n"})
    dag_id = f"orchest__{name}__main"
    deployment.wait_for_dag(dag_id)

    runs: dict[str, str] = {}
    runs["before snapshot ends"] = deployment.trigger(dag_id, prefix="early")
    _mark_failed(deployment, dag_id, runs["before snapshot ends"])
    for moment in ("after snapshot (plan)", "during a step (REST API)",
                   "during a step (plugin)"):
        runs[moment] = deployment.trigger(dag_id, prefix="cancel")

    seen: dict[str, Any] = {}

    def snapshot_done() -> dict[str, str] | None:
        states = deployment.task_states(dag_id, runs["after snapshot (plan)"])
        return states if states.get("snapshot[-1]") == "success" else None

    seen["plan"] = deployment.wait("the snapshot to succeed", snapshot_done, 240, 0.3)
    _mark_failed(deployment, dag_id, runs["after snapshot (plan)"])

    def sleeping(run_id: str):
        return lambda: any("sleeping" in box.logs().decode()
                           for box in _job_containers(docker_client, dag_id, run_id))

    deployment.wait("step a to run", sleeping(runs["during a step (REST API)"]), 240, 1)
    _mark_failed(deployment, dag_id, runs["during a step (REST API)"])
    deployment.wait("step a to run", sleeping(runs["during a step (plugin)"]), 240, 1)
    _plugin_cancel(deployment, dag_id, runs["during a step (plugin)"])

    for moment, run_id in runs.items():
        run = deployment.wait_finished(dag_id, run_id)
        states = deployment.task_states(dag_id, run_id)
        assert run["state"] == "failed", f"cancelled {moment}: {run['state']} {states}"
        assert "pipeline_run.b[0]" not in states or \
            states["pipeline_run.b[0]"] != "success", (moment, states)
        deployment.wait(f"no container of the run cancelled {moment}",
                        lambda run_id=run_id: not _job_containers(docker_client, dag_id,
                                                                  run_id),
                        CLEANUP_TIMEOUT, 1)
    # The plan was cut short, not run to its end (else this case is the step case).
    plan = deployment.task_states(dag_id, runs["after snapshot (plan)"])["plan[-1]"]
    assert plan in ("failed", "skipped"), (plan, seen["plan"])
    assert not docker_client.containers.list(all=True, filters={
        "label": f"orchest-jobs.pipeline-uuid=cancel-{name}"})
