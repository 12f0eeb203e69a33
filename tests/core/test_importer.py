"""The import's pure mapping: Orchest's job rows -> job files, checked by ``validate``'s
own loader; each item that cannot be carried is one line naming the job and the fix."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_orchest_jobs.core.grid import Grid
from airflow_orchest_jobs.core.importer.jobs import file_stem, map_job, match_runs
from airflow_orchest_jobs.core.importer.model import (
    Installation,
    OrchestJob,
    OrchestPipeline,
    OrchestProject,
)
from airflow_orchest_jobs.core.importer.plan import Sources, plan_import
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.project import Project
from airflow_orchest_jobs.core.scan import scan_project
from tests.orchest_factory import pipeline_doc, step, write_project

NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
GRID = {"pipeline_parameters": {"key": "pipeline_parameters", "title": "p",
                                "parameters": {"city": '["Oslo", "Lima"]'}},
        "s1": {"key": "s1", "title": "S", "parameters": {"n": "[1, 2]"}}}


def _pipeline(tmp_path: Path):
    doc = pipeline_doc([step("s1", "a.py", parameters={"n": 1})], parameters={"city": "x"})
    path = write_project(tmp_path / "proj", doc)
    return load_pipeline(path, tmp_path / "proj", check_files=False)


def _job(**fields) -> OrchestJob:
    base = dict(uuid="j1", name="Nightly report", project_uuid="p1", pipeline_uuid="pl1",
                schedule="0 3 * * *", next_scheduled_time=None, status="STARTED",
                strategy_json=GRID, parameters=[], env_variables={})
    base.update(fields)
    return OrchestJob(**base)


def _runs(*pairs):
    # JSONB gives keys in its own order: step first, names reordered; match by value.
    return [{"s1": {"n": n}, "pipeline_parameters": {"city": c}} for c, n in pairs]


def test_selected_runs_are_matched_by_value_whatever_the_key_order(tmp_path):
    pipeline = _pipeline(tmp_path)
    mapped = map_job(_job(parameters=_runs(("Lima", 2), ("Oslo", 1), ("Oslo", 2))),
                     project="proj", stem="nightly-report", pipeline=pipeline,
                     pipeline_rel="main.orchest", inherited={}, now=NOW)
    assert mapped.problems == []
    doc = mapped.document
    assert doc["parameters"] == {"pipeline_parameters": {"city": ["Oslo", "Lima"]},
                                 "s1": {"n": [1, 2]}}
    assert doc["runs"] == [0, 1, 3]
    grid = Grid(pipeline, doc["parameters"])
    assert [grid.run(i) for i in doc["runs"]] == [
        {"pipeline_parameters": {"city": "Oslo"}, "s1": {"n": 1}},
        {"pipeline_parameters": {"city": "Oslo"}, "s1": {"n": 2}},
        {"pipeline_parameters": {"city": "Lima"}, "s1": {"n": 2}}]
    assert doc["schedule"] == "0 3 * * *" and doc["description"] == "Nightly report"
    assert "paused" not in doc


def test_all_runs_selected_leaves_runs_out(tmp_path):
    mapped = map_job(_job(parameters=_runs(("Oslo", 1), ("Oslo", 2), ("Lima", 1),
                                           ("Lima", 2))),
                     project="proj", stem="x", pipeline=_pipeline(tmp_path),
                     pipeline_rel="main.orchest", inherited={}, now=NOW)
    assert mapped.problems == [] and "runs" not in mapped.document
    assert mapped.runs_text == "all 4"


def test_what_cannot_be_carried_is_one_line_each_with_the_fix(tmp_path):
    mapped = map_job(_job(schedule="0 0 3 * * *", parameters=_runs(("Paris", 1)),
                          env_variables={"A": "1"}, max_retained_pipeline_runs=0),
                     project="proj", stem="x", pipeline=_pipeline(tmp_path),
                     pipeline_rel="main.orchest", inherited={"A": "1", "SECRET": "s"},
                     now=NOW)
    text = "\n".join(mapped.problems)
    assert len(mapped.problems) == 4, text
    assert "six fields" in text and "edit its schedule in Orchest" in text
    assert '"Paris"' in text and "not in the job's grid" in text
    assert "variable SECRET was deleted on the job" in text
    assert "max_retained_pipeline_runs is 0" in text


def test_states_paused_cancelled_and_one_offs(tmp_path):
    pipeline = _pipeline(tmp_path)
    kw = dict(project="proj", stem="x", pipeline=pipeline, pipeline_rel="main.orchest",
              inherited={}, now=NOW)
    selected = _runs(("Oslo", 1))
    assert map_job(_job(status="PAUSED", parameters=selected), **kw).document["paused"]
    assert map_job(_job(status="ABORTED", parameters=selected), **kw).document["paused"]
    future = map_job(_job(schedule=None, status="PENDING", parameters=selected,
                          next_scheduled_time=NOW + timedelta(days=2)), **kw)
    assert future.document["schedule"] == "2026-12-09T12:00:00Z"
    due = map_job(_job(schedule=None, status="PENDING", parameters=selected,
                       next_scheduled_time=NOW - timedelta(minutes=1)), **kw)
    assert due.document["schedule"] is None and "trigger-only" in due.state


def test_job_variables_inherited_are_not_copied_own_ones_go_to_variables(tmp_path):
    mapped = map_job(_job(parameters=_runs(("Oslo", 1)),
                          env_variables={"URL": "u", "TOKEN": "job-secret", "ONLY": "x"}),
                     project="my proj", stem="nightly", pipeline=_pipeline(tmp_path),
                     pipeline_rel="main.orchest", inherited={"URL": "u", "TOKEN": "p"},
                     now=NOW)
    assert mapped.document["env_variables"] == {
        "ONLY": {"airflow_variable": "orchest_jobenv__my_proj__nightly__ONLY"},
        "TOKEN": {"airflow_variable": "orchest_jobenv__my_proj__nightly__TOKEN"}}
    assert mapped.variables == {"orchest_jobenv__my_proj__nightly__ONLY": "x",
                                "orchest_jobenv__my_proj__nightly__TOKEN": "job-secret"}
    assert "job-secret" not in json.dumps(mapped.document)


def test_match_runs_reports_a_run_missing_a_parameter(tmp_path):
    grid = Grid(_pipeline(tmp_path), {"pipeline_parameters": {"city": ["a", "b"]}})
    runs, problems = match_runs(grid, [{"s1": {"n": 1}}])
    assert runs is None and "lacks pipeline_parameters.city" in problems[0]


def test_file_stems():
    assert file_stem("Nightly report (v2)!") == "nightly-report-v2"
    assert file_stem("***") == "job"
    assert file_stem("ETL_daily") == "etl_daily"


def test_a_planned_project_validates_and_names_are_unique(tmp_path):
    doc = pipeline_doc([step("s1", "a.py", parameters={"n": 1})], parameters={"city": "x"})
    write_project(tmp_path / "userdir" / "projects" / "proj", doc, name="sub/main.orchest")
    project = OrchestProject("p1", "proj", {"URL": "u"})
    pipeline = OrchestPipeline("pl1", "p1", "sub/main.orchest", {"LEVEL": "1"})
    jobs = [_job(uuid=f"j{i}", name="Same name", parameters=_runs(("Oslo", 1)),
                 created_time=str(i), env_variables={"URL": "u", "LEVEL": "1"})
            for i in range(2)]
    inst = Installation("db", [project], [pipeline], jobs, webhooks=[],
                        settings={"MAX_JOB_RUNS_PARALLELISM": 2})
    plan = plan_import(inst, Sources(lambda p: tmp_path / "userdir" / "projects" / p.folder),
                       NOW)
    [proj] = plan.projects
    assert proj.problems == []
    assert sorted(proj.files) == ["sub/same-name-2.job.json", "sub/same-name.job.json"]
    assert proj.variables == {"orchest_env__proj": '{"URL": "u"}',
                              "orchest_env__proj__sub_main": '{"LEVEL": "1"}'}
    assert plan.settings == {"max_parallel_pipeline_runs": "2"}
    for rel, text in proj.files.items():
        target = tmp_path / "userdir" / "projects" / "proj" / rel
        target.write_text(text)
        assert json.loads(text)["pipeline"] == "sub/main.orchest"
    scan = scan_project(Project(tmp_path / "userdir" / "projects" / "proj"))
    assert not scan.problems, scan.all_problems
    assert sorted(j.spec.name for j in scan.jobs) == ["same-name", "same-name-2"]
    # A second plan with what the first wrote keeps each job's name.
    known = {"j1": "proj/sub/same-name.job.json", "j0": "proj/sub/same-name-2.job.json"}
    again = plan_import(inst, Sources(lambda p: tmp_path / "userdir" / "projects" / p.folder),
                        NOW, known_files=known)
    assert again.projects[0].job_files == {"j0": "sub/same-name-2.job.json",
                                           "j1": "sub/same-name.job.json"}
