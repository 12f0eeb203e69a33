"""One real Airflow deployment per test session: API server, scheduler, DAG processor.

Airflow's own components run as subprocesses on 127.0.0.1 against a temporary
AIRFLOW_HOME (metadata in the session's PostgreSQL 15, ``tests/postgres.py``: on SQLite
the api-server's writes failed with "database is locked" beside the scheduler's;
LocalExecutor with parallelism 8, so steps run side by side), with
the repository's ``dags/`` folder reading ``projects_dir``. Tests add projects of their
own (unique names) and wait for the DAG processor to parse them (it re-parses the DAG
file every few seconds). Started once, on first use, and stopped at the end of the
session (a pytest plugin registered in ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "secretpw"
#: A second user with no role: no permission on any DAG (the job views' security tests).
OUTSIDER, OUTSIDER_PASSWORD = "outsider", "outsiderpw"
#: A third, a viewer denied the DAGs whose whole id matches DENIED_PATTERN by a per-DAG
#: auth manager (tests/auth_manager.py; tests/views/test_run_files_attacks.py).
RESTRICTED, RESTRICTED_PASSWORD = "restricted", "restrictedpw"
DENIED = "forbidden"
DENIED_PATTERN = rf"orchest__[a-z0-9]*{DENIED}[a-z0-9]*__[a-z0-9_]+"
AUTH_MANAGER = "tests.auth_manager.PerDagAuthManager"
#: The deployment's ``[core] max_map_length`` (Airflow's default is 1024).
MAX_MAP_LENGTH = 4
#: Bounds (seconds): components up, a DAG parsed, a DAG run finished.
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
    projects_dir: Path
    store_dir: Path
    data_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""

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

    def login(self) -> None:
        response = requests.post(f"{self.base_url}/auth/token",
                                 json={"username": USER, "password": PASSWORD}, timeout=30)
        assert response.status_code == 201, response.text
        self.token = str(response.json()["access_token"])

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One authenticated request to the REST API (``/api/v2`` + ``path``)."""
        if not self.token:
            self.login()
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = requests.request(method, f"{self.base_url}/api/v2{path}", headers=headers,
                                    timeout=30, **kwargs)
        if response.status_code == 401:  # the token expired: log in again, once
            self.login()
            headers["Authorization"] = f"Bearer {self.token}"
            response = requests.request(method, f"{self.base_url}/api/v2{path}",
                                        headers=headers, timeout=30, **kwargs)
        return response

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against this deployment."""
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = RUN_TIMEOUT,
             interval: float = 1.0) -> Any:
        """Poll ``probe()`` until it returns something truthy; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(requests.RequestException):
                result = probe()
                if result:
                    return result
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnostics()}")

    def start(self, migrate_timeout: float = 180, timeout: float = START_TIMEOUT) -> None:
        """``airflow db migrate``, then the components (``COMPONENTS``, output in
        ``home/<name>.log``) until the API server answers its health check."""
        migrate = self.airflow("db", "migrate", timeout=migrate_timeout)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        for name, args in COMPONENTS.items():
            with open(self.home / f"{name}.log", "wb") as out:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
        self.wait("the API server", lambda: requests.get(
            f"{self.base_url}/api/v2/monitor/health", timeout=5).ok, timeout)

    def wait_for_dag(self, dag_id: str, unpause: bool = True) -> dict[str, Any]:
        """The DAG as the API shows it once the DAG processor parsed it (unpaused)."""
        def parsed() -> dict[str, Any] | None:
            response = self.api("GET", f"/dags/{dag_id}")
            return response.json() if response.status_code == 200 else None

        dag = self.wait(f"the DAG processor to parse {dag_id}", parsed, PARSE_TIMEOUT, 0.5)
        if unpause and dag["is_paused"]:
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        return dag

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None,
                prefix: str = "test") -> str:
        """Trigger ``dag_id`` through the REST API; returns the run id."""
        run_id = f"{prefix}__{uuid.uuid4().hex[:8]}"
        response = self.api("POST", f"/dags/{dag_id}/dagRuns", json={
            "dag_run_id": run_id, "conf": dict(conf or {}), "logical_date": None})
        assert response.status_code == 200, f"{response.text}\n{self.diagnostics()}"
        return run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run, through the list endpoint: Airflow's ``GET .../dagRuns/{run_id}``
        loads every task instance of the run to list its DAG versions (with a 10,000-run
        grid, 10 s per call, and polled every 2 s the API server grew past 2 GB); the list
        endpoint asks the database for the distinct versions instead."""
        response = self.api("GET", f"/dags/{dag_id}/dagRuns",
                            params={"run_id_pattern": run_id, "limit": 100})
        response.raise_for_status()
        runs = [r for r in response.json()["dag_runs"] if r["dag_run_id"] == run_id]
        if not runs:
            raise AssertionError(f"no DAG run {run_id} of {dag_id}")
        return dict(runs[0])

    def wait_finished(self, dag_id: str, run_id: str,
                      timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The DAG run once it is success or failed."""
        def finished() -> dict[str, Any] | None:
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        return dict(self.wait(f"DAG run {run_id}", finished, timeout, 1))

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """``{"task_id[map_index]": task instance}`` of one DAG run."""
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            response = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                                params={"limit": 100, "offset": offset})
            response.raise_for_status()
            page = response.json()["task_instances"]
            out.update({f"{ti['task_id']}[{ti['map_index']}]": ti for ti in page})
            if len(page) < 100:
                return out
            offset += 100

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {key: str(ti["state"]) for key, ti in self.task_instances(dag_id, run_id).items()}

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int,
                 try_number: int = 1) -> str:
        """A task instance's log text as the API serves it (structured entries, joined)."""
        response = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/"
            f"{try_number}", params={"map_index": map_index, "full_content": "true"},
            headers={"Accept": "application/json"})
        assert response.status_code == 200, response.text
        content = response.json()["content"]
        return "\n".join(entry.get("event", "") if isinstance(entry, Mapping) else str(entry)
                         for entry in content)


def parse_env(text: str) -> dict[str, str]:
    """The ``export KEY=value`` lines of an env file (``.cluster/env.sh``), unquoted."""
    values = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            parts = shlex.split(value)
            values[key] = parts[0] if parts else ""
    return values


def api_time(text: str | None) -> datetime:
    """A date of Airflow's REST API (ISO 8601, ``Z`` for UTC; Python 3.11 reads both)."""
    assert text, "a task instance or DAG run without this date"
    return datetime.fromisoformat(text)


def api_seconds(start: str | None, end: str | None) -> float:
    """Seconds between two REST API dates."""
    return (api_time(end) - api_time(start)).total_seconds()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(home: Path, port: int, projects: Path, store: Path, data: Path,
                image: str, database: str) -> dict[str, str]:
    """The subprocesses' environment: no AIRFLOW__* from outside, only ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base_url = f"http://127.0.0.1:{port}"
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD, OUTSIDER: OUTSIDER_PASSWORD,
                                     RESTRICTED: RESTRICTED_PASSWORD}))
    # The repository last on the path: the components load tests/auth_manager.py.
    python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([*python_path, str(REPO)]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        # Small mapped groups: a 9-run grid already crosses two group boundaries
        # (tests/airflow/test_big_grid.py), so CI tests the multi-group path in seconds.
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(MAX_MAP_LENGTH),
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin,{OUTSIDER}:,"
                                                    f"{RESTRICTED}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Tests add projects while the deployment runs: re-parse the DAG file often (a
        # parse takes well under a second with the tests' projects).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR": str(projects),
        "AIRFLOW__ORCHEST_JOBS__STORE_DIR": str(store),
        "AIRFLOW__ORCHEST_JOBS__DATA_DIR": str(data),
        "AIRFLOW__ORCHEST_JOBS__NETWORK_MODE": "none",
        "AIRFLOW__ORCHEST_JOBS__ENVIRONMENT_IMAGES": json.dumps({"*": image}),
    })
    return env


def cpu_seconds(group: int) -> float:
    """CPU time of a process group: each live member's own and its reaped children's (a
    DAG processor's parse processes, a LocalExecutor worker's task processes)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:
                ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, idle) clock ticks of the whole machine so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values[:8]) - idle, idle


#: Lines for the test run's summary (tests/conftest.py prints them).
SUMMARY: list[str] = []


def report_cpu(deployment: Deployment, wall: float, ticks: tuple[int, int]) -> None:
    """Where the session's CPU went, for the summary: the end-to-end tier's time budget."""
    used = {}
    for name, proc in deployment.processes.items():
        with contextlib.suppress(OSError):
            used[name] = cpu_seconds(proc.pid)
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in used.items())
    busy, idle = (now - then for now, then in zip(machine_ticks(), ticks, strict=True))
    SUMMARY.append(f"session deployment: up {wall:.0f} s, machine busy "
                   f"{100 * busy / max(1, busy + idle):.0f}%; CPU seconds: {parts}")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
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


def cleanup_docker(store: Path, projects: Path | None = None) -> None:
    """Remove what the deployment's runs left on the engine: containers, frozen tags.

    Only this deployment's: containers that mount its store, and (services' network
    holders mount nothing) those whose job label names a DAG of its projects; other
    tests (pytest-xdist's other worker) may have theirs running on the shared engine."""
    import docker

    from airflow_orchest_jobs.core.jobstate import JobStates
    from airflow_orchest_jobs.core.labels import LABEL_JOB
    from airflow_orchest_jobs.engine.images import job_image_owner, release

    client = docker.from_env()
    mine = {path.name for path in projects.iterdir()} if projects and projects.is_dir() else set()
    # ignore_removed: containers of other tests on the shared engine may go meanwhile.
    for container in client.containers.list(all=True, filters={"label": "orchest-jobs.run-uuid"},
                                            ignore_removed=True):
        mounts = " ".join(m.get("Source", "") for m in container.attrs.get("Mounts", []))
        project = (container.labels.get(LABEL_JOB) or "").split("/")[0].split("__")[1:2]
        if str(store) in mounts or (not mounts and project and project[0] in mine):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
    for state in JobStates(store).all():
        release(client, job_image_owner(store, state.job_key))


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory, images: dict[str, str],
               postgres_server: PostgresServer) -> Iterator[Deployment]:
    """Airflow's API server, scheduler and DAG processor on 127.0.0.1, for the session."""
    home = tmp_path_factory.mktemp("airflow-deployment")
    # store and data are left for the plugin to create (it gives them to the step user).
    projects, store, data = home / "projects", home / "store", home / "data"
    projects.mkdir()
    port = free_port()
    deployment = Deployment(home=home, env=environment(home, port, projects, store, data,
                                                       images["python"],
                                                       postgres_server.database("airflow")),
                            base_url=f"http://127.0.0.1:{port}", projects_dir=projects,
                            store_dir=store, data_dir=data)
    try:
        deployment.start()
        started, ticks = time.monotonic(), machine_ticks()
        yield deployment
        report_cpu(deployment, time.monotonic() - started, ticks)
    finally:
        stop(list(deployment.processes.values()))
        cleanup_docker(store, projects)
