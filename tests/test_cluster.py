"""Several Docker hosts: the CeleryExecutor deployment of ``scripts/cluster up --workers 2``.

PostgreSQL, Redis, a registry, Airflow's api-server, scheduler, dag-processor and
triggerer, and two Celery workers, each with a Docker engine of its own (a simulated
host), all on 127.0.0.1; the shared store and data folder have the same path for both.
Started once for this module (in ``.cache/cluster-test``), stopped at its end.

* a job of a 3-step pipeline passing data with ``orchest.output``/``get_inputs`` over an
  8-run grid, triggered through the REST API, succeeds; both engines ran step containers
  (seen in their own event streams), runs whose steps ran on different hosts got their
  inputs, the images were pinned by registry digest, the state is in PostgreSQL;
* a worker SIGKILLed mid-step: its steps are retried on the other worker after the
  heartbeat timeout, the retry removes the lost try's still-running container first (no
  step runs twice at once), the job succeeds, and the restarted worker's engine is empty;
* PostgreSQL restarted mid-run, while every run's middle step runs: the job succeeds;
* the registry down at job creation: one clear error, no job state written; the next run
  (registry back) creates the job.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.deployment import Deployment, parse_env
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "scripts" / "cluster"
ROOT = REPO / ".cache" / "cluster-test"
#: Enough runs that both workers' slots (4 each) fill and runs' steps land on different
#: hosts; volume is bench/cluster.py's job (200 runs), not this test's.
GRID_RUNS = 8
#: Seconds the first try of a fault test's middle step sleeps: longer than the heartbeat
#: timeout plus the retry delay, so the retry meets the lost try's container still running.
LOST_STEP_SLEEP = 50
#: Seconds the middle step of the PostgreSQL test sleeps: the restart happens inside them,
#: while steps run. (Restarted while the scheduler hands a task to Celery, the task can stay
#: queued until [scheduler] task_queued_timeout, 10 minutes: that is Airflow's, not a step's.)
RESTART_STEP_SLEEP = 15

PRODUCE = """\
import orchest
n = orchest.get_pipeline_param("n")
orchest.output({"n": n, "twice": 2 * n}, name="produced")
"""
TRANSFORM = """\
import os, time, orchest
n = orchest.get_pipeline_param("n")
data = orchest.get_inputs()["produced"]
assert data["n"] == n, data
marker = os.environ.get("FIRST_TRY_MARKER")
if marker:  # the fault tests: the first try of this step outlives a lost worker
    path = f"/data/{marker}-{n}"
    first = not os.path.exists(path)
    open(path, "a").write("x")
    if first:
        time.sleep(int(os.environ["FIRST_TRY_SLEEP"]))
orchest.output(data["twice"] + 1, name="transformed")
"""
CONSUME = """\
import json, os, orchest
n = orchest.get_pipeline_param("n")
inputs = orchest.get_inputs()
assert inputs["transformed"] == 2 * n + 1, inputs
folder = "/data/" + os.environ["RESULTS"]
os.makedirs(folder, exist_ok=True)
with open(f"{folder}/{n}.json", "w") as out:
    json.dump({"n": n, "value": inputs["transformed"]}, out)
"""
STEPS = ("produce", "transform", "consume")


@dataclass
class Cluster:
    """The running cluster: its env.sh values, an API client, its engines."""

    env: dict[str, str]
    api: Deployment
    engines: dict[str, str] = field(default_factory=dict)  #: worker name -> engine URL

    def cli(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(CLUSTER), *args], capture_output=True, text=True,
                                timeout=timeout, env={**os.environ,
                                                      "ORCHEST_CLUSTER_DIR": str(ROOT)})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    def docker(self, worker: str, *args: str) -> str:
        return subprocess.run(["docker", "-H", self.engines[worker], *args], check=True,
                              capture_output=True, text=True, timeout=60).stdout

    def step_containers(self, worker: str, *filters: str) -> list[str]:
        args = ["ps", "-aq", "--filter", "label=orchest-jobs.run-uuid"]
        for extra in filters:
            args += ["--filter", extra]
        return self.docker(worker, *args).split()

    def sql(self, query: str) -> list[list[str]]:
        """Rows of ``query`` on the metadata database (PostgreSQL, through psql)."""
        out = subprocess.run([*shlex.split(self.env["CLUSTER_PSQL"]), "-tA", "-F", "\t",
                              "-c", query], check=True, capture_output=True, text=True,
                             env={**os.environ, "PGPASSWORD": self.env["PGPASSWORD"]},
                             timeout=60).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    @property
    def shared(self) -> Path:
        return Path(self.env["AIRFLOW__ORCHEST_JOBS__STORE_DIR"]).parent

    @property
    def data_dir(self) -> Path:
        return Path(self.env["AIRFLOW__ORCHEST_JOBS__DATA_DIR"])


class ClusterAPI(Deployment):
    """``tests.deployment.Deployment``'s REST helpers, logged in as the cluster's admin."""

    password: str = ""

    def login(self) -> None:
        response = requests.post(f"{self.base_url}/auth/token", timeout=30,
                                 json={"username": "admin", "password": self.password})
        assert response.status_code == 201, response.text
        self.token = str(response.json()["access_token"])

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted((ROOT / "logs").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.stem} ---\n" + "\n".join(text))
        return "\n".join(parts)


class Events:
    """``docker events`` of one engine's step containers, collected while it runs."""

    def __init__(self, engine: str) -> None:
        self.items: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            ["docker", "-H", engine, "events", "--format", "{{json .}}", "--filter",
             "type=container", "--filter", "label=orchest-jobs.run-uuid"],
            stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.items.append(json.loads(line))

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(1)  # the last events in flight
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)
        return self.items


def intervals(events: list[dict[str, Any]]) -> dict[str, tuple[str, str, float, float]]:
    """container id -> (run uuid, step uuid, started, died) from an engine's events."""
    found: dict[str, list[Any]] = {}
    for event in events:
        attrs = event["Actor"]["Attributes"]
        entry = found.setdefault(event["Actor"]["ID"], [
            attrs.get("orchest-jobs.run-uuid"), attrs.get("orchest-jobs.step-uuid"),
            None, None])
        at = event["timeNano"] / 1e9
        if event["Action"] == "start":
            entry[2] = at
        elif event["Action"] == "die" and entry[3] is None:
            entry[3] = at
    return {cid: (e[0], e[1], e[2], e[3] if e[3] is not None else float("inf"))
            for cid, e in found.items() if e[2] is not None}


def write_job(projects: Path, name: str, runs: int, env: dict[str, str]) -> str:
    """A 3-step data-passing pipeline over an ``n`` grid and a trigger-only job; its DAG id."""
    doc = pipeline_doc([
        step("produce", "produce.py", title="produce"),
        step("transform", "transform.py", title="transform", incoming=["produce"]),
        step("consume", "consume.py", title="consume", incoming=["transform"]),
    ], parameters={"n": 0}, uuid=f"{name}-pipeline")
    root = projects / name
    write_project(root, doc, files={"produce.py": PRODUCE, "transform.py": TRANSFORM,
                                    "consume.py": CONSUME},
                  parameters={"pipeline_parameters": {"n": list(range(runs))}})
    (root / "grid.job.json").write_text(json.dumps({
        "pipeline": "main.orchest", "schedule": None,
        "env_variables": {"RESULTS": name, **env}}))
    return f"orchest_job__{name}__grid"


JOBS = {"grid": GRID_RUNS, "lost": 4, "pgrestart": 4, "regdown": 2}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, dict[str, str]]]:
    """``scripts/cluster up --workers 2`` in .cache/cluster-test (down at the end), with
    the four jobs of this module written at once (one parse for all)."""
    shared = ROOT / "shared"
    if (ROOT / "state.json").exists():  # a previous session's leftovers: stop, clear
        subprocess.run([str(CLUSTER), "down"], env={**os.environ,
                                                    "ORCHEST_CLUSTER_DIR": str(ROOT)},
                       capture_output=True, timeout=300, check=False)
    shutil.rmtree(shared, ignore_errors=True)
    result = subprocess.run([str(CLUSTER), "up", "--workers", "2"], capture_output=True,
                            text=True, timeout=1200,
                            env={**os.environ, "ORCHEST_CLUSTER_DIR": str(ROOT)})
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        env = parse_env((ROOT / "env.sh").read_text())
        api = ClusterAPI(home=Path(env["AIRFLOW_HOME"]), env=env,
                         base_url=env["CLUSTER_API_URL"],
                         projects_dir=Path(env["AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR"]),
                         store_dir=Path(env["AIRFLOW__ORCHEST_JOBS__STORE_DIR"]),
                         data_dir=Path(env["AIRFLOW__ORCHEST_JOBS__DATA_DIR"]))
        api.password = env["CLUSTER_API_PASSWORD"]
        engines = {f"worker-{k}": env[f"CLUSTER_WORKER_{k}_DOCKER_HOST"]
                   for k in range(1, int(env["CLUSTER_WORKERS"]) + 1)}
        tag = uuid.uuid4().hex[:6]
        extra = {"lost": {"FIRST_TRY_MARKER": f"lost-{tag}",
                          "FIRST_TRY_SLEEP": str(LOST_STEP_SLEEP)},
                 "pgrestart": {"FIRST_TRY_MARKER": f"pg-{tag}",
                               "FIRST_TRY_SLEEP": str(RESTART_STEP_SLEEP)}}
        dags = {key: write_job(api.projects_dir, f"{key}-{tag}", runs, extra.get(key, {}))
                for key, runs in JOBS.items()}
        yield Cluster(env=env, api=api, engines=engines), dags
    finally:
        subprocess.run([str(CLUSTER), "down"], capture_output=True, timeout=300,
                       env={**os.environ, "ORCHEST_CLUSTER_DIR": str(ROOT)}, check=False)


def _results(cluster: Cluster, dag_id: str) -> dict[int, int]:
    folder = cluster.data_dir / dag_id.split("__")[1]
    return {int(p.stem): json.loads(p.read_text())["value"] for p in folder.glob("*.json")}


def _step_hosts(cluster: Cluster, dag_id: str, run_id: str) -> dict[int, dict[str, str]]:
    """map index -> {step: hostname of its last try}."""
    hosts: dict[int, dict[str, str]] = {}
    for ti in cluster.api.task_instances(dag_id, run_id).values():
        name = ti["task_id"].rpartition(".")[2]
        if name in STEPS:
            hosts.setdefault(ti["map_index"], {})[name] = ti["hostname"]
    return hosts


def _task_errors(cluster: Cluster, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The exception messages of every try of a task, from its logs (REST API)."""
    messages = []
    for try_number in range(1, 4):
        response = cluster.api.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "application/json"})
        if response.status_code != 200:
            break
        for entry in response.json()["content"]:
            for detail in entry.get("error_detail") or [] if isinstance(entry, dict) else []:
                messages.append(str(detail.get("exc_value")))
    return messages


def test_grid_job_on_two_hosts(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, dags = cluster
    dag_id = dags["grid"]
    c.api.wait_for_dag(dag_id)
    watchers = {worker: Events(engine) for worker, engine in c.engines.items()}
    started = time.monotonic()
    run_id = c.api.trigger(dag_id, prefix="grid")
    run = c.api.wait_finished(dag_id, run_id, timeout=900)
    elapsed = time.monotonic() - started
    events = {worker: w.stop() for worker, w in watchers.items()}
    assert run["state"] == "success", c.api.diagnostics()
    assert _results(c, dag_id) == {n: 2 * n + 1 for n in range(GRID_RUNS)}
    # Both engines ran step containers (their own event streams say so), both workers ran
    # steps, and runs whose steps ran on different hosts got their inputs all the same.
    for worker, found in events.items():
        starts = [e for e in found if e["Action"] == "start"]
        assert starts, f"no step container started on {worker}'s engine"
    hosts = _step_hosts(c, dag_id, run_id)
    assert len(hosts) == GRID_RUNS
    assert {h for steps in hosts.values() for h in steps.values()} == set(c.engines)
    mixed = [n for n, steps in hosts.items() if len(set(steps.values())) > 1]
    assert mixed, "no run had its steps on different hosts"
    total_starts = sum(1 for found in events.values() for e in found if e["Action"] == "start")
    tries = sum(ti["try_number"] for ti in c.api.task_instances(dag_id, run_id).values()
                if ti["task_id"].rpartition(".")[2] in STEPS)
    assert total_starts == tries >= 3 * GRID_RUNS  # one container per try, none twice
    # Images pinned by registry digest; the engine that did not freeze pulled it.
    state = json.loads((c.api.store_dir / "jobs" / f"{dag_id}.json").read_text())
    images = set(state["images"].values())
    registry = c.env["CLUSTER_REGISTRY"]
    assert all(ref.startswith(f"{registry}/orchest-frozen/") and "@sha256:" in ref
               for ref in images), images
    for worker in c.engines:
        for ref in images:
            c.docker(worker, "image", "inspect", ref)
    # The job's run is in PostgreSQL: its DAG run and every task instance.
    rows = c.sql(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")
    assert rows == [["success"]]
    counts = dict(c.sql(f"SELECT state, count(*) FROM task_instance WHERE dag_id = '{dag_id}' "
                        f"AND run_id = '{run_id}' GROUP BY state"))
    assert counts == {"success": str(3 * GRID_RUNS + 3)}, counts
    print(f"\n{GRID_RUNS}-run grid, 3 steps, 2 workers: {elapsed:.0f}s "
          f"({3 * GRID_RUNS / elapsed:.2f} steps/s); runs across hosts: {len(mixed)}")


def test_worker_killed_mid_step(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, dags = cluster
    dag_id = dags["lost"]
    c.api.wait_for_dag(dag_id)
    watchers = {worker: Events(engine) for worker, engine in c.engines.items()}
    run_id = c.api.trigger(dag_id, prefix="lost")

    def busiest() -> str | None:
        """The worker running the most first tries of ``transform`` once all 4 started."""
        running = {w: c.step_containers(w, "label=orchest-jobs.step-uuid=transform",
                                        "status=running") for w in c.engines}
        if sum(len(ids) for ids in running.values()) < JOBS["lost"]:
            return None
        return max(running, key=lambda w: len(running[w]))

    victim = c.api.wait("every run's transform step to run", busiest, timeout=300, interval=0.5)
    k = victim.rpartition("-")[2]
    lost = c.step_containers(victim, "status=running")
    labels = json.loads(c.docker(victim, "inspect", "--format", "{{json .Config.Labels}}",
                                 lost[0]))
    assert labels["orchest-jobs.worker"] == f"celery@{victim}"
    c.cli("kill-worker", k)
    run = c.api.wait_finished(dag_id, run_id, timeout=600)
    events = {worker: w.stop() for worker, w in watchers.items()}
    assert run["state"] == "success", c.api.diagnostics()
    assert _results(c, dag_id) == {n: 2 * n + 1 for n in range(JOBS["lost"])}
    # The lost tries were retried; their containers were removed by the retries (they
    # died long before their sleep ended) and no step of a run ever ran twice at once.
    tis = c.api.task_instances(dag_id, run_id)
    retried = [t for t in tis.values() if t["task_id"].endswith("transform")
               and t["try_number"] > 1]
    assert len(retried) >= len(lost), tis
    spans = {cid: span for found in events.values() for cid, span in intervals(found).items()}
    for cid in lost:
        match = next(span for full, span in spans.items() if full.startswith(cid))
        assert match[3] - match[2] < LOST_STEP_SLEEP - 5, "the lost try ran to its end"
    by_step: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run_uuid, step_uuid, start, died in spans.values():
        by_step.setdefault((run_uuid, step_uuid), []).append((start, died))
    for key, spans_of_step in by_step.items():
        spans_of_step.sort()
        for (_, died), (start, _) in itertools.pairwise(spans_of_step):
            assert died <= start, f"step {key} ran twice at once: {spans_of_step}"
    assert not c.step_containers(victim), "the lost worker's containers are still there"
    # The worker comes back: its engine holds nothing of this plugin, and it said so.
    c.cli("start-worker", k)
    assert not c.step_containers(victim)
    log = (ROOT / "logs" / f"{victim}.log").read_text(errors="replace")
    assert f"worker celery@{victim} " in log.rsplit("====", 1)[1]


def test_postgres_restarted_mid_run(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, dags = cluster
    dag_id = dags["pgrestart"]
    c.api.wait_for_dag(dag_id)
    run_id = c.api.trigger(dag_id, prefix="pg")

    def transforms_running() -> bool:
        return sum(len(c.step_containers(w, "label=orchest-jobs.step-uuid=transform",
                                         f"label=orchest-jobs.job={dag_id}/{run_id}",
                                         "status=running"))
                   for w in c.engines) == JOBS["pgrestart"]

    c.api.wait("every run's transform step to run", transforms_running, timeout=300,
               interval=0.5)
    marks = {path.name: path.stat().st_size for path in (ROOT / "logs").glob("*.log")}
    c.cli("restart", "postgres")
    run = c.api.wait_finished(dag_id, run_id, timeout=600)
    assert run["state"] == "success", c.api.diagnostics()
    assert _results(c, dag_id) == {n: 2 * n + 1 for n in range(JOBS["pgrestart"])}
    restarted = []  # components that exited on losing the database (then restarted)
    for path in (ROOT / "logs").glob("*.log"):
        with open(path, "rb") as handle:
            handle.seek(marks.get(path.name, 0))
            if b"restarting in 2 s" in handle.read():
                restarted.append(path.stem)
    print(f"\nPostgreSQL restart: components restarted by the supervisor: {restarted}")


def test_registry_down_at_job_creation(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, dags = cluster
    dag_id = dags["regdown"]
    c.api.wait_for_dag(dag_id)
    state_file = c.api.store_dir / "jobs" / f"{dag_id}.json"
    c.cli("stop", "registry")
    try:
        first = c.api.trigger(dag_id, prefix="regdown")
        run = c.api.wait_finished(dag_id, first, timeout=300)
    finally:
        c.cli("start", "registry")
    assert run["state"] == "failed"
    states = c.api.task_states(dag_id, first)
    assert states["snapshot[-1]"] == "failed", states
    registry = c.env["CLUSTER_REGISTRY"]
    errors = _task_errors(c, dag_id, first, "snapshot")
    assert len(errors) == 1, errors  # one error, one problem, no retry
    assert f"registry {registry}: not reachable" in errors[0], errors
    assert "the next run creates the job" in errors[0]
    assert not state_file.exists(), "a half-frozen job was written"
    project = dag_id.split("__")[1]
    assert not [repo for w in c.engines
                for repo in c.docker(w, "images", "--format", "{{.Repository}}").split()
                if "orchest-frozen/" in repo and project in repo], "half-frozen images"
    second = c.api.trigger(dag_id, prefix="regup")
    assert c.api.wait_finished(dag_id, second, timeout=300)["state"] == "success", \
        c.api.diagnostics()
    images = json.loads(state_file.read_text())["images"].values()
    assert all(ref.startswith(f"{registry}/orchest-frozen/") for ref in images), images
