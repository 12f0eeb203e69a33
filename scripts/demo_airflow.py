#!/usr/bin/env python3
"""The demo's talks with its live Airflow (REST API, as a user would through the UI).

    demo_airflow.py health BASE_URL           wait until the API server answers
    demo_airflow.py run BASE_URL DAG_ID       log in, wait for the DAG, trigger it once on
                                              the scheduler, wait for the end; prints
                                              ``run_id=...`` and ``state=...``

The login comes from DEMO_USER / DEMO_PASSWORD. Progress goes to stderr, one line per
change, so a person watching ``scripts/demo`` sees the pipeline runs advance.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone

import requests

START_TIMEOUT = 180
PARSE_TIMEOUT = 180
RUN_TIMEOUT = 900


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def check_components() -> None:
    """Stop waiting when a component exited (DEMO_PIDS: ``name:pid`` lines)."""
    for entry in os.environ.get("DEMO_PIDS", "").split():
        name, _, pid = entry.partition(":")
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            sys.exit(f"demo: airflow {name} exited; see .demo/logs/{name}.log")


def wait(what: str, probe, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_components()
        try:
            found = probe()
        except requests.RequestException:
            found = None
        if found:
            return found
        time.sleep(interval)
    sys.exit(f"demo: timed out after {timeout:.0f}s waiting for {what} "
             "(see .demo/logs/*.log)")


def health(base_url: str) -> None:
    wait("the API server", lambda: requests.get(f"{base_url}/api/v2/monitor/health",
                                                timeout=5).ok, START_TIMEOUT, 1)


class Api:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token = ""

    def login(self) -> None:
        response = requests.post(f"{self.base_url}/auth/token", timeout=30, json={
            "username": os.environ["DEMO_USER"], "password": os.environ["DEMO_PASSWORD"]})
        response.raise_for_status()
        self.token = response.json()["access_token"]

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        if not self.token:
            self.login()
        for _ in range(2):
            response = requests.request(method, f"{self.base_url}/api/v2{path}", timeout=30,
                                        headers={"Authorization": f"Bearer {self.token}"},
                                        **kwargs)
            if response.status_code != 401:
                return response
            self.login()  # the token expired
        return response


def run(base_url: str, dag_id: str) -> None:
    api = Api(base_url)

    def parsed():
        response = api("GET", f"/dags/{dag_id}")
        return response.json() if response.ok else None

    say(f"waiting for the DAG processor to parse {dag_id}")
    dag = wait(f"the DAG {dag_id} (import errors: {base_url}/api/v2/importErrors)", parsed,
               PARSE_TIMEOUT)
    if dag["is_paused"]:
        api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    run_id = "demo__" + datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S")
    response = api("POST", f"/dags/{dag_id}/dagRuns",
                   json={"dag_run_id": run_id, "logical_date": None, "conf": {}})
    if not response.ok:
        sys.exit(f"demo: triggering {dag_id} failed: {response.status_code} {response.text}")
    say(f"triggered {dag_id} run {run_id} on the scheduler")
    last = None

    def finished():
        nonlocal last
        response = api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                       params={"limit": 100})
        if response.ok:
            states: dict[str, int] = {}
            for ti in response.json()["task_instances"]:
                state = ti["state"] or "waiting"
                states[state] = states.get(state, 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            if summary != last:
                say(f"task instances: {summary}")
                last = summary
        response = api("GET", f"/dags/{dag_id}/dagRuns",
                       params={"run_id_pattern": run_id, "limit": 10})
        response.raise_for_status()
        runs = [r for r in response.json()["dag_runs"] if r["dag_run_id"] == run_id]
        return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

    found = wait(f"DAG run {run_id}", finished, RUN_TIMEOUT, 3)
    print(f"run_id={run_id}")
    print(f"state={found['state']}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "health":
        health(argv[1])
    elif len(argv) == 3 and argv[0] == "run":
        run(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
