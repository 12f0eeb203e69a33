"""Planning: one folder and definition per run; a grid beyond the DAG's groups is refused."""

from __future__ import annotations

import json

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.plan import lanes_needed, plan_runs, run_uuid
from airflow_orchest_jobs.core.request import resolve_request
from tests.orchest_factory import pipeline_doc, step, write_project


@pytest.fixture
def pipeline(tmp_path):
    path = write_project(tmp_path / "p", pipeline_doc([step("s", "a.py")], parameters={"a": 0}))
    return load_pipeline(path, tmp_path / "p")


def _plan(pipeline, tmp_path, conf, lanes=1, max_map_length=4):
    request = resolve_request(pipeline, conf, default_parameters={})
    return plan_runs(pipeline, request, run_root=tmp_path / "runs", job_run_key="d/r",
                     snapshot_id="snap", images={"env": "sha256:1"}, lanes=lanes,
                     max_map_length=max_map_length)


def test_each_selected_run_gets_its_definition(pipeline, tmp_path):
    runs = _plan(pipeline, tmp_path, {"parameters": {"pipeline_parameters": {"a": [1, 2, 3]}},
                                      "runs": [2, 0], "env_variables": {
                                          "X": "1", "S": {"airflow_variable": "v"}}})
    assert [r["index"] for r in runs] == [0, 2]
    definition = json.loads((tmp_path / "runs" / "run-00002" / "pipeline.json").read_text())
    assert definition["parameters"] == {"a": 3}
    assert runs[1]["run_uuid"] == run_uuid("d/r", 2) != runs[0]["run_uuid"]
    assert runs[1]["env"] == {"X": "1"} and runs[1]["secret_env"] == {
        "S": {"airflow_variable": "v"}}
    assert runs[1]["label"] == "run 2 · a=3"


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
