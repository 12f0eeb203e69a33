"""Job-run states as Orchest reported them, on the session's real scheduler.

A 4-run pipeline whose run 0 sleeps: cancelling that one run ("Cancel run N" in the
pipeline-run view) leaves the job run ``success`` once the other three succeeded;
cancelling the whole job run, through the view's "Cancel job run" or Airflow's REST API
(``PATCH .../dagRuns/{run}`` state=failed, what the UI's "mark failed" sends), ends it
``failed`` in Airflow and ``cancelled`` in the views' API (the pipeline-run view and the
jobs overview), never ``success``. The three job runs run side by side.
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
import json, os, time
doc = json.load(open(os.environ["ORCHEST_PIPELINE_PATH"]))
seconds = doc["parameters"]["sleep"]
print(f"sleeping {seconds}", flush=True)
time.sleep(seconds)
"""


def plugin(deployment: Deployment, method: str, path: str) -> Any:
    if not deployment.token:
        deployment.login()
    response = requests.request(method, f"{deployment.base_url}/orchest-jobs/api/v1{path}",
                                json={} if method == "POST" else None, timeout=60,
                                headers={"Authorization": f"Bearer {deployment.token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_cancelled_run_never_fails_its_job_run_and_a_cancelled_job_run_says_so(
        deployment: Deployment, docker_client) -> None:
    name = f"states{uuid.uuid4().hex[:6]}"
    write_project(deployment.projects_dir / name, pipeline_doc(
        [step("a", "a.py", title="a"), step("b", "b.py", title="b", incoming=["a"])],
        parameters={"sleep": 0}, uuid=f"states-{name}"),
        files={"a.py": SLEEPER, "b.py": "print('b ran')\n"},
        parameters={"pipeline_parameters": {"sleep": [300, 0, 0, 0]}})
    dag_id = f"orchest__{name}__main"
    deployment.wait_for_dag(dag_id)
    runs = {how: deployment.trigger(dag_id, prefix=prefix) for how, prefix in (
        ("one run", "one"), ("view", "view"), ("airflow", "airflow"))}

    def rows(run_id: str) -> dict[str, Any]:
        return plugin(deployment, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/pipelineRuns")

    def sleeping(run_id: str):
        def probe() -> bool:
            boxes = docker_client.containers.list(all=True, filters={
                "label": f"orchest-jobs.job={dag_id}/{run_id}"})
            return any("sleeping 300" in box.logs().decode() for box in boxes)
        return probe

    for run_id in runs.values():
        deployment.wait("run 0 to sleep", sleeping(run_id), 240, 1)
    stopped = plugin(deployment, "POST",
                     f"/dags/{dag_id}/dagRuns/{runs['one run']}/pipelineRuns/0/cancel")
    assert stopped["task_instances_stopped"] >= 1
    cancelled = plugin(deployment, "POST", f"/dags/{dag_id}/dagRuns/{runs['view']}/cancel")
    assert cancelled["task_instances_stopped"] >= 1
    patched = deployment.api("PATCH", f"/dags/{dag_id}/dagRuns/{runs['airflow']}",
                             json={"state": "failed"})
    assert patched.status_code == 200, patched.text

    # One pipeline run cancelled, the other three succeeded: the job run succeeded.
    one = deployment.wait_finished(dag_id, runs["one run"])
    states = deployment.task_states(dag_id, runs["one run"])
    assert one["state"] == "success", states
    table = rows(runs["one run"])
    assert {r["index"]: r["state"] for r in table["pipeline_runs"]} == {
        0: "cancelled", 1: "success", 2: "success", 3: "success"}
    assert table["dag_run"]["state"] == "success"

    # The whole job run cancelled, by the view's action or by Airflow's API.
    for how, via in (("view", "pipeline-run view"), ("airflow", "marked failed in Airflow")):
        run = deployment.wait_finished(dag_id, runs[how])
        assert run["state"] == "failed", (how, deployment.task_states(dag_id, runs[how]))
        table = rows(runs[how])
        assert table["dag_run"]["state"] == "cancelled", (how, table["dag_run"])
        assert table["dag_run"]["airflow_state"] == "failed"
        assert table["dag_run"]["cancelled"]["via"] == via
        assert table["dag_run"]["cancelled"]["by"] == "admin"
        found = {r["index"]: r["state"] for r in table["pipeline_runs"]}
        assert found[0] == "cancelled"
        if how == "view":  # (Airflow's own marks a running mapped task at every index)
            # The quick runs ended before the cancel or were stopped by it: never failed.
            assert {found[i] for i in (1, 2, 3)} <= {"success", "cancelled"}, found
    overview = plugin(deployment, "GET", "/jobs?runs_per_job=5")
    job = next(j for j in overview["jobs"] if j["dag_id"] == dag_id)
    shown = {r["dag_run_id"]: r["state"] for r in job["job_runs"]}
    assert shown == {runs["one run"]: "success", runs["view"]: "cancelled",
                     runs["airflow"]: "cancelled"}
    # The finalize log says why.
    log = deployment.task_log(dag_id, runs["view"], "finalize", -1)
    assert "was cancelled by admin" in log
