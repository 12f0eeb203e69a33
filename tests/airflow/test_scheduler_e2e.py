"""A real Airflow deployment end to end: API server, scheduler and DAG processor.

The session's deployment (``tests/deployment.py``) runs the repository's ``dags/`` file
over a copy of the example project (``examples/projects/weather-report``, its job made
trigger-only). The job DAG is triggered twice, from the CLI (``airflow dags trigger -c``)
and through the REST API (SimpleAuthManager JWT, ``POST /api/v2/dags/{dag_id}/dagRuns``),
each with its own conf; both runs must succeed, a step's log is read back through the
API, and each run's published report must show its conf (city, seed, title).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests.deployment import Deployment

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "projects" / "weather-report"
GENERATE_STEP = "4ed239c8-150f-41b6-a502-e67a65dab474"
GENERATE_TASK = "pipeline_run.generate_readings"
PUBLISH_TASK = "pipeline_run.publish"


def _copy_example(projects_dir: Path, name: str) -> None:
    """The example project under a unique name, its job made trigger-only (no cron runs)."""
    target = projects_dir / name
    shutil.copytree(EXAMPLE, target)
    job_file = target / "nightly.job.json"
    job = json.loads(job_file.read_text())
    job["schedule"] = None
    job_file.write_text(json.dumps(job, indent=4))


FLAKY_DAG = "orchest__flaky__main"
FLAKY_STEP = """\
import os, time, orchest
if orchest.get_pipeline_param("n") == 2:
    print("sleeping", flush=True)
    time.sleep(600)
if orchest.get_pipeline_param("n") == 1 and not os.path.exists("/data/allow"):
    raise SystemExit("run 1 waits for /data/allow")
print("run", orchest.get_pipeline_param("n"), "done")
"""


def _write_flaky(projects_dir: Path) -> None:
    """A one-step pipeline whose run 1 fails until /data/allow exists."""
    from tests.orchest_factory import pipeline_doc, step, write_project

    doc = pipeline_doc([step("work", "work.py", title="work")], parameters={"n": 0},
                       uuid="flaky-pipeline")
    write_project(projects_dir / "flaky", doc, files={"work.py": FLAKY_STEP},
                  parameters={"pipeline_parameters": {"n": [0, 1]}})


@pytest.fixture(scope="module")
def weather(deployment: Deployment) -> str:
    """The example project under a unique name in the deployment; its job's DAG id."""
    project = f"weather-{uuid.uuid4().hex[:6]}"  # unique: frozen image tags are per job id
    _copy_example(deployment.projects_dir, project)
    return f"orchest_job__{project}__nightly"


@pytest.fixture(scope="module")
def flaky(deployment: Deployment) -> str:
    _write_flaky(deployment.projects_dir)
    deployment.wait_for_dag(FLAKY_DAG)
    return FLAKY_DAG


def _reports(data_dir: Path) -> list[str]:
    return sorted(p.read_text() for p in (data_dir / "weather-report").glob("*.md"))


def test_scheduler_runs_the_job_triggered_from_cli_and_rest_api(deployment: Deployment,
                                                                weather: str) -> None:
    dag_id = weather
    deployment.wait_for_dag(dag_id)
    errors = deployment.api("GET", "/importErrors").json()
    assert errors["total_entries"] == 0, deployment.diagnostics()

    # From the CLI: another city, and the title; run 0 of the resulting grid only.
    cli_run = f"cli__{uuid.uuid4().hex[:8]}"
    cli_conf = {"parameters": {"pipeline_parameters": {"city": ["Oslo"]},
                               GENERATE_STEP: {"seed": [5]}},
                "env_variables": {"REPORT_TITLE": "Triggered from the CLI"}}
    triggered = deployment.airflow("dags", "trigger", dag_id, "-r", cli_run,
                                   "-c", json.dumps(cli_conf))
    assert triggered.returncode == 0, \
        f"{triggered.stdout}{triggered.stderr}\n{deployment.diagnostics()}"

    # Through the REST API (JWT from SimpleAuthManager).
    api_conf = {"parameters": {"pipeline_parameters": {"city": ["Reykjavik"]},
                               GENERATE_STEP: {"seed": [7]}},
                "env_variables": {"REPORT_TITLE": "Triggered through the REST API"}}
    api_run = deployment.trigger(dag_id, api_conf, prefix="api")
    assert deployment.dag_run(dag_id, api_run)["conf"] == api_conf

    for run_id in (cli_run, api_run):
        state = deployment.wait_finished(dag_id, run_id)["state"]
        states = deployment.task_states(dag_id, run_id)
        assert state == "success", f"{run_id}: {states}\n{deployment.diagnostics()}"
        assert states[f"{GENERATE_TASK}[0]"] == "success", states
        assert f"{GENERATE_TASK}[1]" not in states, states  # one pipeline run each

    # The step's own output, read back through the API.
    cli_log = deployment.task_log(dag_id, cli_run, GENERATE_TASK, 0)
    assert "Generated 12 readings for Oslo over 3 day(s) (seed 5)." in cli_log, cli_log[-3000:]
    api_log = deployment.task_log(dag_id, api_run, GENERATE_TASK, 0)
    assert "Generated 12 readings for Reykjavik over 3 day(s) (seed 7)." in api_log, \
        api_log[-3000:]
    assert "publish: wrote /data/weather-report/" in deployment.task_log(
        dag_id, api_run, PUBLISH_TASK, 0)

    # Each run published its own report to /data, with its conf's title and city.
    reports = _reports(deployment.data_dir)
    assert len(reports) == 2, reports
    by_title = {r.splitlines()[0]: r for r in reports}
    assert set(by_title) == {"# Triggered from the CLI", "# Triggered through the REST API"}
    assert "## Oslo: 3 day(s), seed 5" in by_title["# Triggered from the CLI"]
    assert "## Reykjavik: 3 day(s), seed 7" in by_title["# Triggered through the REST API"]


def test_clearing_one_failed_pipeline_run_reruns_it_alone(deployment: Deployment,
                                                          flaky: str) -> None:
    """Clear the failed map index: that run re-runs in the same snapshot; the other not."""
    run_id = deployment.trigger(flaky, prefix="flaky")

    def tries() -> dict[str, tuple[str, int]]:
        return {key: (ti["state"], ti["try_number"])
                for key, ti in deployment.task_instances(flaky, run_id).items()}

    assert deployment.wait_finished(flaky, run_id)["state"] == "failed", \
        deployment.diagnostics()
    before = tries()
    assert before["pipeline_run.work[0]"] == ("success", 1), before
    assert before["pipeline_run.work[1]"][0] == "failed", before
    snapshots = sorted((deployment.store_dir / "snapshots" / "manifests").glob("*"))

    (deployment.data_dir / "allow").write_text("yes")
    response = deployment.api("POST", f"/dags/{flaky}/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": run_id, "only_failed": True,
        "task_ids": [["pipeline_run.work", 1]], "include_downstream": True})
    assert response.status_code == 200, response.text

    def succeeded() -> dict | None:
        run = deployment.dag_run(flaky, run_id)
        done = run["state"] in ("success", "failed")
        return run if done and tries()["pipeline_run.work[1]"][1] > 1 else None

    assert deployment.wait("the cleared run", succeeded, interval=3)["state"] == \
        "success", f"{tries()}\n{deployment.diagnostics()}"
    after = tries()
    assert after["pipeline_run.work[0]"] == ("success", 1), after  # not run again
    assert after["pipeline_run.work[1]"][0] == "success", after
    # the same snapshot: clearing made no new one
    assert sorted((deployment.store_dir / "snapshots" / "manifests").glob("*")) == \
        snapshots


def test_marking_a_running_dag_run_failed_removes_its_containers(
        deployment: Deployment, flaky: str, docker_client) -> None:
    """Orchest's cancel: nothing keeps running once the user marks the run failed."""
    run_id = deployment.trigger(flaky, {"parameters": {"pipeline_parameters": {"n": [2]}}},
                                prefix="cancel")

    def step_containers():
        return docker_client.containers.list(
            filters={"label": "orchest-jobs.pipeline-uuid=flaky-pipeline"})

    def sleeping() -> bool:
        return any("sleeping" in c.logs().decode() for c in step_containers())

    deployment.wait("the slow step to start", sleeping)
    response = deployment.api("PATCH", f"/dags/{flaky}/dagRuns/{run_id}",
                              json={"state": "failed"})
    assert response.status_code == 200, response.text
    deployment.wait("the step container to be stopped and removed",
                    lambda: not docker_client.containers.list(
                        all=True, filters={"label": "orchest-jobs.pipeline-uuid=flaky-pipeline"})
                    or None, 90)
    # The DAG run ends once its finalize teardown has (it may outlast the container).
    assert deployment.wait_finished(flaky, run_id)["state"] == "failed"
