"""Planning: one folder and definition per run; a grid beyond the DAG's groups is refused."""

from __future__ import annotations

import json

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.plan import (
    ensure_checkout,
    lanes_needed,
    plan_runs,
    read_run_index,
    run_uuid,
)
from airflow_orchest_jobs.core.request import resolve_request
from airflow_orchest_jobs.core.rundesc import JobRun, describe
from tests.orchest_factory import pipeline_doc, step, write_project


@pytest.fixture
def pipeline(tmp_path):
    path = write_project(tmp_path / "p", pipeline_doc([step("s", "a.py")], parameters={"a": 0}))
    return load_pipeline(path, tmp_path / "p")


JOB_RUN = dict(job_key="d", job_run_key="d/r", snapshot_id="snap", pipeline_rel="main.orchest",
               images={"env": "sha256:1"})


def _plan(pipeline, tmp_path, conf, lanes=1, max_map_length=4):
    request = resolve_request(pipeline, conf, default_parameters={})
    job = JobRun(run_root=str(tmp_path / "runs"), **JOB_RUN)
    return plan_runs(pipeline, request, job, lanes=lanes, max_map_length=max_map_length)


def test_each_selected_run_gets_its_definition_and_only_its_key_is_mapped(pipeline, tmp_path):
    runs = _plan(pipeline, tmp_path, {"parameters": {"pipeline_parameters": {"a": [1, 2, 3]}},
                                      "runs": [2, 0]})
    assert runs == [
        {"index": 0, "position": 0, "label": "run 0 · a=1", "run_uuid": run_uuid("d/r", 0)},
        {"index": 2, "position": 1, "label": "run 2 · a=3", "run_uuid": run_uuid("d/r", 2)}]
    definition = json.loads((tmp_path / "runs" / "run-00002" / "pipeline.json").read_text())
    assert definition["parameters"] == {"a": 3}
    # What a step reads: the key plus the shared job run, paths derived from the run root.
    desc = describe(runs[1], JobRun(run_root=str(tmp_path / "runs"), **JOB_RUN).to_dict())
    assert desc.definition == tmp_path / "runs" / "run-00002" / "pipeline.json"
    assert desc.project_dir == tmp_path / "runs" / "run-00002" / "project"
    assert desc.images == {"env": "sha256:1"} and desc.label == "run 2 · a=3"
    assert read_run_index(tmp_path / "runs")[1]["parameters"] == {
        "pipeline_parameters": {"a": 3}}


def test_the_copy_is_made_once_and_afresh_only_when_the_whole_run_reruns(pipeline, tmp_path):
    from airflow_orchest_jobs.core.snapshot.store import SnapshotStore

    store = SnapshotStore(tmp_path / "snapshots")
    snapshot = store.create(pipeline.project_dir)
    job = JobRun(run_root=str(tmp_path / "runs"), **{**JOB_RUN, "snapshot_id": snapshot.id})
    request = resolve_request(pipeline, {}, default_parameters={})
    key = plan_runs(pipeline, request, job, lanes=1, max_map_length=4)[0]
    desc = describe(key, job.to_dict())
    copy = desc.project_dir / "a.py"

    def check_out(generation, rerunning=True):
        return ensure_checkout(tmp_path / "snapshots", desc, generation, None,
                               lambda: rerunning)

    assert check_out(0) and copy.is_file()
    copy.write_text("changed by a step")
    assert not check_out(0)  # a second first step: the same copy
    assert not check_out(1, rerunning=False)  # cleared, but a sibling kept its result
    assert copy.read_text() == "changed by a step"
    assert check_out(2)  # the whole run cleared: a fresh copy
    assert copy.read_text() == "print('hi')\n"


def test_more_runs_than_the_dags_groups_hold_are_refused_before_anything(pipeline, tmp_path):
    conf = {"parameters": {"pipeline_parameters": {"a": list(range(9))}}}
    assert lanes_needed(9, 4) == 3
    with pytest.raises(OrchestError) as err:
        _plan(pipeline, tmp_path, conf, lanes=2, max_map_length=4)
    message = str(err.value)
    assert "9 pipeline runs selected" in message and "at most 8" in message
    assert "AIRFLOW__CORE__MAX_MAP_LENGTH" in message
    assert not (tmp_path / "runs").exists()
    assert len(_plan(pipeline, tmp_path, conf, lanes=3, max_map_length=4)) == 9


def test_bad_conf_names_each_problem(pipeline):
    with pytest.raises(OrchestError) as err:
        resolve_request(pipeline, {"parameters": {"ghost": {"a": [1]}}, "runs": [5],
                                   "colour": "red"}, default_parameters={})
    lines = str(err.value).splitlines()
    assert any("unknown field 'colour'" in line for line in lines)


def test_a_grid_given_in_the_conf_warns_when_the_scheduler_would_pay_for_it():
    from airflow_orchest_jobs.core.request import conf_cost_warning

    big = {"parameters": {"pipeline_parameters": {"i": list(range(10_000))}}}
    warning = conf_cost_warning(big, 10_000)
    assert warning is not None and "58,938 characters" in warning
    assert "10,000 task instances" in warning and "parameters file" in warning
    # The same conf over a few runs, or a small conf over many, costs nothing worth it.
    assert conf_cost_warning(big, 10) is None
    assert conf_cost_warning({"runs": [0, 3]}, 10_000) is None
    assert conf_cost_warning(None, 10_000) is None and conf_cost_warning({}, 10_000) is None
