"""Retention on a store folder: only finished runs go, oldest first; the CLI shows and cleans."""

from __future__ import annotations

import json

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.jobstate import FrozenJob, JobStates
from airflow_orchest_jobs.core.retention import apply_retention, mark_finished, pipeline_runs


def _runs(store, dag_id, dag_run, count, finished_at=None):
    root = store / "runs" / dag_id / dag_run
    for i in range(count):
        (root / f"run-{i:05d}" / "project").mkdir(parents=True)
        (root / f"run-{i:05d}" / "project" / "out.txt").write_text("x" * 100)
    if finished_at is not None:
        mark_finished(root)
        (root / ".finished").write_text(f"{finished_at}\n")
    return root


def test_keeps_newest_finished_and_never_touches_running(tmp_path):
    _runs(tmp_path, "d", "b_old", 2, finished_at=100)
    _runs(tmp_path, "d", "a_new", 2, finished_at=200)
    _runs(tmp_path, "d", "c_running", 2)
    report = apply_retention(tmp_path, "d", 1)
    left = [(r.dag_run, r.index) for r in pipeline_runs(tmp_path, "d")]
    assert left == [("a_new", 1), ("c_running", 0), ("c_running", 1)]
    assert len(report.deleted_runs) == 3 and report.freed_bytes == 300
    assert not (tmp_path / "runs" / "d" / "b_old").exists()


def test_none_keeps_everything(tmp_path):
    _runs(tmp_path, "d", "r", 3, finished_at=1)
    assert apply_retention(tmp_path, "d", None).deleted_runs == []
    assert len(pipeline_runs(tmp_path, "d")) == 3


def test_released_one_off_jobs_are_reported(tmp_path):
    _runs(tmp_path, "d", "manual__1", 1, finished_at=1)
    _runs(tmp_path, "d", "manual__2", 1, finished_at=2)
    states = JobStates(tmp_path)
    for run in ("manual__1", "manual__2"):
        states.put(FrozenJob(f"d/{run}", f"snap-{run}", {}, "main.orchest", "now"))
    report = apply_retention(tmp_path, "d", 1)
    assert report.released_jobs == {"d/manual__1": "snap-manual__1"}
    assert [s.job_key for s in states.all()] == ["d/manual__2"]


def test_jobs_cli(tmp_path, capsys):
    _runs(tmp_path, "d", "r1", 2, finished_at=1)
    JobStates(tmp_path).put(FrozenJob("d", "snap", {"env": "sha256:1"}, "main.orchest", "t"))
    assert main(["jobs", "show", "--store", str(tmp_path)]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["dag_id"] == "d" and shown["pipeline_runs"] == 2
    assert shown["jobs"][0]["snapshot"] == "snap"
    assert main(["jobs", "clean", "d", "--keep", "1", "--store", str(tmp_path)]) == 0
    assert "deleted 1 pipeline run(s)" in capsys.readouterr().out
