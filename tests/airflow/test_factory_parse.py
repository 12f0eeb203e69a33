"""The DAG factory at parse time: ids, shape, trigger form, errors kept local."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from tests.conftest import REPO
from tests.example_project import GEN, write_example

pytestmark = pytest.mark.airflow

GRID = {"pipeline_parameters": {"size": [2, 4]}, GEN: {"size": ["a", "b", "c"]}}


def _settings(root: Path, **extra) -> Settings:
    return Settings.from_mapping({"projects_dir": str(root / "projects"),
                                  "store_dir": str(root / "store"),
                                  "data_dir": str(root / "data"), "network_mode": "none",
                                  **extra})


@pytest.fixture
def projects(tmp_path):
    projects = tmp_path / "projects"
    write_example(projects, grid=GRID, job={"pipeline": "main.orchest", "schedule": "0 3 * * *",
                                            "env_variables": {"REPORT_TITLE": "Nightly"}})
    bad = projects / "broken"
    bad.mkdir()
    (bad / "main.orchest").write_text('{"uuid": "x", "steps": {"a": {"uuid": "a"}}}')
    return tmp_path


def test_one_dag_per_pipeline_and_job_and_invalid_files_stay_local(projects, caplog):
    caplog.set_level("WARNING", logger="airflow_orchest_jobs.dag.factory")
    dags = build_dags(_settings(projects))
    assert set(dags) == {"orchest__demo__main", "orchest_job__demo__nightly",
                         "orchest_invalid__broken__main.orchest"}
    invalid = dags["orchest_invalid__broken__main.orchest"]
    assert "steps.a: missing required field 'file_path'" in invalid.description
    assert "broken/main.orchest" in invalid.description
    assert "orchest:invalid" in invalid.tags
    # The DAG processor's log says it too, one line per problem.
    assert any("steps.a: missing required field 'file_path'" in r.getMessage()
               for r in caplog.records)
    # The UI shows the pipeline's name rather than the DAG id.
    pipeline_name = dags["orchest__demo__main"].dag_display_name
    assert pipeline_name == "demo pipeline"
    assert dags["orchest_job__demo__nightly"].dag_display_name == "demo pipeline · job nightly"


def test_a_task_instance_parse_builds_only_its_dag(projects, monkeypatch):
    """Airflow's task runner parses the DAG file for one DAG (its parsing context):
    only that DAG is built, so a task's start-up does not grow with the projects."""
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orchest_job__demo__nightly")
    dags = build_dags(_settings(projects))
    assert set(dags) == {"orchest_job__demo__nightly"}
    assert "pipeline_run.analyse" in dags["orchest_job__demo__nightly"].task_dict
    # A DAG id the factory does not know (an invalid file's): everything, as before.
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orchest_invalid__broken__main.orchest")
    assert len(build_dags(_settings(projects))) == 3


def test_dag_shape(projects):
    """No task only to prepare: the first step makes the run's copy; runs read two XComs."""
    dag = build_dags(_settings(projects))["orchest__demo__main"]
    ids = set(dag.task_dict)
    assert ids == {"snapshot", "plan", "pipeline_run.generate", "pipeline_run.analyse",
                   "pipeline_run.publish", "finalize"}
    t = dag.task_dict
    assert t["finalize"].is_teardown and t["snapshot"].is_setup
    assert {"pipeline_run.publish"} <= t["finalize"].upstream_task_ids

    def upstream(task_id):  # every task in the group reads its run key and the job run
        return t[task_id].upstream_task_ids - {"plan", "snapshot"}

    assert upstream("pipeline_run.generate") == set()
    assert upstream("pipeline_run.analyse") == {"pipeline_run.generate"}
    assert upstream("pipeline_run.publish") == {"pipeline_run.analyse"}
    assert t["pipeline_run.generate"].upstream_task_ids == {"plan", "snapshot"}
    assert t["pipeline_run.generate"].checkout_peers == ["generate"]
    assert t["pipeline_run.analyse"].checkout_peers is None
    assert t["pipeline_run.publish"].map_index_template == "{{ task.run['label'] }}"
    assert t["pipeline_run.analyse"].task_display_name == "Analyse"


def test_runs_with_services_or_limits_get_a_prepare_task_and_a_teardown(projects):
    dag = build_dags(_settings(projects, max_parallel_pipeline_runs="2"))["orchest__demo__main"]
    t = dag.task_dict
    assert t["pipeline_run.generate"].upstream_task_ids == {"plan", "snapshot",
                                                           "pipeline_run.prepare"}
    assert t["pipeline_run.generate"].checkout_peers is None  # prepare makes the copy
    assert t["pipeline_run.cleanup"].is_teardown
    assert {"pipeline_run.publish", "pipeline_run.analyse"} <= \
        t["pipeline_run.cleanup"].upstream_task_ids
    # A waiting run reschedules its prepare; Airflow can fail a rescheduled try on a late
    # executor event (apache/airflow#71172): a retry must take the run through.
    assert t["pipeline_run.prepare"].retries >= 1
    assert t["pipeline_run.prepare"].retry_delay.total_seconds() <= 5


def test_trigger_form_is_prefilled(projects):
    dag = build_dags(_settings(projects))["orchest__demo__main"]
    params = dag.params
    assert params["parameters"] == GRID
    assert params["runs"] is None
    raw = params.get_param("parameters")
    assert raw.schema["title"] == "Parameter grid" and "LIST" in raw.description
    assert params.get_param("runs").schema["title"] == "Runs to run"
    assert params.get_param("env_variables").schema["title"] == "Environment variables"


def test_job_dag_follows_the_job_file(projects):
    dag = build_dags(_settings(projects))["orchest_job__demo__nightly"]
    assert type(dag.timetable).__name__ == "OrchestCronTimetable"
    assert dag.timetable.expression == "0 3 * * *"
    assert dag.catchup is False
    assert dag.params["env_variables"] == {"REPORT_TITLE": "Nightly"}
    assert "orchest:job" in dag.tags


def test_the_job_options_shape_the_dag(projects, monkeypatch):
    """No overlap, start date, retries explicit on step tasks (a deployment's default is
    not a user step's), the time limit and the stop option in the trigger form."""
    from datetime import timedelta

    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TASK_RETRIES", "4")
    job = projects / "projects" / "demo" / "nightly.job.json"
    job.write_text(json.dumps({"pipeline": "main.orchest", "schedule": "0 3 * * *",
                               "max_active_job_runs": 1, "start_date": "2030-05-06",
                               "step_retries": 2, "step_retry_delay": "10s",
                               "pipeline_run_timeout": "2h", "stop_on_first_failure": True}))
    dag = build_dags(_settings(projects))["orchest_job__demo__nightly"]
    assert dag.max_active_runs == 1
    assert dag.start_date.isoformat().startswith("2030-05-06T00:00:00")
    steps = [t for t in dag.tasks if type(t).__name__ == "OrchestStepOperator"]
    assert steps and {(t.retries, t.step_retries, t.retry_delay) for t in steps} == {
        (4, 2, timedelta(seconds=10))}
    assert dag.params["pipeline_run_timeout"] == "2h"
    assert dag.params["stop_on_first_failure"] is True
    job.write_text(json.dumps({"pipeline": "main.orchest", "schedule": "0 3 * * *"}))
    dag = build_dags(_settings(projects))["orchest_job__demo__nightly"]
    steps = [t for t in dag.tasks if type(t).__name__ == "OrchestStepOperator"]
    assert {t.step_retries for t in steps} == {0}  # a failure of the step is final
    assert dag.params["pipeline_run_timeout"] is None
    assert dag.params["stop_on_first_failure"] is False


def test_a_paused_job_file_creates_its_dag_paused(projects):
    dags = build_dags(_settings(projects))
    assert dags["orchest_job__demo__nightly"].is_paused_upon_creation is False
    job = projects / "projects" / "demo" / "nightly.job.json"
    job.write_text(json.dumps({"pipeline": "main.orchest", "schedule": "0 3 * * *",
                               "paused": True}))
    dags = build_dags(_settings(projects))
    assert dags["orchest_job__demo__nightly"].is_paused_upon_creation is True
    assert dags["orchest__demo__main"].is_paused_upon_creation is False


def test_one_off_and_trigger_only_schedules(projects):
    job = projects / "projects" / "demo" / "nightly.job.json"
    job.write_text(json.dumps({"pipeline": "main.orchest", "schedule": "2030-01-02T03:04:05Z"}))
    dag = build_dags(_settings(projects))["orchest_job__demo__nightly"]
    assert type(dag.timetable).__name__ == "OnceTimetable"
    assert dag.start_date.isoformat().startswith("2030-01-02T03:04:05")
    job.write_text(json.dumps({"pipeline": "main.orchest", "schedule": None}))
    dag = build_dags(_settings(projects))["orchest_job__demo__nightly"]
    assert type(dag.timetable).__name__ == "NullTimetable"


def test_a_changed_step_file_changes_the_dag(projects):
    before = build_dags(_settings(projects))["orchest__demo__main"].doc_md
    step_file = projects / "projects" / "demo" / "generate.py"
    step_file.write_text(step_file.read_text() + "\nprint('changed')\n")
    after = build_dags(_settings(projects))["orchest__demo__main"].doc_md
    assert before != after
    assert "Source fingerprint" in after


def test_dag_ids_are_sanitised_and_clashes_reported(tmp_path):
    projects = tmp_path / "projects"
    project = write_example(projects, name="my project")
    shutil.copy(project / "main.orchest", project / "main?.orchest")
    dags = build_dags(_settings(tmp_path))
    assert "orchest__my_project__main" in dags
    clash = [d for d in dags if d.startswith("orchest_invalid__")]
    assert len(clash) == 1 or "orchest__my_project__main_" in dags


def test_big_default_grid_gets_more_mapped_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "4")
    write_example(tmp_path / "projects", grid={GEN: {"size": list(range(9))}})
    dag = build_dags(_settings(tmp_path))["orchest__demo__main"]
    groups = {t.split(".")[0] for t in dag.task_dict if "." in t}
    assert groups == {"pipeline_run", "pipeline_run_2", "pipeline_run_3"}


def test_dags_serialize(projects, airflow_home):
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in build_dags(_settings(projects)).values():
        data = DagSerialization.to_dict(dag)
        assert data["dag"]["dag_id"] == dag.dag_id


def test_dag_file_loads_in_a_dagbag(projects, airflow_home, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR", str(projects / "projects"))
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(projects / "store"))
    bag = DagBag(dag_folder=str(REPO / "dags"), include_examples=False) \
        if "include_examples" in DagBag.__init__.__code__.co_varnames \
        else DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"orchest__demo__main", "orchest_job__demo__nightly",
            "orchest_invalid__broken__main.orchest"} <= set(bag.dag_ids)


def test_parsing_loads_none_of_the_snapshot_stores_code(projects):
    """The DAG processor parses in a fresh process every time: the project walk's ignore
    rules are all it needs of the snapshot package (no store, packs or checkout code)."""
    folders = {"projects_dir": str(projects / "projects"), "store_dir": str(projects / "store")}
    code = ("import sys\n"
            "from airflow_orchest_jobs.core.settings import Settings\n"
            "from airflow_orchest_jobs.dag.factory import build_dags\n"
            f"dags = build_dags(Settings.from_mapping({folders!r}))\n"
            "assert 'orchest__demo__main' in dags\n"
            "prefix = 'airflow_orchest_jobs.core.snapshot.'\n"
            "print(sorted(m[len(prefix):] for m in sys.modules if m.startswith(prefix)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "['fsops', 'patterns', 'selection']"


def test_a_frozen_jobs_dag_is_built_from_its_job_state_without_touching_the_snapshot(projects):
    """Parsing reads the frozen pipeline from the job state: the project may change."""
    from airflow_orchest_jobs.core.jobstate import FrozenJob, JobStates
    from airflow_orchest_jobs.core.pipeline import load_pipeline

    settings = _settings(projects)
    project = settings.projects_dir / "demo"
    frozen = load_pipeline(project / "main.orchest", project).document
    frozen["steps"][GEN]["title"] = "Generate (frozen)"
    JobStates(settings.store_dir).put(FrozenJob(
        job_key="orchest_job__demo__nightly", snapshot_id="0" * 64, images={},
        pipeline="main.orchest", created_at="2026-12-01T00:00:00+00:00",
        extra={"pipeline_document": frozen}))
    live = json.loads((project / "main.orchest").read_text())
    live["steps"][GEN]["title"] = "Generate (edited later)"
    (project / "main.orchest").write_text(json.dumps(live))
    dag = build_dags(settings)["orchest_job__demo__nightly"]
    names = {task.task_display_name for task in dag.tasks}
    assert "Generate (frozen)" in names and "Generate (edited later)" not in names
    assert not (settings.store_dir / "snapshots").exists()  # no view was checked out


def test_what_the_trigger_form_submits_is_a_valid_conf(projects):
    """The form sends every param as filled in (fields per parameter, runs as strings)."""
    from airflow_orchest_jobs.operators.snapshot import request_for

    dag = build_dags(_settings(projects))["orchest__demo__main"]
    job = dag.task_dict["snapshot"].job
    submitted = dict(dag.params.dump())
    assert any(key.startswith("parameters/") for key in submitted), sorted(submitted)
    request = request_for(job, submitted)
    assert len(request.runs) == 6  # the default grid, unchanged
    submitted["runs"] = ["1", "4"]
    assert request_for(job, submitted).runs == [1, 4]


def test_an_exception_building_one_dag_is_its_placeholder(projects, monkeypatch):
    """Building each DAG is contained too: whatever one raises (here a bug, simulated in
    the builder) is that file's placeholder; the other DAGs are built."""
    from airflow_orchest_jobs.dag import factory

    real = factory.orchest_dag

    def orchest_dag(job, *args, **kwargs):
        if job.dag_id == "orchest__demo__main":
            raise RuntimeError("a bug\nin two lines")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(factory, "orchest_dag", orchest_dag)
    dags = build_dags(_settings(projects))
    assert set(dags) == {"orchest_job__demo__nightly", "orchest_invalid__demo__main.orchest",
                         "orchest_invalid__broken__main.orchest"}
    placeholder = dags["orchest_invalid__demo__main.orchest"]
    assert placeholder.description == (
        f"INVALID: {projects / 'projects' / 'demo' / 'main.orchest'}: cannot be loaded "
        "(RuntimeError: a bug in two lines); this input is not handled: fix the file, or "
        "report it with this line")
