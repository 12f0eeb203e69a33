"""The parameter grid, in Orchest's order, addressed by index."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.grid import Grid, merge
from airflow_orchest_jobs.core.pipeline import load_pipeline
from tests.orchest_factory import pipeline_doc, step, write_project


def _pipeline(tmp_path: Path, **kwargs):
    doc = pipeline_doc([
        step("s-b", "b.py", parameters={"b": "x", "a": "step-default"}),
        step("s-c", "c.py", incoming=["s-b"], parameters={"c": 1}),
    ], parameters={"a": 1, "p": "keep"}, **kwargs)
    path = write_project(tmp_path, doc)
    return load_pipeline(path, tmp_path)


def test_orchest_example_order(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"pipeline_parameters": {"a": [1, 2]},
                                      "s-b": {"b": ["x", "y", "z", "w"]}})
    assert len(grid) == 8
    runs = list(grid)
    assert [r["pipeline_parameters"]["a"] for r in runs] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [r["s-b"]["b"] for r in runs] == ["x", "y", "z", "w"] * 2


def test_same_name_at_pipeline_and_step_level_stays_separate(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"pipeline_parameters": {"a": [10, 20]}})
    assert [(r["pipeline_parameters"]["a"], r["s-b"]["a"]) for r in grid] == [
        (10, "step-default"), (20, "step-default")]


def test_omitted_keys_keep_defaults_and_every_parameter_is_filled(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"s-c": {"c": [5, 6]}})
    assert grid.run(1) == {"pipeline_parameters": {"a": 1, "p": "keep"},
                           "s-b": {"b": "x", "a": "step-default"}, "s-c": {"c": 6}}


def test_undeclared_parameter_is_accepted(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"pipeline_parameters": {"new": [1, 2, 3]}})
    assert len(grid) == 3 and grid.run(2)["pipeline_parameters"]["new"] == 3


def test_parameters_in_file_order_first_slowest(tmp_path):
    space = {"s-b": {"b": ["x", "y"], "a": ["m", "n", "o"]}}
    grid = Grid(_pipeline(tmp_path), space)
    expected = list(itertools.product(["x", "y"], ["m", "n", "o"]))
    assert [(r["s-b"]["b"], r["s-b"]["a"]) for r in grid] == expected


def test_steps_follow_pipeline_order_not_file_order(tmp_path):
    space = {"s-c": {"c": [1, 2]}, "s-b": {"b": ["x", "y"]}}
    grid = Grid(_pipeline(tmp_path), space)
    assert [(r["s-b"]["b"], r["s-c"]["c"]) for r in grid] == [
        ("x", 1), ("x", 2), ("y", 1), ("y", 2)]


def test_index_addressing_matches_iteration_on_a_big_grid(tmp_path):
    space = {"pipeline_parameters": {"a": list(range(7))}, "s-b": {"b": list(range(11))},
             "s-c": {"c": list(range(13))}}
    grid = Grid(_pipeline(tmp_path), space)
    expected = list(itertools.product(range(7), range(11), range(13)))
    assert len(grid) == 1001
    for i in (0, 1, 13, 500, 1000):
        run = grid.run(i)
        assert (run["pipeline_parameters"]["a"], run["s-b"]["b"], run["s-c"]["c"]) == expected[i]


def test_huge_grid_is_counted_not_built_and_refused(tmp_path):
    values = list(range(1000))
    space = {"pipeline_parameters": {"a": values, "p": values}, "s-b": {"b": values}}
    with pytest.raises(OrchestError) as err:
        Grid(_pipeline(tmp_path), space, source="main.parameters.json")
    assert "1000000000 runs (1000 x 1000 x 1000)" in str(err.value)
    assert "limit of 100000" in str(err.value)


def test_select_runs(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"pipeline_parameters": {"a": [1, 2, 3]}})
    assert grid.select([2, 0]) == [0, 2]
    assert grid.select(None) == [0, 1, 2]
    with pytest.raises(OrchestError, match="run index 3 is out of range; the grid has 3 runs"):
        grid.select([3])
    with pytest.raises(OrchestError, match="selects no runs"):
        grid.select([])


def test_labels_name_the_varying_values(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"pipeline_parameters": {"a": [2]},
                                      "s-b": {"b": ["x", "y"]}})
    assert grid.label(1) == 'run 1 · b="y"'


def test_merge_overrides_per_parameter():
    base = {"pipeline_parameters": {"a": [1, 2], "b": [3]}, "s": {"c": [4]}}
    out = merge(base, {"pipeline_parameters": {"b": [5, 6]}})
    assert out == {"pipeline_parameters": {"a": [1, 2], "b": [5, 6]}, "s": {"c": [4]}}
    assert base["pipeline_parameters"]["b"] == [3]


def test_definition_substitutes_one_runs_parameters(tmp_path):
    pipeline = _pipeline(tmp_path)
    grid = Grid(pipeline, {"pipeline_parameters": {"a": [1, 2]}})
    doc = pipeline.definition(grid.run(1))
    assert doc["parameters"] == {"a": 2, "p": "keep"}
    assert doc["steps"]["s-b"]["parameters"] == {"b": "x", "a": "step-default"}
    assert pipeline.document["parameters"]["a"] == 1  # the loaded pipeline is unchanged
