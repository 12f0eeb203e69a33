"""A real Airflow deployment end to end: API server, scheduler and DAG processor.

Airflow's own components run as subprocesses on 127.0.0.1 against a temporary
AIRFLOW_HOME (SQLite, LocalExecutor: the executor Airflow 3 accepts with SQLite), with
the repository's ``dags/`` folder and a copy of the example project
(``examples/projects/weather-report``, its job made trigger-only). The job DAG is
triggered twice, from the CLI (``airflow dags trigger -c``) and through the REST API
(SimpleAuthManager JWT, ``POST /api/v2/dags/{dag_id}/dagRuns``), each with its own conf;
both runs must succeed, a step's log is read back through the API, and each run's
published report must show its conf (city, seed, title).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "projects" / "weather-report"
GENERATE_STEP = "4ed239c8-150f-41b6-a502-e67a65dab474"
GENERATE_TASK = "pipeline_run.generate_readings"
PUBLISH_TASK = "pipeline_run.publish"
USER, PASSWORD = "admin", "secretpw"
#: Bounds (seconds): components up, DAG parsed, both DAG runs finished.
START_TIMEOUT = 120
PARSE_TIMEOUT = 120
RUN_TIMEOUT = 480
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
}


@dataclass
class Deployment:
    """A running Airflow: its home, environment, API address and component processes."""

    home: Path
    env: dict[str, str]
    base_url: str
    project: str
    data_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""
    run_ids: list[str] = field(default_factory=list)

    @property
    def dag_id(self) -> str:
        return f"orchest_job__{self.project}__nightly"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every component's output, for failure messages."""
        parts = []
        for name in self.processes:
            path = self.home / f"{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def diagnostics(self) -> str:
        """Import errors (as the API reports them) and the components' output."""
        errors = ""
        with contextlib.suppress(requests.RequestException, ValueError):
            found = self.api("GET", "/importErrors").json().get("import_errors", [])
            for error in found:
                trace = error.get("stack_trace") or error.get("stacktrace")
                errors += f"--- import error in {error['filename']} ---\n{trace}\n"
        return errors + self.log_tail()

    def check_alive(self) -> None:
        """Fail (with the component's output) when a component has exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                pytest.fail(f"airflow {name} exited with {proc.returncode}\n{self.log_tail()}")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One authenticated request to the REST API (``/api/v2`` + ``path``)."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base_url}/api/v2{path}", headers=headers,
                                timeout=30, **kwargs)

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against this deployment."""
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _environment(home: Path, port: int, projects: Path, store: Path, data: Path,
                 image: str) -> dict[str, str]:
    """The subprocesses' environment: no AIRFLOW__* from outside, only ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base_url = f"http://127.0.0.1:{port}"
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple."
                                       "simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR": str(projects),
        "AIRFLOW__ORCHEST_JOBS__STORE_DIR": str(store),
        "AIRFLOW__ORCHEST_JOBS__DATA_DIR": str(data),
        "AIRFLOW__ORCHEST_JOBS__NETWORK_MODE": "none",
        "AIRFLOW__ORCHEST_JOBS__ENVIRONMENT_IMAGES": json.dumps({"*": image}),
    })
    return env


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop components and everything they started (each is its own process group)."""
    running = [proc for proc in processes if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for proc in processes:  # what a component left behind in its group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _wait(what: str, deployment: Deployment, timeout: float, probe: Any,
          interval: float = 1.0) -> Any:
    """Poll ``probe()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.check_alive()
        with contextlib.suppress(requests.RequestException):
            result = probe()
            if result:
                return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n"
                f"{deployment.diagnostics()}")


def _cleanup_docker(dag_id: str, run_ids: list[str], store: Path) -> None:
    """Remove what the runs left on the engine: step containers, the job's frozen tags."""
    import docker

    from airflow_orchest_jobs.core.plan import run_uuid
    from airflow_orchest_jobs.images import job_image_owner, release

    client = docker.from_env()
    for run_id in run_ids:
        label = f"orchest-jobs.run-uuid={run_uuid(f'{dag_id}/{run_id}', 0)}"
        for container in client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
    release(client, job_image_owner(store, dag_id))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory,
               images: dict[str, str]) -> Iterator[Deployment]:
    """Airflow's API server, scheduler and DAG processor on 127.0.0.1, stopped at the end."""
    home = tmp_path_factory.mktemp("airflow-deployment")
    # store and data are left for the plugin to create (it gives them to the step user).
    projects, store, data = home / "projects", home / "store", home / "data"
    project = f"weather-{uuid.uuid4().hex[:6]}"  # unique: frozen image tags are per job id
    _copy_example(projects, project)
    _write_flaky(projects)
    port = _free_port()
    deployment = Deployment(home=home, env=_environment(home, port, projects, store, data,
                                                        images["python"]),
                            base_url=f"http://127.0.0.1:{port}", project=project,
                            data_dir=data)
    migrate = deployment.airflow("db", "migrate", timeout=180)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    try:
        for name, args in COMPONENTS.items():
            with open(home / f"{name}.log", "wb") as out:
                deployment.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args], env=deployment.env, cwd=home,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
        _wait("the API server", deployment, START_TIMEOUT, lambda: requests.get(
            f"{deployment.base_url}/api/v2/monitor/health", timeout=5).ok)
        yield deployment
    finally:
        _stop(list(deployment.processes.values()))
        _cleanup_docker(deployment.dag_id, deployment.run_ids, home / "store")


def _token(deployment: Deployment) -> str:
    response = requests.post(f"{deployment.base_url}/auth/token",
                             json={"username": USER, "password": PASSWORD}, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


def _run_state(deployment: Deployment, run_id: str) -> str | None:
    response = deployment.api("GET", f"/dags/{deployment.dag_id}/dagRuns/{run_id}")
    response.raise_for_status()
    state = response.json()["state"]
    return state if state in ("success", "failed") else None


def _task_states(deployment: Deployment, run_id: str) -> dict[str, str]:
    response = deployment.api("GET", f"/dags/{deployment.dag_id}/dagRuns/{run_id}"
                              "/taskInstances", params={"limit": 100})
    response.raise_for_status()
    return {f"{ti['task_id']}[{ti['map_index']}]": str(ti["state"])
            for ti in response.json()["task_instances"]}


def _task_log(deployment: Deployment, run_id: str, task_id: str, map_index: int) -> str:
    """A task instance's log text as the API serves it (structured entries, joined)."""
    response = deployment.api(
        "GET", f"/dags/{deployment.dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        params={"map_index": map_index, "full_content": "true"},
        headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    content = response.json()["content"]
    return "\n".join(entry.get("event", "") if isinstance(entry, Mapping) else str(entry)
                     for entry in content)


def _reports(data_dir: Path) -> list[str]:
    return sorted(p.read_text() for p in (data_dir / "weather-report").glob("*.md"))


def test_scheduler_runs_the_job_triggered_from_cli_and_rest_api(deployment: Deployment) -> None:
    dag_id = deployment.dag_id
    deployment.token = _token(deployment)

    def parsed() -> dict[str, Any] | None:
        response = deployment.api("GET", f"/dags/{dag_id}")
        return response.json() if response.status_code == 200 else None

    dag = _wait(f"the DAG processor to parse {dag_id}", deployment, PARSE_TIMEOUT, parsed, 2)
    if dag["is_paused"]:
        response = deployment.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        assert response.status_code == 200, response.text
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
    api_run = f"api__{uuid.uuid4().hex[:8]}"
    api_conf = {"parameters": {"pipeline_parameters": {"city": ["Reykjavik"]},
                               GENERATE_STEP: {"seed": [7]}},
                "env_variables": {"REPORT_TITLE": "Triggered through the REST API"}}
    response = deployment.api("POST", f"/dags/{dag_id}/dagRuns",
                              json={"dag_run_id": api_run, "logical_date": None,
                                    "conf": api_conf})
    assert response.status_code == 200, f"{response.text}\n{deployment.diagnostics()}"
    assert response.json()["conf"] == api_conf
    deployment.run_ids += [cli_run, api_run]

    for run_id in (cli_run, api_run):
        state = _wait(f"DAG run {run_id}", deployment, RUN_TIMEOUT,
                      lambda run_id=run_id: _run_state(deployment, run_id), 3)
        assert state == "success", \
            f"{run_id}: {_task_states(deployment, run_id)}\n{deployment.diagnostics()}"
        states = _task_states(deployment, run_id)
        assert states[f"{GENERATE_TASK}[0]"] == "success", states
        assert f"{GENERATE_TASK}[1]" not in states, states  # one pipeline run each

    # The step's own output, read back through the API.
    cli_log = _task_log(deployment, cli_run, GENERATE_TASK, 0)
    assert "Generated 12 readings for Oslo over 3 day(s) (seed 5)." in cli_log, cli_log[-3000:]
    api_log = _task_log(deployment, api_run, GENERATE_TASK, 0)
    assert "Generated 12 readings for Reykjavik over 3 day(s) (seed 7)." in api_log, \
        api_log[-3000:]
    assert "publish: wrote /data/weather-report/" in _task_log(deployment, api_run,
                                                               PUBLISH_TASK, 0)

    # Each run published its own report to /data, with its conf's title and city.
    reports = _reports(deployment.data_dir)
    assert len(reports) == 2, reports
    by_title = {r.splitlines()[0]: r for r in reports}
    assert set(by_title) == {"# Triggered from the CLI", "# Triggered through the REST API"}
    assert "## Oslo: 3 day(s), seed 5" in by_title["# Triggered from the CLI"]
    assert "## Reykjavik: 3 day(s), seed 7" in by_title["# Triggered through the REST API"]


def _trigger_flaky(deployment: Deployment, prefix: str,
                   conf: dict[str, Any] | None = None) -> tuple[str, str]:
    """Trigger the flaky pipeline's DAG through the API; returns (its API path, run id)."""
    deployment.token = _token(deployment)
    base = f"/dags/{FLAKY_DAG}"
    _wait(f"the DAG processor to parse {FLAKY_DAG}", deployment, PARSE_TIMEOUT,
          lambda: deployment.api("GET", base).status_code == 200, 2)
    deployment.api("PATCH", base, json={"is_paused": False}).raise_for_status()
    run_id = f"{prefix}__{uuid.uuid4().hex[:8]}"
    deployment.api("POST", f"{base}/dagRuns", json={
        "dag_run_id": run_id, "conf": conf or {}, "logical_date": None}).raise_for_status()
    return base, run_id


def test_clearing_one_failed_pipeline_run_reruns_it_alone(deployment: Deployment) -> None:
    """Clear the failed map index: that run re-runs in the same snapshot; the other not."""
    base, run_id = _trigger_flaky(deployment, "flaky")

    def finished() -> dict[str, Any] | None:
        run = deployment.api("GET", f"{base}/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    def tries() -> dict[str, tuple[str, int]]:
        response = deployment.api("GET", f"{base}/dagRuns/{run_id}/taskInstances",
                                  params={"limit": 100})
        return {f"{ti['task_id']}[{ti['map_index']}]": (ti["state"], ti["try_number"])
                for ti in response.json()["task_instances"]}

    assert _wait(f"DAG run {run_id}", deployment, RUN_TIMEOUT, finished, 3)["state"] == \
        "failed", deployment.diagnostics()
    before = tries()
    assert before["pipeline_run.work[0]"] == ("success", 1), before
    assert before["pipeline_run.work[1]"][0] == "failed", before
    snapshots = sorted((deployment.home / "store" / "snapshots" / "manifests").glob("*"))

    (deployment.data_dir / "allow").write_text("yes")
    response = deployment.api("POST", f"/dags/{FLAKY_DAG}/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": run_id, "only_failed": True,
        "task_ids": [["pipeline_run.work", 1]], "include_downstream": True})
    assert response.status_code == 200, response.text

    def succeeded() -> dict[str, Any] | None:
        run = finished()
        return run if run and tries()["pipeline_run.work[1]"][1] > 1 else None

    assert _wait("the cleared run", deployment, RUN_TIMEOUT, succeeded, 3)["state"] == \
        "success", f"{tries()}\n{deployment.diagnostics()}"
    after = tries()
    assert after["pipeline_run.work[0]"] == ("success", 1), after  # not run again
    assert after["pipeline_run.work[1]"][0] == "success", after
    # the same snapshot: clearing made no new one
    assert sorted((deployment.home / "store" / "snapshots" / "manifests").glob("*")) == \
        snapshots


def test_marking_a_running_dag_run_failed_removes_its_containers(
        deployment: Deployment, docker_client) -> None:
    """Orchest's cancel: nothing keeps running once the user marks the run failed."""
    base, run_id = _trigger_flaky(deployment, "cancel",
                                  {"parameters": {"pipeline_parameters": {"n": [2]}}})

    def step_containers():
        return docker_client.containers.list(
            filters={"label": "orchest-jobs.pipeline-uuid=flaky-pipeline"})

    def sleeping() -> bool:
        return any("sleeping" in c.logs().decode() for c in step_containers())

    _wait("the slow step to start", deployment, RUN_TIMEOUT, sleeping, 1)
    response = deployment.api("PATCH", f"{base}/dagRuns/{run_id}", json={"state": "failed"})
    assert response.status_code == 200, response.text
    _wait("the step container to be stopped and removed", deployment, 90,
          lambda: not docker_client.containers.list(
              all=True, filters={"label": "orchest-jobs.pipeline-uuid=flaky-pipeline"})
          or None, 1)
    assert deployment.api("GET", f"{base}/dagRuns/{run_id}").json()["state"] == "failed"
