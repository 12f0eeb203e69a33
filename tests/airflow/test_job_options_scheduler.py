"""The job options Orchest's users asked for, each shown on the session's real scheduler.

One project, one pipeline (``work.py`` does what its parameters say: sleep, fail, or fail
until its N-th try), five job files, one per option; their job runs run side by side:

- ``max_active_job_runs: 1``: two job runs never overlap (the second starts after the
  first ended);
- ``pipeline_run_timeout``: a run past it is stopped and ``failed``, the limit in its log;
- ``step_retries: 2``: a step failing twice succeeds on its third try (and no more);
- ``start_date``: a cron job's next run is not before it;
- ``stop_on_first_failure``: the first failed run stops the others (``cancelled``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from tests.deployment import Deployment, api_time
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

WORK = """\
import json, os, pathlib, sys, time
p = json.load(open(os.environ["ORCHEST_PIPELINE_PATH"]))["parameters"]
if p["count_file"]:
    counter = pathlib.Path("/data") / p["count_file"]
    with counter.open("a") as handle:
        handle.write("try\\n")
    tries = len(counter.read_text().splitlines())
    print(f"try {tries}", flush=True)
    if tries < p["succeed_at"]:
        sys.exit(f"failing on purpose at try {tries}")
if p["fail_if_zero"] and p["sleep"] == 0:
    sys.exit("failing on purpose")
print(f"sleeping {p['sleep']}", flush=True)
time.sleep(p["sleep"])
"""
DEFAULTS = {"sleep": 0, "count_file": "", "succeed_at": 0, "fail_if_zero": False}
START = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)


def grid(**values: list[Any]) -> dict[str, Any]:
    return {"pipeline_parameters": values}


@pytest.fixture(scope="module")
def jobs(deployment: Deployment) -> dict[str, Any]:
    """The project's job DAGs triggered (the cron job is not): {job: (dag id, run ids)}."""
    name = f"options{uuid.uuid4().hex[:6]}"
    counter = f"{name}-tries.txt"
    root = deployment.projects_dir / name
    write_project(root, pipeline_doc([step("w", "work.py", title="work")],
                                     parameters=DEFAULTS, uuid=f"options-{name}"),
                  files={"work.py": WORK})
    files = {
        "overlap": {"max_active_job_runs": 1, "parameters": grid(sleep=[3])},
        "timeout": {"pipeline_run_timeout": "8s", "parameters": grid(sleep=[300])},
        "retries": {"step_retries": 2, "step_retry_delay": 1,
                    "parameters": grid(count_file=[counter], succeed_at=[3])},
        "later": {"schedule": "* * * * *", "start_date": START.isoformat()},
        "stop": {"stop_on_first_failure": True,
                 "parameters": grid(sleep=[0, 300, 301, 302], fail_if_zero=[True])},
    }
    for job, fields in files.items():
        (root / f"{job}.job.json").write_text(json.dumps({"pipeline": "main.orchest",
                                                          **fields}))
    out: dict[str, Any] = {"counter": deployment.data_dir / counter}
    for job in files:
        dag_id = f"orchest_job__{name}__{job}"
        deployment.wait_for_dag(dag_id)
        if job == "later":
            out[job] = (dag_id, [])
            continue
        count = 2 if job == "overlap" else 1
        out[job] = (dag_id, [deployment.trigger(dag_id, prefix=job) for _ in range(count)])
    return out


def rows(deployment: Deployment, dag_id: str, run_id: str) -> dict[int, str]:
    if not deployment.token:
        deployment.login()
    response = requests.get(
        f"{deployment.base_url}/orchest-jobs/api/v1/dags/{dag_id}/dagRuns/{run_id}"
        "/pipelineRuns", headers={"Authorization": f"Bearer {deployment.token}"}, timeout=60)
    response.raise_for_status()
    return {r["index"]: r["state"] for r in response.json()["pipeline_runs"]}


def test_job_runs_of_a_job_with_max_active_job_runs_never_overlap(deployment, jobs):
    dag_id, (first, second) = jobs["overlap"]
    runs = [deployment.wait_finished(dag_id, run_id) for run_id in (first, second)]
    assert [r["state"] for r in runs] == ["success", "success"]
    earlier, later = sorted(runs, key=lambda r: api_time(r["start_date"]))
    assert api_time(later["start_date"]) >= api_time(earlier["end_date"]), runs


def test_a_run_past_its_time_limit_is_stopped_and_failed_with_the_limit_in_its_log(
        deployment, jobs, docker_client):
    dag_id, (run_id,) = jobs["timeout"]
    assert deployment.wait_finished(dag_id, run_id)["state"] == "failed"
    assert rows(deployment, dag_id, run_id) == {0: "failed"}
    ti = deployment.task_instances(dag_id, run_id)["pipeline_run.work[0]"]
    assert ti["state"] == "failed" and ti["try_number"] == 1
    log = deployment.task_log(dag_id, run_id, "pipeline_run.work", 0)
    assert "passed its time limit of 8s (pipeline_run_timeout)" in log
    assert not docker_client.containers.list(all=True, filters={
        "label": f"orchest-jobs.job={dag_id}/{run_id}"})


def test_a_failed_step_is_retried_step_retries_times(deployment, jobs):
    dag_id, (run_id,) = jobs["retries"]
    assert deployment.wait_finished(dag_id, run_id)["state"] == "success"
    ti = deployment.task_instances(dag_id, run_id)["pipeline_run.work[0]"]
    assert ti["try_number"] == 3 and ti["state"] == "success"
    assert jobs["counter"].read_text().splitlines() == ["try"] * 3
    first = deployment.task_log(dag_id, run_id, "pipeline_run.work", 0, try_number=1)
    assert "it is tried again (try 1 of 3, step_retries)" in first


def test_a_cron_job_never_runs_before_its_start_date(deployment, jobs):
    dag_id, _ = jobs["later"]
    dag = deployment.api("GET", f"/dags/{dag_id}").json()
    after = dag.get("next_dagrun_run_after") or dag.get("next_dagrun_logical_date")
    assert after and api_time(after) >= START, dag
    runs = deployment.api("GET", f"/dags/{dag_id}/dagRuns").json()
    assert runs["total_entries"] == 0


def test_the_first_failed_pipeline_run_stops_the_job_run(deployment, jobs):
    dag_id, (run_id,) = jobs["stop"]
    assert deployment.wait_finished(dag_id, run_id)["state"] == "failed"
    assert rows(deployment, dag_id, run_id) == {0: "failed", 1: "cancelled",
                                                2: "cancelled", 3: "cancelled"}
    states = deployment.task_states(dag_id, run_id)
    assert [states[f"pipeline_run.work[{i}]"] for i in range(4)] == [
        "failed", "skipped", "skipped", "skipped"]
