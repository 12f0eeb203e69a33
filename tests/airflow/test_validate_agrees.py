"""``validate`` and the DAG processor agree, file by file (one set of checks, in the core)."""

from __future__ import annotations

import json

import pytest

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from tests.orchest_factory import pipeline_doc, step, write_project


def _write(projects, case):
    doc = pipeline_doc([step("s", "s.py")])
    if case == "valid":
        write_project(projects / "p", doc)
    elif case == "duplicate dag id":  # "a b.orchest" and a_b.orchest: one DAG id
        write_project(projects / "p", doc, name="a b.orchest")
        write_project(projects / "p", doc, name="a_b.orchest")
    elif case == "bad job file":
        write_project(projects / "p", doc)
        (projects / "p" / "nightly.job.json").write_text(json.dumps(
            {"pipeline": "main.orchest", "schedule": "every day"}))
    elif case == "cycle":
        write_project(projects / "p", pipeline_doc([step("a", "a.py", incoming=["b"]),
                                                    step("b", "b.py", incoming=["a"])]))
    elif case == "duplicate service port":
        doc["services"] = {name: {"name": name, "image": "redis", "scope": ["noninteractive"],
                                  "ports": [6379]} for name in ("one", "two")}
        write_project(projects / "p", doc)


@pytest.mark.parametrize("case", ["valid", "duplicate dag id", "bad job file", "cycle",
                                  "duplicate service port"])
def test_validate_fails_exactly_when_the_factory_makes_an_invalid_dag(case, tmp_path,
                                                                      monkeypatch, capsys):
    projects = tmp_path / "projects"
    _write(projects, case)
    for key, value in {"projects_dir": projects, "store_dir": tmp_path / "store",
                       "data_dir": tmp_path / "data"}.items():
        monkeypatch.setenv(f"AIRFLOW__ORCHEST_JOBS__{key.upper()}", str(value))
    code = main(["validate", str(projects)])
    errors = capsys.readouterr().err.strip().splitlines()
    dags = build_dags(Settings.from_environment())
    invalid = sorted(d for d in dags if d.startswith("orchest_invalid__"))
    assert (code == 1) == bool(invalid), (errors, sorted(dags))
    # The same first problem, word for word, in both places.
    for dag_id in invalid:
        assert dags[dag_id].description.removeprefix("INVALID: ") in errors, errors
    if case == "duplicate dag id":
        assert any("already taken by" in line and "rename one of the two files" in line
                   for line in errors), errors
