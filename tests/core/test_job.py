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


def test_job_options_orchests_users_asked_for(tmp_path):
    spec = _project(tmp_path, {"pipeline": "main.orchest", "schedule": "0 3 * * *",
                               "max_active_job_runs": 1, "pipeline_run_timeout": "1h30m",
                               "step_retries": 2, "step_retry_delay": "5s",
                               "stop_on_first_failure": True, "start_date": "2030-01-02"})
    assert spec.max_active_job_runs == 1 and spec.pipeline_run_timeout == 5400
    assert spec.step_retries == 2 and spec.step_retry_delay == 5
    assert spec.stop_on_first_failure is True
    assert spec.start_date == datetime(2030, 1, 2, tzinfo=timezone.utc)
    plain = _project(tmp_path / "b", {"pipeline": "main.orchest"})
    assert (plain.max_active_job_runs, plain.pipeline_run_timeout, plain.step_retries,
            plain.stop_on_first_failure, plain.start_date) == (None, None, 0, False, None)
    assert _project(tmp_path / "c", {"pipeline": "main.orchest",
                                     "pipeline_run_timeout": 600}).pipeline_run_timeout == 600


@pytest.mark.parametrize(("field", "value", "says"), [
    ("pipeline_run_timeout", "2 hours", "not a duration"),
    ("pipeline_run_timeout", 0, "at least 1"),
    ("step_retries", -1, "at least 0"),
    ("step_retries", "3", "whole number"),
    ("max_active_job_runs", 0, "at least 1"),
    ("stop_on_first_failure", "yes", "true or false"),
    ("start_date", "tomorrow", "ISO-8601"),
    ("step_retry_delay", "soon", "not a duration"),
])
def test_bad_job_options_name_file_field_and_fix(tmp_path, field, value, says):
    job = {"pipeline": "main.orchest", "schedule": "@daily", field: value}
    with pytest.raises(OrchestError) as caught:
        _project(tmp_path, job)
    [problem] = caught.value.problems
    assert problem.file.endswith("nightly.job.json") and problem.where == field
    assert says in problem.message


def test_a_start_date_needs_a_cron_schedule(tmp_path):
    with pytest.raises(OrchestError) as caught:
        _project(tmp_path, {"pipeline": "main.orchest", "start_date": "2030-01-01"})
    assert "cron schedule" in str(caught.value)


def test_durations():
    from airflow_orchest_jobs.core.schedule import format_duration, parse_duration

    assert parse_duration("90s") == 90 and parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400 and parse_duration(" 1D ") == 86400
    assert parse_duration(0.5) == 0.5 and format_duration(5400) == "1h30m"
    for bad in ("", "h", "2x", "1h 30", True, -3, [1]):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_trigger_conf_overrides_the_timeout_and_the_stop_option(tmp_path):
    from airflow_orchest_jobs.core.request import resolve_request

    doc = pipeline_doc([step("s1", "a.py")])
    write_project(tmp_path, doc)
    [loaded] = scan_project(Project(tmp_path)).pipelines
    pipeline = loaded.pipeline
    kept = resolve_request(pipeline, {}, default_parameters={}, default_timeout=60,
                           default_stop_on_first_failure=True)
    assert kept.pipeline_run_timeout == 60 and kept.stop_on_first_failure is True
    changed = resolve_request(pipeline, {"pipeline_run_timeout": "5m",
                                         "stop_on_first_failure": False},
                              default_parameters={}, default_timeout=60)
    assert changed.pipeline_run_timeout == 300 and changed.stop_on_first_failure is False
    with pytest.raises(OrchestError, match="pipeline_run_timeout"):
        resolve_request(pipeline, {"pipeline_run_timeout": "later"}, default_parameters={})


def test_paused_field(tmp_path):
    assert _project(tmp_path / "a", {"pipeline": "main.orchest"}).paused is False
    assert _project(tmp_path / "b", {"pipeline": "main.orchest", "paused": True}).paused is True
