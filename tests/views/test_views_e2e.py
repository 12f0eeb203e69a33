"""The job views on the session's real Airflow (api-server, scheduler, DAG processor).

A 12-run job where two runs fail: the JSON API (rows, filters, search, sort, paging,
permissions), then a real headless Chromium logged in to Airflow's UI: the pipeline-run
tab of the DAG run page, a step's log, the executed notebook (its script never runs in
Airflow's origin), the jobs overview, and "re-run failed runs" once the failure is gone.
A second job of the same pipeline, run three times, shows its whole history in one
table. The screenshots in docs/images/ are taken here (written there with
UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.deployment import (
    OUTSIDER,
    OUTSIDER_PASSWORD,
    PASSWORD,
    RESTRICTED,
    RESTRICTED_PASSWORD,
    USER,
)
from tests.views import project
from tests.views.browser import binaries, chromium, login, screenshot, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

B_COL = f"param:{project.COMPUTE}:b"


def token(base_url: str, user: str, password: str) -> str:
    response = requests.post(f"{base_url}/auth/token",
                             json={"username": user, "password": password}, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


def set_variable(deployment, value: str) -> None:
    response = deployment.api("PATCH", f"/variables/{project.VARIABLE}",
                              json={"key": project.VARIABLE, "value": value})
    if response.status_code == 404:
        response = deployment.api("POST", "/variables",
                                  json={"key": project.VARIABLE, "value": value})
    assert response.status_code in (200, 201), response.text


#: The history job's three job runs: (runs, BREAK) each; runs 5 (a=2,b=x) of the first
#: and 6 (a=2,b=y) of the third fail, the other five succeed.
HISTORY = [([0, 5], "2x"), ([1, 6], ""), ([2, 6, 7], "2y")]


@pytest.fixture(scope="module")
def history_runs(deployment):
    """The history job triggered three times (oldest first), not waited for: run ids."""
    project.write(deployment.projects_dir)
    deployment.wait_for_dag(project.HISTORY_DAG)
    return [deployment.trigger(project.HISTORY_DAG, {"runs": runs,
                                                      "env_variables": {"BREAK": broken}},
                               prefix=f"history{i}")
            for i, (runs, broken) in enumerate(HISTORY)]


@pytest.fixture(scope="module")
def job_run(deployment, history_runs):
    """The job triggered once with runs a=2,b=x and a=2,b=y broken: (dag id, run id).
    (The history job's runs were triggered just before: they run beside it.)"""
    project.write(deployment.projects_dir)
    set_variable(deployment, "2x,2y")
    deployment.wait_for_dag(project.JOB_DAG)
    run_id = deployment.trigger(project.JOB_DAG, prefix="views")
    assert deployment.wait_finished(project.JOB_DAG, run_id)["state"] == "failed"
    return project.JOB_DAG, run_id


class Client:
    """Requests to the plugin's app as one user (bearer token)."""

    def __init__(self, base_url: str, user: str, password: str):
        self.base = f"{base_url}/orchest-jobs"
        self.headers = {"Authorization": f"Bearer {token(base_url, user, password)}"}

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, params=params, timeout=60)

    def post(self, path: str, body=None, **headers) -> requests.Response:
        return requests.post(self.base + path, headers={**self.headers, **headers},
                             json=body if body is not None else {}, timeout=60)


def runs_path(dag_id: str, run_id: str) -> str:
    return f"/api/v1/dags/{dag_id}/dagRuns/{run_id}/pipelineRuns"


def clears(deployment, dag_id: str, run_id: str) -> list[dict]:
    """Airflow's audit log entries of the re-runs of one DAG run (its own clear endpoint)."""
    response = deployment.api("GET", "/eventLogs", params={
        "dag_id": dag_id, "run_id": run_id, "event": "post_clear_task_instances"})
    assert response.status_code == 200, response.text
    return list(response.json()["event_logs"])


def test_api_rows_filters_search_sort_paging(deployment, job_run):
    dag_id, run_id = job_run
    admin = Client(deployment.base_url, USER, PASSWORD)
    data = admin.get(runs_path(dag_id, run_id), limit=100).json()
    assert data["total_runs"] == 12 and len(data["pipeline_runs"]) == 12
    assert data["counts"]["failed"] == 2 and data["counts"]["success"] == 10
    assert [c["title"] for c in data["columns"]] == ["a", "Compute: b"]
    assert [s["task_id"] for s in data["steps"]] == ["compute", "report"]
    failed = [r for r in data["pipeline_runs"] if r["state"] == "failed"]
    assert [r["index"] for r in failed] == [5, 6]
    assert [s["state"] for s in failed[0]["steps"]] == ["failed", "upstream_failed"]
    assert failed[0]["parameters"] == {"param:pipeline_parameters:a": 2, B_COL: "x"}
    assert data["can_edit"] is True
    only = admin.get(runs_path(dag_id, run_id), state="failed").json()
    assert only["total_entries"] == 2 and only["counts"]["failed"] == 2
    found = admin.get(runs_path(dag_id, run_id), q="a=2 b=y").json()
    assert [r["index"] for r in found["pipeline_runs"]] == [6]
    ordered = admin.get(runs_path(dag_id, run_id), sort=B_COL, order="desc", limit=3).json()
    assert [r["parameters"][B_COL] for r in ordered["pipeline_runs"]] == ["z", "z", "z"]
    page = admin.get(runs_path(dag_id, run_id), offset=10, limit=5).json()
    assert [r["index"] for r in page["pipeline_runs"]] == [10, 11]
    assert admin.get(runs_path(dag_id, run_id), state="bogus").status_code == 400
    assert admin.get(runs_path(dag_id, run_id), sort="bogus").status_code == 400
    # The links open what they name.
    log = requests.get(deployment.base_url + failed[0]["steps"][0]["log_url"],
                       headers=admin.headers, timeout=30)
    assert log.status_code == 200 and "broken on purpose: a=2 b=x" in log.text
    ok = data["pipeline_runs"][0]["steps"][1]["notebook_url"]
    notebook = requests.get(deployment.base_url + ok, headers=admin.headers, timeout=30)
    assert "notebook output" in notebook.text and "data:image/png;base64" in notebook.text
    assert notebook.headers["Content-Security-Policy"].startswith("sandbox")
    files = admin.get(f"/ui/dags/{dag_id}/runs/{run_id}/files/run-00005/project/")
    assert files.status_code == 200 and "compute.py" in files.text
    assert admin.get(f"/ui/dags/{dag_id}/runs/{run_id}/files/../../").status_code == 404
    jobs = {j["dag_id"]: j for j in admin.get("/api/v1/jobs").json()["jobs"]}
    job = jobs[dag_id]
    assert job["kind"] == "job" and job["project"] == project.NAME
    assert job["snapshot"]["files"] >= 5 and job["frozen_images"]
    assert job["max_retained_pipeline_runs"] == 50
    latest = job["job_runs"][0]
    assert latest["dag_run_id"] == run_id and latest["counts"]["failed"] == 2
    assert jobs[project.PIPELINE_DAG]["kind"] == "pipeline"


def test_a_user_without_permission_gets_no_rows_files_or_actions(deployment, job_run):
    dag_id, run_id = job_run
    outsider = Client(deployment.base_url, OUTSIDER, OUTSIDER_PASSWORD)
    assert outsider.get(runs_path(dag_id, run_id)).status_code == 403
    assert outsider.get("/api/v1/jobs").json() == {"jobs": [], "total_entries": 0}
    assert outsider.get(f"/ui/dags/{dag_id}/runs/{run_id}").status_code == 403
    assert outsider.get(f"/ui/dags/{dag_id}/runs/{run_id}/files/").status_code == 403
    assert outsider.get(f"/runs/{dag_id}/{run_id}/run-00000/project/report.html"
                        ).status_code == 403
    assert outsider.post(runs_path(dag_id, run_id) + "/rerun").status_code == 403
    assert outsider.post(runs_path(dag_id, run_id) + "/0/cancel").status_code == 403
    # A viewer may read the runs but not re-run or cancel one (nor through Airflow).
    viewer = Client(deployment.base_url, RESTRICTED, RESTRICTED_PASSWORD)
    assert viewer.get(runs_path(dag_id, run_id)).status_code == 200
    assert viewer.post(runs_path(dag_id, run_id) + "/rerun", {"runs": [5]}).status_code == 403
    assert viewer.post(runs_path(dag_id, run_id) + "/5/cancel").status_code == 403
    assert not [e for e in clears(deployment, dag_id, run_id) if e["owner"] != USER]
    anonymous = requests.get(f"{deployment.base_url}/orchest-jobs{runs_path(dag_id, run_id)}",
                             timeout=30)
    assert anonymous.status_code == 401
    # Actions are JSON and same-origin only (a cross-site form cannot post one).
    admin = Client(deployment.base_url, USER, PASSWORD)
    refused = requests.post(admin.base + runs_path(dag_id, run_id) + "/rerun",
                            headers=admin.headers, data="runs=5", timeout=30)
    assert refused.status_code == 415
    assert admin.post(runs_path(dag_id, run_id) + "/rerun", {"runs": [5]},
                      Origin="http://evil.example").status_code == 403


def test_cancel_one_run_and_the_whole_job_run(deployment, job_run):
    """"Cancel run N" stops that run only; marking the DAG run failed cancels the rest."""
    dag_id = project.PIPELINE_DAG
    deployment.wait_for_dag(dag_id)
    run_id = deployment.trigger(dag_id, {"runs": [0, 1, 2],
                                         "env_variables": {"SLEEP": "120"}}, prefix="cancel")
    admin = Client(deployment.base_url, USER, PASSWORD)

    def running(index: int):
        rows = admin.get(runs_path(dag_id, run_id)).json()["pipeline_runs"]
        row = next((r for r in rows if r["index"] == index), None)
        return row and row["steps"][0]["airflow_state"] == "running"

    deployment.wait("run 0 running", lambda: running(0), 240, 2)
    response = admin.post(runs_path(dag_id, run_id) + "/0/cancel")
    assert response.status_code == 200 and response.json()["task_instances_stopped"] >= 1

    def states():
        rows = admin.get(runs_path(dag_id, run_id)).json()["pipeline_runs"]
        return {r["index"]: r["state"] for r in rows}

    deployment.wait("run 0 cancelled", lambda: states()[0] == "cancelled", 60, 1)
    assert states()[1] in ("running", "queued")
    response = deployment.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}",
                              json={"state": "failed"})
    assert response.status_code == 200, response.text
    try:
        deployment.wait("every run cancelled",
                        lambda: set(states().values()) == {"cancelled"}, 120, 2)
    except BaseException:
        print(json.dumps(admin.get(runs_path(dag_id, run_id)).json(), indent=1))
        print(deployment.task_states(dag_id, run_id), deployment.dag_run(dag_id, run_id))
        raise
    rows = admin.get(runs_path(dag_id, run_id)).json()["pipeline_runs"]
    assert {s["state"] for r in rows for s in r["steps"]} == {"cancelled"}
    deployment.wait_finished(dag_id, run_id)

    # Re-run run 0 (a bearer token): Airflow's own clear, as that user, in its audit log.
    response = admin.post(runs_path(dag_id, run_id) + "/rerun", {"runs": [0]})
    assert response.status_code == 200, response.text
    assert response.json()["task_instances_cleared"] >= 2  # its steps and finalize
    assert states()[0] in ("queued", "running")
    assert deployment.dag_run(dag_id, run_id)["state"] in ("queued", "running")
    [entry] = clears(deployment, dag_id, run_id)
    assert entry["owner"] == USER and json.loads(entry["extra"])["dry_run"] is False
    stopped = deployment.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}",
                             json={"state": "failed"})
    assert stopped.status_code == 200, stopped.text


@pytest.mark.skipif(binaries() is None, reason="needs chromium and chromium-driver")
def test_browser_views_log_notebook_overview_and_rerun(deployment, job_run):
    from selenium.webdriver.common.by import By

    dag_id, run_id = job_run
    with chromium() as browser:
        login(browser, deployment.base_url, USER, PASSWORD)
        browser.get(f"{deployment.base_url}/dags/{dag_id}/runs/{run_id}")
        tab = wait_for("the Pipeline runs tab", lambda: next(
            e for e in browser.find_elements(By.CSS_SELECTOR, "a, button")
            if e.text == "Pipeline runs"))
        tab.click()

        def into_view():
            browser.switch_to.default_content()
            frame = wait_for("the view's frame",
                             lambda: browser.find_element(By.CSS_SELECTOR, "iframe"))
            browser.switch_to.frame(frame)
            return wait_for("12 rows", lambda: len(browser.find_elements(
                By.CSS_SELECTOR, "#runs tbody tr[data-index]")) == 12)

        into_view()
        headers = [th.text.rstrip("▲▼ ") for th in
                   browser.find_elements(By.CSS_SELECTOR, "#runs thead th")]
        assert headers[:4] == ["Run", "State", "a", "Compute: b"]
        failed = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-state=failed]")
        assert [r.get_attribute("data-index") for r in failed] == ["5", "6"]
        assert browser.find_element(By.CSS_SELECTOR, "[data-count=failed]").text == "2"
        assert "stopped" not in failed[0].text
        browser.switch_to.default_content()
        screenshot(browser, "pipeline-runs.png")
        into_view()

        # The failed step's log, as a person clicks it.
        browser.find_element(By.CSS_SELECTOR,
                             "tr[data-index='5'] [data-step=compute] a.log-link").click()
        wait_for("the step's log", lambda: "broken on purpose: a=2 b=x"
                 in browser.find_element(By.TAG_NAME, "body").text)
        browser.back()
        into_view()

        # The executed notebook: its image shows, its script never ran.
        browser.find_element(By.CSS_SELECTOR,
                             "tr[data-index='0'] [data-step=report] a.notebook-link").click()
        wait_for("the notebook", lambda: "notebook output"
                 in browser.find_element(By.TAG_NAME, "body").text)
        images = browser.execute_script(
            "return [...document.images].map(i => [i.src.slice(0, 22), i.naturalWidth])")
        assert ["data:image/png;base64,", 1] in images
        assert browser.execute_script("return document.body.dataset.mark || ''") == ""
        with pytest.raises(Exception, match="sandboxed"):
            browser.execute_script("return document.cookie")
        fetched = browser.execute_async_script(
            "const done = arguments[0]; fetch('/api/v2/dags', {credentials: 'include'})"
            ".then(r => done('status ' + r.status)).catch(e => done('blocked ' + e))")
        assert fetched.startswith("blocked"), fetched
        browser.switch_to.default_content()
        assert project.SCRIPT_MARK not in browser.title
        browser.back()

        # The jobs overview (Airflow's navigation entry).
        browser.get(f"{deployment.base_url}/plugin/orchest-jobs")
        browser.switch_to.frame(wait_for("the overview's frame", lambda: browser.find_element(
            By.CSS_SELECTOR, "iframe")))
        row = wait_for("the job's row", lambda: browser.find_element(
            By.CSS_SELECTOR, f"#jobs tr[data-dag='{dag_id}']"))
        assert "2 failed" in row.text and "keep 50" in row.text and "files" in row.text
        browser.switch_to.default_content()
        screenshot(browser, "jobs-overview.png")
        browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe"))
        browser.find_element(By.CSS_SELECTOR, f"#jobs [data-run='{run_id}'] a.runs-link").click()

        # Make the failure go away, then re-run the failed runs from the view.
        set_variable(deployment, "")
        wait_for("12 rows", lambda: len(browser.find_elements(
            By.CSS_SELECTOR, "#runs tbody tr[data-index]")) == 12)
        browser.find_element(By.ID, "rerun-failed").click()
        browser.find_element(By.CSS_SELECTOR, "[data-confirm=yes]").click()
        wait_for("all 12 runs succeeded", lambda: browser.find_element(
            By.CSS_SELECTOR, "[data-count=success]").text == "12", timeout=480, interval=2)
        assert browser.find_element(By.CSS_SELECTOR, "[data-count=failed]").text == "0"
    assert deployment.wait_finished(dag_id, run_id)["state"] == "success"
    # The browser's cookie was the credential of Airflow's clear: the user's entry.
    [entry] = clears(deployment, dag_id, run_id)
    assert entry["owner"] == USER
    assert sorted({pair[1] for pair in json.loads(entry["extra"])["task_ids"]
                   if isinstance(pair, list)}) == [1, 2]  # runs 5 and 6 (groups of 4)


@pytest.mark.skipif(binaries() is None, reason="needs chromium and chromium-driver")
def test_browser_a_user_without_permission_sees_nothing(deployment, job_run):
    from selenium.webdriver.common.by import By

    dag_id, run_id = job_run
    with chromium() as browser:
        login(browser, deployment.base_url, OUTSIDER, OUTSIDER_PASSWORD)
        browser.get(f"{deployment.base_url}/orchest-jobs/ui/dags/{dag_id}/runs/{run_id}")
        assert "403" in browser.title or "Forbidden" in browser.page_source
        assert "compute" not in browser.page_source.lower()
        browser.get(f"{deployment.base_url}/orchest-jobs/ui/jobs")
        wait_for("the empty overview", lambda: "0 Orchest DAG(s)" in browser.find_element(
            By.TAG_NAME, "body").text)
        rows = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => done(r.status))",
            f"/orchest-jobs/api/v1/dags/{dag_id}/dagRuns/{run_id}/pipelineRuns")
        assert rows == 403
        assert json.dumps(dag_id) not in browser.page_source


@pytest.mark.skipif(binaries() is None, reason="needs chromium and chromium-driver")
def test_browser_the_jobs_history_in_one_table(deployment, job_run, history_runs):
    """From the jobs overview: every pipeline run of the job's three job runs, newest job
    run first, the right states; filtered to the failed ones; paged on the server."""
    from selenium.webdriver.common.by import By

    dag_id = project.HISTORY_DAG
    for run_id in history_runs:
        deployment.wait_finished(dag_id, run_id)
    oldest, middle, newest = history_runs
    expected = [(newest, 2, "success"), (newest, 6, "failed"), (newest, 7, "success"),
                (middle, 1, "success"), (middle, 6, "success"),
                (oldest, 0, "success"), (oldest, 5, "failed")]

    def shown(browser) -> list[tuple[str, int, str]]:
        return [(r.get_attribute("data-run"), int(r.get_attribute("data-index")),
                 r.get_attribute("data-state"))
                for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-index]")]

    with chromium() as browser:
        login(browser, deployment.base_url, USER, PASSWORD)
        browser.get(f"{deployment.base_url}/orchest-jobs/ui/jobs")
        wait_for("the history link", lambda: browser.find_element(
            By.CSS_SELECTOR, f"#jobs tr[data-dag='{dag_id}'] a.history-link")).click()
        wait_for("7 rows", lambda: len(shown(browser)) == 7)
        assert shown(browser) == expected
        assert browser.find_element(By.CSS_SELECTOR, "[data-count=failed]").text == "2"
        browser.find_element(By.CSS_SELECTOR, "[data-filter=failed]").click()
        wait_for("the failed runs only", lambda: shown(browser) == [
            (newest, 6, "failed"), (oldest, 5, "failed")])
        # Paged on the server: a page of 3 holds 3 rows, the next page the next 3.
        browser.get(f"{deployment.base_url}/orchest-jobs/ui/dags/{dag_id}/history?limit=3")
        wait_for("the first page", lambda: shown(browser) == expected[:3])
        assert browser.find_element(By.ID, "range").text == "1\u20133 of 7"
        next_page = next(b for b in browser.find_elements(By.CSS_SELECTOR, ".pager button")
                         if "next" in b.text)
        next_page.click()
        wait_for("the second page", lambda: shown(browser) == expected[3:6])
        page = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => r.json()).then(done)",
            f"/orchest-jobs/api/v1/dags/{dag_id}/pipelineRuns?limit=3&offset=3")
        assert page["total_entries"] == 7 and len(page["pipeline_runs"]) == 3
        assert page["total_job_runs"] == 3


def test_ten_thousand_runs_are_paged_and_filtered_on_the_server(deployment, job_run):
    """A 10,000-entry run index (written as planning writes it): pages stay fast.

    Last in this file: its job run would show in the overview's screenshot."""
    dag_id, _ = job_run
    from airflow_orchest_jobs.core.layout import StoreLayout
    from airflow_orchest_jobs.core.plan import write_run_index

    big = deployment.trigger(dag_id, {"runs": [999]}, prefix="big")  # refused: 12 runs
    deployment.wait_finished(dag_id, big)
    write_run_index(StoreLayout(deployment.store_dir).job_run(dag_id, big), [
        {"index": i, "label": f"run {i} · a={i // 100}, b={i % 100}", "run_uuid": f"u{i}",
         "parameters": {"pipeline_parameters": {"a": i // 100},
                        project.COMPUTE: {"b": i % 100}}} for i in range(10_000)])
    admin = Client(deployment.base_url, USER, PASSWORD)
    data = admin.get(runs_path(dag_id, big), q="a=42", sort=B_COL, order="desc",
                     limit=20).json()
    assert data["total_runs"] == 10_000 and data["total_entries"] == 100
    assert [r["index"] for r in data["pipeline_runs"][:2]] == [4299, 4298]
    last = admin.get(runs_path(dag_id, big), offset=9_990, limit=50).json()
    assert [r["index"] for r in last["pipeline_runs"]][-1] == 9_999
