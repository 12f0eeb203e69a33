"""The trigger form: fields per parameter and the runs multi-select, folded back into the conf.

Builds real DAGs with the factory and validates what Airflow's form submits with
Airflow's own param validation; the folded conf is resolved like the DAG's tasks do.
"""

from __future__ import annotations

import pytest

from airflow_orchest_jobs.core.annotation import read_annotation
from airflow_orchest_jobs.core.request import resolve_request
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.core.triggerform import (
    MAX_RUN_CHOICES,
    field_defaults,
    field_key,
    fold_form_conf,
)
from airflow_orchest_jobs.dag.factory import build_dags
from tests.views import project

A = field_key("pipeline_parameters", "a")
B = field_key(project.COMPUTE, "b")


@pytest.fixture
def dag(tmp_path):
    project.write(tmp_path / "projects")
    settings = Settings.from_mapping({"projects_dir": str(tmp_path / "projects"),
                                      "store_dir": str(tmp_path / "store"),
                                      "data_dir": str(tmp_path / "data")})
    return build_dags(settings)[project.PIPELINE_DAG]


def _serialized(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_form_has_a_field_per_parameter_and_labelled_runs(dag):
    params = dag.params
    assert list(params)[:2] == [A, B]
    a = params.get_param(A)
    assert params[A] == [1, 2, 3] and a.schema["section"] == "Pipeline parameters"
    assert params[B] == ["w", "x", "y", "z"]
    assert params.get_param(B).schema["title"] == "Compute: b"
    assert params.get_param(B).schema["section"] == "Step parameters: Compute"
    # Airflow's form renders an array with examples as a multi-select.
    runs = params.get_param("runs").schema
    assert runs["examples"] == list(range(12))
    assert runs["values_display"]["5"] == 'run 5 · a=2, b="x"'
    info = params.get_param("parameters").schema["x-orchest"]
    assert info["kind"] == "pipeline" and info["grid_size"] == 12


def test_the_views_read_the_annotation_back_from_the_serialized_dag(dag):
    """What the job views and the pause webhooks show (grid size, project) comes back
    out of the DAG as the api-server and the scheduler hold it: serialized."""
    from airflow.serialization.serialized_objects import DagSerialization

    info = read_annotation(DagSerialization.to_dict(dag))
    assert info["kind"] == "pipeline" and info["grid_size"] == 12
    assert info["project"] == dag.params.get_param("parameters").schema["x-orchest"]["project"]
    assert read_annotation({}) == {}


def test_what_the_form_submits_validates_and_folds_into_the_conf_format(dag):
    serialized = _serialized(dag)
    form = {A: [1, 2], B: ["w", "x", "y", "z"], "runs": ["0", "5"],
            "parameters": dict(dag.params["parameters"]), "env_variables": {}}
    serialized.params.deep_merge(form).validate()  # Airflow's check at trigger time
    conf = fold_form_conf(form, field_defaults(_pipeline(dag), dag.params["parameters"]))
    assert set(conf) == {"parameters", "runs", "env_variables"}
    assert conf["runs"] == [0, 5]
    assert conf["parameters"]["pipeline_parameters"]["a"] == [1, 2]
    request = resolve_request(_pipeline(dag), conf, default_parameters={})
    assert len(request.grid) == 8 and request.runs == [0, 5]


def _pipeline(dag):
    return dag.task_dict["pipeline_run.compute"].pipeline


def test_an_edited_parameters_object_wins_over_an_untouched_field(dag):
    pipeline = _pipeline(dag)
    defaults = field_defaults(pipeline, dag.params["parameters"])
    grid = {"pipeline_parameters": {"a": [7]}, project.COMPUTE: {"b": ["w"]}}
    form = {A: [1, 2, 3], B: ["w", "x", "y", "z"], "parameters": grid, "runs": None}
    conf = fold_form_conf(form, defaults)
    assert conf["parameters"] == grid and conf["runs"] is None


def test_a_cli_conf_passes_unchanged():
    conf = {"parameters": {"pipeline_parameters": {"a": [1]}}, "runs": [0, 3],
            "env_variables": {"X": "1"}}
    assert fold_form_conf(conf, {}) == conf
    assert fold_form_conf(None) == {} and fold_form_conf({}) == {}
    # Not an object: left as it is for the conf check to report.
    assert fold_form_conf({A: [1], "parameters": "x"}) == {"parameters": "x"}


def test_big_grids_get_a_json_list_of_runs(tmp_path):
    from tests.orchest_factory import pipeline_doc, step, write_project

    write_project(tmp_path / "projects" / "big", pipeline_doc([step("s1", "a.py")]),
                  parameters={"pipeline_parameters": {"n": list(range(MAX_RUN_CHOICES + 1))}})
    settings = Settings.from_mapping({"projects_dir": str(tmp_path / "projects"),
                                      "store_dir": str(tmp_path / "store"),
                                      "data_dir": str(tmp_path / "data")})
    runs = build_dags(settings)["orchest__big__main"].params.get_param("runs").schema
    assert "examples" not in runs and runs["type"] == ["null", "array"]


def test_a_big_default_grid_stays_out_of_the_conf_and_still_runs_whole(tmp_path):
    """The form submits every field into the DAG run's conf, which Airflow's scheduler
    decodes again per task instance: a 2,100-value axis must not travel in it."""
    import json

    from tests.orchest_factory import pipeline_doc, step, write_project

    doc = pipeline_doc([step("s1", "a.py")], parameters={"n": 0, "m": "x"})
    write_project(tmp_path / "projects" / "big", doc,
                  parameters={"pipeline_parameters": {"n": list(range(2100)), "m": ["x"]}})
    settings = Settings.from_mapping({"projects_dir": str(tmp_path / "projects"),
                                      "store_dir": str(tmp_path / "store"),
                                      "data_dir": str(tmp_path / "data")})
    dag = build_dags(settings)["orchest__big__main"]
    n, m = field_key("pipeline_parameters", "n"), field_key("pipeline_parameters", "m")
    form = dict(dag.params)  # what the form submits when nothing is edited
    assert form[n] is None and form["parameters"] == {} and form[m] == ["x"]
    assert "2100 values by default" in dag.params.get_param(n).description
    assert len(json.dumps(form)) < 500
    # The DAG's docs show a trigger example without the 2,100 values.
    assert "-c '{\"runs\": [0]}'" in dag.doc_md and len(dag.doc_md) < 2000
    _serialized(dag).params.deep_merge(form).validate()
    pipeline = dag.task_dict["pipeline_run.s1"].pipeline
    defaults = {"pipeline_parameters": {"n": list(range(2100)), "m": ["x"]}}
    conf = fold_form_conf(form, field_defaults(pipeline, defaults))
    request = resolve_request(pipeline, conf, default_parameters=defaults)
    assert len(request.grid) == 2100 and len(request.runs) == 2100
    # A list entered in the emptied field still replaces the default values.
    conf = fold_form_conf({**form, n: [5, 6]}, field_defaults(pipeline, defaults))
    assert len(resolve_request(pipeline, conf, default_parameters=defaults).grid) == 2
