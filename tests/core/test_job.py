"""Job files: schedule forms, parameters sources, defaults."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.project import Project
from airflow_orchest_jobs.core.scan import scan_project
from airflow_orchest_jobs.core.schedule import parse_schedule
from tests.orchest_factory import pipeline_doc, step, write_project


@pytest.mark.parametrize(("text", "cron", "at"), [
    (None, None, None),
    ("0 3 * * *", "0 3 * * *", None),
    ("@daily", "@daily", None),
    ("2026-12-01T03:00:00Z", None, datetime(2026, 12, 1, 3, tzinfo=timezone.utc)),
    ("2026-12-01T03:00:00", None, datetime(2026, 12, 1, 3, tzinfo=timezone.utc)),
])
def test_schedule_forms(text, cron, at):
    schedule = parse_schedule(text)
    assert (schedule.cron, schedule.at) == (cron, at)
    assert schedule.is_trigger_only == (text is None)


@pytest.mark.parametrize("text", ["", "* * *", "0 25 * * *", "@continuous", "2026-02-30"])
def test_bad_schedules(text):
    with pytest.raises(ValueError):
        parse_schedule(text)


def _project(tmp_path, job: dict, params: dict | None = None):
    doc = pipeline_doc([step("s1", "a.py", parameters={"n": 1})], parameters={"a": 0})
    write_project(tmp_path, doc, parameters=params)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "nightly.job.json").write_text(json.dumps(job))
    (tmp_path / "grid.json").write_text(json.dumps({"s1": {"n": [1, 2, 3]}}))
    scan = scan_project(Project(tmp_path))
    if scan.problems:
        raise OrchestError(scan.all_problems)
    [loaded] = scan.jobs
    return loaded.spec


def test_job_defaults_use_the_pipelines_parameters_file(tmp_path):
    spec = _project(tmp_path, {"pipeline": "main.orchest"},
                    params={"pipeline_parameters": {"a": [1, 2]}})
    assert spec.name == "nightly"
    assert spec.parameters == {"pipeline_parameters": {"a": [1, 2]}}
    assert spec.snapshot == "per_job" and spec.runs is None and spec.catchup is False
    assert spec.schedule.is_trigger_only


def test_job_parameters_from_a_named_file_and_inline(tmp_path):
    spec = _project(tmp_path / "a", {"pipeline": "main.orchest", "parameters": "grid.json",
                                     "runs": [2]})
    assert spec.parameters == {"s1": {"n": [1, 2, 3]}} and spec.runs == (2,)
    spec = _project(tmp_path / "b", {"pipeline": "main.orchest",
                                     "parameters": {"pipeline_parameters": {"a": [7]}},
                                     "schedule": "@hourly", "snapshot": "per_run",
                                     "env_variables": {"TOKEN": {"airflow_variable": "tok"}}})
    assert spec.parameters == {"pipeline_parameters": {"a": [7]}}
    assert spec.schedule.cron == "@hourly" and spec.snapshot == "per_run"
    assert spec.env_variables == {"TOKEN": {"airflow_variable": "tok"}}


def test_job_on_a_broken_pipeline_points_at_it(tmp_path):
    doc = pipeline_doc([step("s1", "missing.py")])
    write_project(tmp_path, doc, files={})
    (tmp_path / "x.job.json").write_text(json.dumps({"pipeline": "main.orchest"}))
    scan = scan_project(Project(tmp_path))
    assert str(tmp_path / "x.job.json") in scan.problems
    assert "has problems of its own" in str(scan.problems[str(tmp_path / "x.job.json")][0])


def test_paused_field(tmp_path):
    assert _project(tmp_path / "a", {"pipeline": "main.orchest"}).paused is False
    assert _project(tmp_path / "b", {"pipeline": "main.orchest", "paused": True}).paused is True
