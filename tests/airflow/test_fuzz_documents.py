"""Fuzz: mutated pipeline, job and parameters documents never break the parse.

Each example takes a valid project and puts a random JSON value (strings with NUL,
surrogates and other Unicode, huge numbers, NaN, deep nesting...) at a random place in
one of its documents, or removes a field. Whatever comes out, the DAG factory returns the
other project's DAG and, for the mutated one, its DAG or a placeholder whose problem is
one line; ``validate`` answers 0 or 1, never with a traceback. Bounded: a fixed number of
examples, derandomized, so CI runs the same ones in well under a minute.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = pytest.mark.airflow

DEEP, HUGE = "\ue000deep\ue000", "\ue000huge\ue000"
RAW = {f'"{DEEP}"': "[" * 5000 + "]" * 5000, f'"{HUGE}"': "9" * 5000}

PIPELINE = pipeline_doc(
    [step("s1", "a.py", parameters={"n": 1}), step("s2", "b.ipynb", incoming=["s1"])],
    parameters={"size": 3})
PIPELINE["services"] = {"db": {"name": "db", "image": "postgres", "ports": [5432],
                               "scope": ["noninteractive"], "env_variables": {"A": "b"}}}
JOB = {"pipeline": "main.orchest", "schedule": "0 3 * * *", "runs": [0],
       "parameters": {"pipeline_parameters": {"size": [1, 2]}},
       "env_variables": {"TITLE": "x", "SECRET": {"airflow_variable": "s"}},
       "max_parallel_runs": 2, "snapshot": "per_job"}
PARAMETERS = {"pipeline_parameters": {"size": [4, 5]}, "s1": {"n": [1]}}
DOCUMENTS = {"main.orchest": PIPELINE, "nightly.job.json": JOB,
             "main.parameters.json": PARAMETERS}

_piece = st.one_of(st.sampled_from(["\x00", "\n", "\ud800", "/", "..", "\U0001f600", "é",
                                    "*", " ", "$", "{{", "}}", "s1", "pipeline_parameters"]),
                   st.characters().map(str))
_text = st.lists(_piece, max_size=6).map("".join)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.just(10 ** 30),
                    st.floats(allow_nan=True, allow_infinity=True), _text,
                    st.sampled_from([DEEP, HUGE, "a.py", "main.orchest", "../x", "/data/x"]))
_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)), max_leaves=8)


def _places(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every place in ``doc`` a value can be put: each existing key or index."""
    places = [path] if path else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            places += _places(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            places += _places(value, (*path, index))
    return places


@st.composite
def mutations(draw) -> tuple[str, str]:
    """(file name, its mutated text)."""
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    doc = copy.deepcopy(DOCUMENTS[name])
    for _ in range(draw(st.integers(1, 3))):
        places = _places(doc)
        place = draw(st.sampled_from(places))
        *parents, last = place
        target = doc
        for part in parents:
            target = target[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete" and isinstance(target, dict):
            del target[last]
        elif action == "add" and isinstance(target, dict):
            target[draw(_text)] = draw(_value)
        else:
            target[last] = draw(_value)
    text = json.dumps(doc)
    for marker, raw in RAW.items():
        text = text.replace(marker, raw)
    return name, text


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    write_project(root / "projects" / "control", pipeline_doc([step("s1", "a.py")]))
    return root


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(mutation=mutations())
def test_mutated_documents_give_a_dag_or_one_line(base: Path, mutation, capsys) -> None:
    name, text = mutation
    project = base / "projects" / "fuzz"
    shutil.rmtree(project, ignore_errors=True)
    write_project(project, PIPELINE, files={"a.py": "", "b.ipynb": "{}"})
    for other, doc in DOCUMENTS.items():
        (project / other).write_text(text if other == name else json.dumps(doc))
    settings_ = Settings.from_mapping({"projects_dir": str(base / "projects"),
                                       "store_dir": str(base / "store"),
                                       "data_dir": str(base / "data"),
                                       "network_mode": "none"})
    dags = build_dags(settings_)
    assert "orchest__control__main" in dags
    fuzz = {dag_id: dag for dag_id, dag in dags.items() if "__fuzz__" in dag_id}
    assert fuzz, "the mutated project made neither a DAG nor a placeholder"
    for dag_id, dag in fuzz.items():
        if dag_id.startswith("orchest_invalid__"):
            assert "\n" not in dag.description and dag.description.startswith("INVALID: ")
    code = main(["validate", str(project)])
    err = capsys.readouterr().err
    assert code in (0, 1)
    assert "Traceback" not in err
    invalid = any(dag_id.startswith("orchest_invalid__") for dag_id in fuzz)
    assert (code == 1) == invalid, err  # validate and the parse agree
