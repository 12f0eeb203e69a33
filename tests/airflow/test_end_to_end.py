"""Orchest pipelines and jobs run as DAGs: real Airflow, real Docker, the real orchest SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.layout import safe_name
from airflow_orchest_jobs.core.project import project_uuid
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from airflow_orchest_jobs.engine.images import environment_image
from tests.airflow_helpers import run_dag, task_states
from tests.example_project import GEN, write_example
from tests.orchest_factory import ENV

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]


@pytest.fixture
def env(orchest_settings, images, docker_client):
    """Settings pointing at temporary folders; the example's environment image tagged."""
    settings = orchest_settings()
    tag = environment_image(project_uuid("demo"), ENV)
    docker_client.images.get(images["python"]).tag(tag)
    yield settings
    docker_client.images.remove(tag, noprune=True)


def _reports(settings: Settings) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in
                   (settings.data_dir / "reports").glob("*.json")), key=lambda r: r["total"])


def _run_folders(settings: Settings, dag_run) -> list[Path]:
    root = settings.store_dir / "runs" / dag_run.dag_id
    return sorted(p for p in root.glob("*/run-*") if p.is_dir())


def _xcom(dag_run, task_id: str, key: str, map_index: int) -> object:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key,
            map_index=map_index).one_or_none()
        return None if row is None else XComModel.deserialize_value(row)


def _map_names(dag_run, task_id: str) -> list[str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == task_id]
        return sorted(ti.rendered_map_index or "" for ti in tis)


def test_full_grid_from_the_parameters_file(tmp_path, env):
    write_example(env.projects_dir, grid={"pipeline_parameters": {"size": [2, 4]}})
    dag = build_dags(env)["orchest__demo__main"]
    dag_run = run_dag(dag)
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert _reports(env) == [{"total": 1, "label": "small", "title": None},
                             {"total": 6, "label": "small", "title": None}]
    assert _map_names(dag_run, "pipeline_run.analyse") == ["run 0 · size=2", "run 1 · size=4"]
    for folder in _run_folders(env, dag_run):
        project = folder / "project"
        executed = json.loads((project / "analyse.ipynb").read_text())
        outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
        assert any("total is" in "".join(o.get("text", "")) for o in outputs)
        assert (project / "analyse.html").stat().st_size > 1000
        logs = project / ".orchest" / "pipelines"
        assert any(p.name.endswith(".log") for p in logs.rglob("*.log"))
    # the notebook step links to its HTML (served by the plugin's run-files app)
    link = _xcom(dag_run, "pipeline_run.analyse", "_link_NotebookHtmlLink", 1)
    assert isinstance(link, str) and link.endswith("/run-00001/project/analyse.html")
    assert "/orchest-jobs/runs/orchest__demo__main/" in link
    assert _xcom(dag_run, "pipeline_run.generate", "_link_NotebookHtmlLink", 1) in ("", None)
    # the snapshot never changes: the user's project is untouched by the run
    source = json.loads((env.projects_dir / "demo" / "analyse.ipynb").read_text())
    assert all(not c.get("outputs") for c in source["cells"])


def test_conf_override_with_run_selection(env):
    write_example(env.projects_dir, grid={"pipeline_parameters": {"size": [2, 4]}})
    dag = build_dags(env)["orchest__demo__main"]
    conf = {"parameters": {"pipeline_parameters": {"size": [5, 6, 7]}}, "runs": [1],
            "env_variables": {"REPORT_TITLE": "from conf; $(echo not run)"}}
    dag_run = run_dag(dag, conf=conf)
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert _reports(env) == [{"total": 15, "label": "small",
                              "title": "from conf; $(echo not run)"}]
    assert _map_names(dag_run, "pipeline_run.generate") == ["run 1 · size=6"]


def test_bad_conf_fails_at_the_first_task_before_any_container(env, docker_client):
    write_example(env.projects_dir)
    dag = build_dags(env)["orchest__demo__main"]
    dag_run = run_dag(dag, conf={"parameters": {"pipeline_parameters": {"size": 3}}})
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["snapshot"] == "failed"
    assert "plan" in states and states["plan"] == "upstream_failed"
    assert not (env.store_dir / "runs").exists()


def test_a_failing_run_beside_passing_ones(env):
    write_example(env.projects_dir, grid={"pipeline_parameters": {"size": [2, -1, 3]}})
    dag_run = run_dag(build_dags(env)["orchest__demo__main"])
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["pipeline_run.generate[1]"] == "failed"
    assert states["pipeline_run.analyse[1]"] == "upstream_failed"
    assert states["pipeline_run.publish[0]"] == "success"
    assert states["pipeline_run.publish[2]"] == "success"
    assert [r["total"] for r in _reports(env)] == [1, 3]


def test_job_keeps_its_snapshot_and_frozen_image(env, images, docker_client):
    project = write_example(env.projects_dir, job={"pipeline": "main.orchest",
                                                   "schedule": "0 3 * * *",
                                                   "env_variables": {"REPORT_TITLE": "v1"}})
    dag = build_dags(env)["orchest_job__demo__nightly"]
    first = run_dag(dag)
    assert str(first.state) == "success", task_states(first)
    # Change the project (a different pipeline default, a new step file) and re-tag the
    # environment image to one without Python: the job must not notice.
    doc = json.loads((project / "main.orchest").read_text())
    doc["parameters"]["size"] = 100
    (project / "main.orchest").write_text(json.dumps(doc))
    (project / "generate.py").write_text("raise SystemExit('the new code must not run')\n")
    docker_client.images.get(images["busybox"]).tag(environment_image(project_uuid("demo"),
                                                                      ENV))
    dag = build_dags(env)["orchest_job__demo__nightly"]
    assert "Frozen job: snapshot" in dag.doc_md
    second = run_dag(dag, logical_date=None)
    assert str(second.state) == "success", task_states(second)
    assert [r["total"] for r in _reports(env)] == [3, 3]
    infos = {first.run_id, second.run_id}
    assert len(infos) == 2
    states = json.loads(next((env.store_dir / "jobs").glob("*.json")).read_text())
    assert states["job_key"] == "orchest_job__demo__nightly"


def test_step_parameters_reach_the_step(env):
    write_example(env.projects_dir, grid={GEN: {"size": ["x", "y"]}})
    dag_run = run_dag(build_dags(env)["orchest__demo__main"])
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert [r["label"] for r in _reports(env)] == ["x", "y"] or \
        sorted(r["label"] for r in _reports(env)) == ["x", "y"]


def test_retention_keeps_the_newest_finished_runs(env, docker_client):
    from airflow_orchest_jobs.engine.images import frozen_repository, job_image_owner

    write_example(env.projects_dir, grid={"pipeline_parameters": {"size": [1, 2]}},
                  job={"pipeline": "main.orchest", "max_retained_pipeline_runs": 2,
                       "snapshot": "per_run"})
    dag = build_dags(env)["orchest_job__demo__nightly"]
    runs = [run_dag(dag) for _ in range(2)]
    assert all(str(r.state) == "success" for r in runs), [task_states(r) for r in runs]
    assert task_states(runs[1])["finalize"] == "success"
    # 4 pipeline runs happened; the 2 of the first DAG run were deleted, with its job:
    folders = sorted((env.store_dir / "runs" / dag.dag_id).glob("*/run-*"))
    assert [f.parent.name for f in folders] == [safe_name(runs[1].run_id)] * 2
    states = [json.loads(p.read_text())["job_key"]
              for p in (env.store_dir / "jobs").glob("*.json")]
    assert states == [f"{dag.dag_id}/{runs[1].run_id}"]
    first_tags = [t for image in docker_client.images.list() for t in image.tags
                  if t.startswith(frozen_repository(job_image_owner(
                      env.store_dir, f"{dag.dag_id}/{runs[0].run_id}")))]
    assert first_tags == []
    snapshots = list((env.store_dir / "snapshots" / "manifests").glob("*"))
    assert len(snapshots) == 1
