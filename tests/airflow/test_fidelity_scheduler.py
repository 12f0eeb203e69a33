"""Orchest behaviours that need steps side by side, on the session's real scheduler.

Fail-fast (the first failed step stops its pipeline run: running siblings are stopped,
steps not started never start, the job's other runs go on), whole-run limits
(``max_parallel_runs``: runs never overlap, in grid order), masked project variables,
and a cancelled run with services leaving no container behind.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from airflow_orchest_jobs.core.variables import project_variable
from tests.deployment import Deployment, api_seconds, api_time
from tests.orchest_factory import ENV, pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

BOOM = """\
import time, orchest
time.sleep(3)
if orchest.get_pipeline_param("n") == 0:
    raise SystemExit("boom: run 0 fails")
print("boom ok")
"""
SIBLING = """\
import time, orchest
n = orchest.get_pipeline_param("n")
print("sibling sleeping", flush=True)
time.sleep(40 if n == 0 else 1)
print("sibling done")
"""
QUICK = "print('ran')\n"
SLOW = """\
import os, time
print("token is", os.environ.get("TOKEN"), flush=True)
time.sleep(2)
"""


def _name() -> str:
    return f"p{uuid.uuid4().hex[:6]}"


def test_the_first_failed_step_stops_its_run_and_only_its_run(deployment: Deployment,
                                                              docker_client) -> None:
    name = _name()
    doc = pipeline_doc([step("boom", "boom.py", title="boom"),
                        step("sibling", "sibling.py", title="sibling"),
                        step("after", "quick.py", title="after", incoming=["boom"]),
                        step("late", "late.py", title="late", incoming=["sibling"])],
                       parameters={"n": 0}, uuid=f"ff-{name}")
    write_project(deployment.projects_dir / name, doc,
                  files={"boom.py": BOOM, "sibling.py": SIBLING, "quick.py": QUICK,
                         "late.py": QUICK},
                  parameters={"pipeline_parameters": {"n": [0, 1]}})
    dag_id = f"orchest__{name}__main"
    deployment.wait_for_dag(dag_id)
    run_id = deployment.trigger(dag_id, prefix="failfast")
    run = deployment.wait_finished(dag_id, run_id)
    tis = deployment.task_instances(dag_id, run_id)
    states = {key: ti["state"] for key, ti in tis.items()}
    assert run["state"] == "failed", states
    assert states["pipeline_run.boom[0]"] == "failed", states
    assert states["pipeline_run.sibling[0]"] == "skipped", states  # stopped
    assert states["pipeline_run.after[0]"] == "upstream_failed", states  # never started
    assert states["pipeline_run.late[0]"] == "skipped", states  # never started
    for task in ("boom", "sibling", "after", "late"):  # the other run went on
        assert states[f"pipeline_run.{task}[1]"] == "success", states

    boom, sibling = tis["pipeline_run.boom[0]"], tis["pipeline_run.sibling[0]"]
    stopped_after = api_seconds(boom["end_date"], sibling["end_date"])
    assert stopped_after < 15, (boom, sibling)
    ran_for = api_seconds(sibling["start_date"], sibling["end_date"])
    assert ran_for < 30, sibling  # its 40 s sleep was cut short
    # The DAG run ended long before the sibling's 40 s were up.
    assert api_seconds(sibling["start_date"], run["end_date"]) < 35, run
    log = deployment.task_log(dag_id, run_id, "pipeline_run.sibling", 0)
    assert "Stopped: step 'boom' (boom) of this pipeline run failed (fail-fast)" in log, \
        log[-3000:]
    assert not docker_client.containers.list(
        all=True, filters={"label": f"orchest-jobs.pipeline-uuid=ff-{name}"})


def _spans(tis: dict[str, dict[str, Any]], runs: int) -> list[tuple[datetime, datetime]]:
    """Each pipeline run from its first step's start to its teardown's end."""
    spans = []
    for index in range(runs):
        mine = [ti for key, ti in tis.items()
                if key.endswith(f"[{index}]") and not key.startswith("pipeline_run.prepare")]
        spans.append((min(api_time(ti["start_date"]) for ti in mine),
                      max(api_time(ti["end_date"]) for ti in mine)))
    return spans


def test_max_parallel_runs_limits_whole_runs_in_grid_order(deployment: Deployment) -> None:
    name = _name()
    doc = pipeline_doc([step("one", "slow.py", title="one"),
                        step("two", "slow2.py", title="two", incoming=["one"])],
                       parameters={"n": 0}, uuid=f"lim-{name}")
    write_project(deployment.projects_dir / name, doc,
                  files={"slow.py": SLOW, "slow2.py": SLOW})
    (deployment.projects_dir / name / "limited.job.json").write_text(json.dumps({
        "pipeline": "main.orchest", "max_parallel_runs": 1,
        "parameters": {"pipeline_parameters": {"n": [0, 1, 2]}}}))
    # A project variable is a secret, as in Orchest: masked in the task log.
    response = deployment.api("POST", "/variables", json={
        "key": project_variable(name), "value": json.dumps({"TOKEN": "s3cret-project-token"})})
    assert response.status_code in (200, 201), response.text
    dag_id = f"orchest_job__{name}__limited"
    deployment.wait_for_dag(dag_id)
    run_id = deployment.trigger(dag_id, prefix="limited")
    run = deployment.wait_finished(dag_id, run_id)
    tis = deployment.task_instances(dag_id, run_id)
    assert run["state"] == "success", {k: ti["state"] for k, ti in tis.items()}
    assert [tis[f"pipeline_run.cleanup[{i}]"]["state"] for i in range(3)] == ["success"] * 3
    spans = _spans(tis, 3)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans  # no overlap, and run 0 before run 1 before run 2
    log = deployment.task_log(dag_id, run_id, "pipeline_run.one", 0)
    assert "token is ***" in log and "s3cret-project-token" not in log, log[-3000:]


SERVE_AND_WAIT = """\
import orchest, time, urllib.request
web = orchest.get_service("web")
urllib.request.urlopen(f"http://{web['internal_hostname']}:8080/", timeout=10).read()
print("service reached; sleeping", flush=True)
time.sleep(600)
"""


def test_cancelling_a_run_with_services_leaves_no_container(deployment: Deployment,
                                                            docker_client) -> None:
    name = _name()
    doc = pipeline_doc([step("wait", "wait.py", title="wait")], uuid=f"svc-{name}")
    doc["services"] = {"web": {
        "name": "web", "image": f"environment@{ENV}", "scope": ["noninteractive"],
        "command": "python3", "args": "-m http.server 8080 --directory /tmp",
        "ports": [8080], "binds": {}, "env_variables": {}, "env_variables_inherit": [],
        "order": 1}}
    write_project(deployment.projects_dir / name, doc, files={"wait.py": SERVE_AND_WAIT})
    dag_id = f"orchest__{name}__main"
    deployment.wait_for_dag(dag_id)
    run_id = deployment.trigger(dag_id, prefix="cancel")

    def run_containers() -> list:
        from airflow_orchest_jobs.core.plan import run_uuid

        label = f"orchest-jobs.run-uuid={run_uuid(f'{dag_id}/{run_id}', 0)}"
        return docker_client.containers.list(all=True, filters={"label": label})

    deployment.wait("the step to reach the service", lambda: any(
        "service reached" in box.logs().decode() for box in run_containers()))
    assert len(run_containers()) == 3  # holder, service, step
    response = deployment.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}",
                              json={"state": "failed"})
    assert response.status_code == 200, response.text
    deployment.wait("the run's containers to be removed", lambda: not run_containers(), 90)


def test_a_notebook_saved_by_orchest_runs_beside_its_sibling(deployment: Deployment) -> None:
    """Orchest's kernelspec name, a `skip` cell and a plot, with a sibling running."""
    from tests.airflow.test_notebooks import PNG_CELL, code, notebook

    name = _name()
    saved = notebook(code(f"open('/data/skipped-{name}', 'w').write('ran')", "skip"),
                     code("import orchest\nprint('n is', orchest.get_pipeline_param('n'))"),
                     code(PNG_CELL))
    doc = pipeline_doc([step("nb", "analyse.ipynb", title="analyse"),
                        step("side", "side.py", title="side")],
                       parameters={"n": 7}, uuid=f"nb-{name}")
    write_project(deployment.projects_dir / name, doc,
                  files={"analyse.ipynb": json.dumps(saved), "side.py": SLOW})
    dag_id = f"orchest__{name}__main"
    deployment.wait_for_dag(dag_id)
    run_id = deployment.trigger(dag_id, prefix="notebook")
    run = deployment.wait_finished(dag_id, run_id)
    tis = deployment.task_instances(dag_id, run_id)
    assert run["state"] == "success", {k: ti["state"] for k, ti in tis.items()}
    nb, side = tis["pipeline_run.analyse[0]"], tis["pipeline_run.side[0]"]
    assert api_time(nb["start_date"]) < api_time(side["end_date"]) and \
        api_time(side["start_date"]) < api_time(nb["end_date"])  # side by side
    assert not (deployment.data_dir / f"skipped-{name}").exists()
    html = next(deployment.store_dir.glob(f"runs/{dag_id}/*/run-00000/project/analyse.html"))
    assert "data:image/png;base64," in html.read_text()
    assert "n is 7" in deployment.task_log(dag_id, run_id, "pipeline_run.analyse", 0)
