"""Benchmark several hosts: the CeleryExecutor deployment of ``scripts/cluster``, on 1 and
on 2 workers, ours against a plain DockerOperator DAG on the same deployment.

Run: ``.venv/bin/python bench/cluster.py`` (``--runs 200 --sleep 2`` by default; try
``--runs 20 --no-write`` first). Starts ``scripts/cluster up --workers 2`` in
``.cache/cluster-bench`` (stopped at the end unless ``--keep``). Takes 15 to 25 minutes.

Ours: a one-step ``.sh`` pipeline (``sleep SLEEP``) over a ``runs``-point grid, through the
real factory as a trigger-only job, its image frozen by registry digest (the cluster's
registry; a 4-run warm-up run creates the job first, so the measured runs reuse it).
Reference: a DAG file in the cluster's second DAG bundle (``.cluster/dags``):
``items`` (@task returning ``runs`` environments) -> ``DockerOperator.partial(...)
.expand(environment=...)`` with the same image and command, network none, each worker on
its own engine. Every DAG run is triggered through the REST API; its wall time is the DAG
run's start to end as Airflow records it (PostgreSQL). "1 worker" is the same deployment
with worker 2 stopped (Celery warm shutdown); "2 workers" with it started again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ENV_UUID, REPO, dump, git_head, table, write_section
from tests.deployment import api_seconds, parse_env
from tests.orchest_factory import pipeline_doc, step, write_environment
from tests.orchest_factory import write_project as write_orchest_project

ROOT = REPO / ".cache" / "cluster-bench"
CLUSTER = REPO / "scripts" / "cluster"
PLAIN_DAG = "bench_plain_docker"

PLAIN_FILE = '''\
"""bench/cluster.py's reference: plain DockerOperators, one per run (written by it)."""
import os
from datetime import datetime

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import DAG, task

RUNS, SLEEP, IMAGE = {runs}, {sleep}, {image!r}

with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         is_paused_upon_creation=False):
    @task
    def items():
        return [{{"ORCHEST_SESSION_UUID": f"run-{{i}}"}} for i in range(RUNS)]

    DockerOperator.partial(
        task_id="step", image=IMAGE, command=["bash", "-c", f"sleep {{SLEEP}}"],
        network_mode="none", docker_url=os.environ["AIRFLOW__ORCHEST_JOBS__DOCKER_URL"],
        auto_remove="force", mount_tmp_dir=False, do_xcom_push=False,
    ).expand(environment=items())
'''


def cluster(*args: str, timeout: float = 1800) -> str:
    result = subprocess.run([str(CLUSTER), *args], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ,
                                                  "ORCHEST_CLUSTER_DIR": str(ROOT)})
    if result.returncode:
        raise SystemExit(f"scripts/cluster {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


class Api:
    """The cluster's REST API, logged in as its admin."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = env["CLUSTER_API_URL"]
        self.password = env["CLUSTER_API_PASSWORD"]
        self.token = ""

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        for _ in range(2):
            if not self.token:
                response = requests.post(f"{self.base}/auth/token", timeout=30, json={
                    "username": "admin", "password": self.password})
                response.raise_for_status()
                self.token = response.json()["access_token"]
            response = requests.request(method, f"{self.base}/api/v2{path}", timeout=60,
                                        headers={"Authorization": f"Bearer {self.token}"},
                                        **kwargs)
            if response.status_code != 401:
                return response
            self.token = ""
        return response

    def wait_dag(self, dag_id: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call("GET", f"/dags/{dag_id}").status_code == 200:
                self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
                return
            time.sleep(2)
        raise SystemExit(f"{dag_id} was not parsed in {timeout:.0f}s")

    def run(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Trigger ``dag_id``, wait for it; its DAG run and task instances."""
        run_id = f"bench__{uuid.uuid4().hex[:8]}"
        response = self.call("POST", f"/dags/{dag_id}/dagRuns", json={
            "dag_run_id": run_id, "conf": conf or {}, "logical_date": None})
        response.raise_for_status()
        while True:
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                break
            time.sleep(2)
        tis, offset = [], 0
        while True:
            page = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                             params={"limit": 100, "offset": offset}).json()["task_instances"]
            tis += page
            offset += 100
            if len(page) < 100:
                break
        return {"run": run, "task_instances": tis}


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return api_seconds(start, end)


def summarize(result: dict[str, Any], steps: str) -> dict[str, Any]:
    run = result["run"]
    tis = [t for t in result["task_instances"] if t["task_id"].endswith(steps)]
    if run["state"] != "success" or any(t["state"] != "success" for t in tis):
        bad = sorted({t["state"] for t in result["task_instances"]})
        raise SystemExit(f"{run['dag_id']} {run['dag_run_id']}: {run['state']} ({bad})")
    hosts: dict[str, int] = {}
    for t in tis:
        hosts[t["hostname"]] = hosts.get(t["hostname"], 0) + 1
    return {"wall": _seconds(run["start_date"], run["end_date"]), "steps": len(tis),
            "median_step": statistics.median(t["duration"] for t in tis),
            "median_wait": statistics.median(_seconds(t["queued_when"], t["start_date"])
                                             for t in tis),
            "hosts": hosts}


def write_project(projects: Path, name: str, runs: int, sleep: float) -> str:
    """A one-step project whose step sleeps, over a ``runs``-run grid, and a job on it."""
    root = projects / name
    doc = pipeline_doc([step("sleep", "sleep.sh", environment=ENV_UUID)],
                       parameters={"n": 0}, uuid=f"{name}-pipeline", name="sleep")
    write_orchest_project(root, doc, files={"sleep.sh": f"sleep {sleep}\n"},
                          parameters={"pipeline_parameters": {"n": list(range(runs))}},
                          environment=False)
    write_environment(root, ENV_UUID, base_image="python")
    (root / "bench.job.json").write_text(json.dumps({"pipeline": "main.orchest",
                                                     "schedule": None}))
    return f"orchest_job__{name}__bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each step sleeps")
    parser.add_argument("--concurrency", type=int, default=4, help="task slots per worker")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"bench: scripts/cluster up --workers 2 in {ROOT}", flush=True)
    cluster("up", "--workers", "2", "--concurrency", str(args.concurrency))
    env = parse_env((ROOT / "env.sh").read_text())
    api = Api(env)
    try:
        name = f"bench-{uuid.uuid4().hex[:6]}"
        ours = write_project(Path(env["AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR"]), name,
                             args.runs, args.sleep)
        (ROOT / "dags" / f"{PLAIN_DAG}.py").write_text(PLAIN_FILE.format(
            runs=args.runs, sleep=args.sleep, image=env["CLUSTER_PYTHON_IMAGE"],
            dag_id=PLAIN_DAG))
        api.wait_dag(ours)
        api.wait_dag(PLAIN_DAG)
        print("bench: warm-up (creates the job: snapshot, images pushed to the registry)",
              flush=True)
        summarize(api.run(ours, {"runs": [0, 1, 2, 3]}), ".sleep")
        results: dict[str, dict[str, Any]] = {}
        for workers in (1, 2):
            if workers == 1:
                cluster("stop-worker", "2")
            else:
                cluster("start-worker", "2")
            for label, dag_id, steps in (("ours", ours, ".sleep"),
                                         ("plain", PLAIN_DAG, "step")):
                print(f"bench: {label}, {workers} worker(s), {args.runs} runs", flush=True)
                results[f"{label}-{workers}"] = summarize(api.run(dag_id), steps)
                print(f"bench:   {results[f'{label}-{workers}']}", flush=True)
    finally:
        if not args.keep:
            cluster("down")
    dump(ROOT.parent / "cluster-bench.json", results)
    text = report(args, results, time.monotonic() - started)
    print(text)
    if not args.no_write:
        write_section("Several hosts (CeleryExecutor cluster)", text)
    return 0


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]],
           elapsed: float) -> str:
    from importlib.metadata import version

    commit = git_head()
    rows = []
    for workers in (1, 2):
        o, p = results[f"ours-{workers}"], results[f"plain-{workers}"]
        rows.append([
            workers, f"{o['wall']:.0f} s", f"{p['wall']:.0f} s",
            f"{args.runs / o['wall']:.2f}", f"{args.runs / p['wall']:.2f}",
            f"{o['wall'] / p['wall']:.2f}x",
            f"{(o['wall'] - p['wall']) / args.runs:.3f} s",
            f"{o['median_step']:.2f} s / {p['median_step']:.2f} s",
            f"{o['median_wait']:.1f} s / {p['median_wait']:.1f} s",
            ", ".join(f"{h}: {n}" for h, n in sorted(o["hosts"].items()))])
    ours_ratio = results["ours-1"]["wall"] / results["ours-2"]["wall"]
    plain_ratio = results["plain-1"]["wall"] / results["plain-2"]["wall"]
    ideal = args.runs * args.sleep / args.concurrency
    return "\n".join([
        f"`.venv/bin/python bench/cluster.py --runs {args.runs} --sleep {args.sleep:g}` "
        f"({datetime.now().strftime('%Y-%m-%d %H:%M')} UTC; commit {commit}; "
        f"{os.cpu_count()} cores shared by every simulated host; Airflow "
        f"{version('apache-airflow')}, CeleryExecutor (celery provider "
        f"{version('apache-airflow-providers-celery')}), PostgreSQL 15, Redis; "
        f"{args.concurrency} task slots per worker; {elapsed / 60:.0f} min in all).",
        "",
        f"A one-step `.sh` pipeline (`sleep {args.sleep:g}`) over a {args.runs}-run grid, "
        "its image frozen by registry digest, triggered through the REST API, against a "
        "plain `DockerOperator.partial().expand()` DAG with the same image and command on "
        "the same deployment (second DAG bundle). Wall time: the DAG run's start to end in "
        "the metadata DB. 1 worker: worker 2 stopped; 2 workers: each on its own engine.",
        "",
        table(["workers", "ours", "plain", "ours runs/s", "plain runs/s", "ours / plain",
               "overhead per run (ours - plain)", "median step task (ours / plain)",
               "median queued -> start (ours / plain)", "ours: steps per worker"], rows),
        "",
        f"**Throughput, 2 workers / 1 worker: ours {ours_ratio:.2f}x, plain "
        f"{plain_ratio:.2f}x.** The ideal with {args.concurrency} slots per worker is "
        f"{ideal:.0f} s on 1 worker and {ideal / 2:.0f} s on 2 (2.0x): both simulated hosts "
        "share this machine's cores, so a second worker adds task slots but no CPU; every "
        "task instance's start-up (a forked task runner parsing the DAG file, the execution "
        "API, the container) competes for the same cores.",
    ])


if __name__ == "__main__":
    sys.exit(main())
