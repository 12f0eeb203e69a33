"""Job state: one frozen job per key, even when two workers create it at the same time."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.jobstate import FrozenJob, JobStates


def _create_job(store: str, project: str, calls: str, out: str) -> None:
    from airflow_orchest_jobs.core.snapshot.store import SnapshotStore

    def create() -> FrozenJob:
        with open(calls, "a") as fh:
            fh.write("created\n")
        time.sleep(0.5)  # both workers are inside get_or_create at once
        snapshot = SnapshotStore(Path(store) / "snapshots").create(Path(project))
        return FrozenJob("orchest_job__p__nightly", snapshot.id, {}, "main.orchest", "now")

    state, created = JobStates(Path(store)).get_or_create("orchest_job__p__nightly", create)
    Path(out).write_text(json.dumps([state.snapshot_id, created]))


def test_two_workers_starting_one_per_job_job_make_one_snapshot(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "main.py").write_text("print(1)\n")
    calls = tmp_path / "calls.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_create_job, args=(str(tmp_path / "store"), str(project),
                                                   str(calls), str(tmp_path / f"out{i}")))
             for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    results = [json.loads((tmp_path / f"out{i}").read_text()) for i in range(2)]
    assert results[0][0] == results[1][0]
    assert sorted(created for _, created in results) == [False, True]
    assert calls.read_text() == "created\n"
    assert len(list((tmp_path / "store" / "snapshots" / "manifests").glob("*"))) == 1


def test_unreadable_state_is_a_clear_error(tmp_path):
    states = JobStates(tmp_path)
    states.put(FrozenJob("k", "s", {}, "main.orchest", "now"))
    path = next((tmp_path / "jobs").glob("*.json"))
    path.chmod(0o644)
    path.write_text("{")
    with pytest.raises(OrchestError, match=r"job state cannot be read.*delete the file"):
        states.get("k")
