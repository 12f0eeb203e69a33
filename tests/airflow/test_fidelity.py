"""Orchest behaviours users rely on, through the DAG factory with real Airflow and Docker.

Variables with Orchest's precedence (project and pipeline variables as Airflow
Variables), services beside each pipeline run (reached by the SDK's hostname on the
run's own loopback, removed whatever the outcome), the definition at /pipeline.json and
group-writable files. What needs steps side by side (fail-fast, run limits) is in
``tests/test_fidelity_scheduler.py`` on a real scheduler.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.labels import LABEL_RUN
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.core.variables import pipeline_variable, project_variable
from airflow_orchest_jobs.dag.factory import build_dags
from tests.airflow_helpers import run_dag, task_states
from tests.orchest_factory import ENV, pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

SHOW_ENV = """\
import json, os, orchest
names = ["a", "b", "c", "d", "e", "f", "V", "W", "TOKEN"]
seen = {n: os.environ.get(n) for n in names}
n = orchest.get_pipeline_param("n")
with open(f"/data/env-{n}.json", "w") as out:
    json.dump(seen, out)
with open("/pipeline.json") as definition:
    assert json.load(definition)["parameters"]["n"] == n
open("made-by-step.txt", "w").write("x")
print("variables", seen)
"""

FETCH = """\
import orchest, urllib.request
web = orchest.get_service("web")
url = f"http://{web['internal_hostname']}:8080/hello.txt"
body = urllib.request.urlopen(url, timeout=10).read().decode()
n = orchest.get_pipeline_param("n")
open(f"/data/fetched-{n}.txt", "w").write(body)
print("fetched", url, body)
if n == 1:
    raise SystemExit("run 1 fails after fetching")
"""


@pytest.fixture
def env(orchest_settings, images, docker_client) -> Settings:
    return orchest_settings(environment_images={"*": images["python"]})


@pytest.fixture
def variables(airflow_home):
    """Airflow Variables set for a test, deleted after it."""
    from airflow.models import Variable

    keys: list[str] = []

    def put(key: str, value: dict) -> None:
        Variable.set(key, json.dumps(value))
        keys.append(key)

    yield put
    for key in keys:
        Variable.delete(key)


def test_variables_follow_orchests_precedence_and_the_conf_wins(env, variables):
    """Orchest's own e2e case, plus one variable at all four levels (the conf's wins)."""
    doc = pipeline_doc([step("show", "show.py")], parameters={"n": 0}, uuid="vars-pipeline")
    write_project(env.projects_dir / "vars", doc, files={"show.py": SHOW_ENV})
    (env.projects_dir / "vars" / "nightly.job.json").write_text(json.dumps({
        "pipeline": "main.orchest",
        "env_variables": {"c": "cJVal", "d": "dJVal", "e": "eJVal", "f": "fJVal",
                          "V": "job"}}))
    variables(project_variable("vars"), {"a": "1", "b": "2", "c": "3", "e": "ePrVal",
                                         "V": "project", "W": "project",
                                         "TOKEN": "project-secret-value"})
    variables(pipeline_variable("vars", "main.orchest"),
              {"b": "2", "c": "override", "d": "4", "V": "pipeline", "W": "pipeline"})
    dag = build_dags(env)["orchest_job__vars__nightly"]
    dag_run = run_dag(dag, {"env_variables": {"V": "conf"}})
    assert str(dag_run.state) == "success", task_states(dag_run)
    seen = json.loads((env.data_dir / "env-0.json").read_text())
    assert seen == {"a": "1", "b": "2", "c": "cJVal", "d": "dJVal", "e": "eJVal",
                    "f": "fJVal", "V": "conf", "W": "pipeline",
                    "TOKEN": "project-secret-value"}
    # Files a step makes are group-writable (Orchest's umask 002).
    made = next(env.store_dir.glob("runs/*/*/run-00000/project/made-by-step.txt"))
    assert made.stat().st_mode & stat.S_IWGRP


def test_a_malformed_project_variable_fails_the_run_before_any_step(env, variables):
    from airflow.models import Variable

    doc = pipeline_doc([step("show", "show.py")], parameters={"n": 0})
    write_project(env.projects_dir / "badvars", doc, files={"show.py": SHOW_ENV})
    variables(project_variable("badvars"), {})
    Variable.set(project_variable("badvars"), '{"bad name": 1')
    dag_run = run_dag(build_dags(env)["orchest__badvars__main"])
    states = task_states(dag_run)
    assert states["snapshot"] == "failed" and "pipeline_run.show[0]" not in states, states


def _service_project(projects: Path, *, service_args: str, grid: list[int]) -> str:
    doc = pipeline_doc([step("fetch", "fetch.py")], parameters={"n": 0}, uuid="svc-pipeline")
    doc["services"] = {"web": {
        "name": "web", "image": f"environment@{ENV}", "scope": ["noninteractive"],
        "command": "python3", "args": service_args, "binds": {"/data": "/srv"},
        "ports": [8080], "env_variables": {}, "env_variables_inherit": [], "order": 1,
        "exposed": False, "requires_authentication": True}}
    write_project(projects / "svc", doc, files={"fetch.py": FETCH},
                  parameters={"pipeline_parameters": {"n": grid}})
    return "orchest__svc__main"


def _run_containers(docker_client, dag_run) -> list:
    from airflow_orchest_jobs.core.plan import run_uuid

    found = []
    for index in range(4):
        label = f"{LABEL_RUN}={run_uuid(f'{dag_run.dag_id}/{dag_run.run_id}', index)}"
        found += docker_client.containers.list(all=True, filters={"label": label})
    return found


def test_services_start_beside_each_run_and_are_gone_after(env, docker_client):
    """The step reaches the service by the SDK's hostname on the run's own loopback."""
    dag_id = _service_project(env.projects_dir, grid=[0, 1],
                              service_args="-m http.server 8080 --directory /srv")
    env.data_dir.mkdir(mode=0o777)
    env.data_dir.chmod(0o777)
    (env.data_dir / "hello.txt").write_text("hello from /data")
    dag_run = run_dag(build_dags(env)[dag_id])
    states = task_states(dag_run)
    assert states["pipeline_run.fetch[0]"] == "success", states
    assert states["pipeline_run.fetch[1]"] == "failed", states  # fails after fetching
    assert states["pipeline_run.cleanup[0]"] == states["pipeline_run.cleanup[1]"] == "success"
    for n in (0, 1):
        assert (env.data_dir / f"fetched-{n}.txt").read_text() == "hello from /data"
    assert _run_containers(docker_client, dag_run) == []  # after success and failure


def test_a_service_that_cannot_start_fails_its_run_before_any_step(env, docker_client):
    """(What the task log says is checked in tests/test_services.py and on the scheduler.)"""
    dag_id = _service_project(env.projects_dir, grid=[0],
                              service_args="-c \"print('no such module'); import nope\"")
    dag_run = run_dag(build_dags(env)[dag_id])
    states = task_states(dag_run)
    assert states["pipeline_run.prepare[0]"] == "failed", states
    assert states["pipeline_run.fetch[0]"] == "upstream_failed", states
    assert _run_containers(docker_client, dag_run) == []
