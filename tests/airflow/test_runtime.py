"""Steps run for real: Airflow (``dag.test``) starts Docker containers of the local images.

Each test writes a small Orchest project, makes each pipeline run's project copy (with
the run's definition written over the ``.orchest`` file, as the planner does), builds a
DAG wired like the pipeline (a mapped group per run, as the factory does) and runs it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_orchest_jobs.cli import main as cli_main
from airflow_orchest_jobs.core.contract import step_log_path
from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.labels import LABEL_RUN
from airflow_orchest_jobs.core.model import Pipeline
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.plan import hand_over
from airflow_orchest_jobs.core.project import project_uuid
from airflow_orchest_jobs.core.settings import step_owner
from airflow_orchest_jobs.engine.images import (
    DockerUnavailable,
    docker_client,
    environment_image,
    freeze,
    release,
    resolve_images,
)
from airflow_orchest_jobs.operators.step import OrchestStepOperator
from tests.airflow_helpers import run_dag, task_states
from tests.orchest_factory import ENV, pipeline_doc, step, write_environment, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow]

PY = ENV  # steps in the python image
SH = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"  # steps in the busybox image
PIPELINE_UUID = "7e1d2c3b-4a59-4687-9a8b-1c2d3e4f5a6b"
PROJECT_UUID = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
NASTY = "$(touch /project-dir/pwned); rm -rf / \"'`;|&"


@pytest.fixture
def env_images(images) -> dict[str, str]:
    return {PY: images["python"], SH: images["busybox"]}


def write_pipeline(root: Path, steps: list[dict], files: dict[str, str],
                   parameters: dict | None = None) -> Pipeline:
    doc = pipeline_doc(steps, parameters=parameters, uuid=PIPELINE_UUID)
    path = write_project(root / "project", doc, files=files)
    return load_pipeline(path, root / "project", check_files=False)


def make_run(root: Path, pipeline: Pipeline, index: int, images: dict[str, str],
             parameters: dict | None = None, env: dict[str, str] | None = None) -> dict:
    """The run's project copy, with its definition over the .orchest file, and its dict."""
    run_dir = root / "runs" / f"run-{index}"
    copy = run_dir / "project"
    shutil.copytree(pipeline.project_dir, copy)
    (copy / pipeline.rel_path).write_text(json.dumps(pipeline.definition(parameters)))
    hand_over(copy, step_owner("", os.geteuid(), os.getegid()))  # as the prepare task does
    return {"index": index, "label": f"run {index}", "run_uuid": str(uuid.uuid4()),
            "project_dir": str(copy), "run_dir": str(run_dir), "images": dict(images),
            "env": env or {}}


def step_dag(dag_id: str, pipeline: Pipeline, runs: list[dict], data_dir: Path,
             **operator_args: Any):
    """``plan`` -> a mapped group per run with one step task per step, wired as the pipeline."""
    from airflow.sdk import DAG, task, task_group

    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:

        @task
        def plan() -> list[dict]:
            return runs

        def pipeline_run(run) -> None:
            tasks = {
                key: OrchestStepOperator(
                    task_id=s.title, pipeline=pipeline, step=s, project_uuid=PROJECT_UUID,
                    run=run, data_dir=str(data_dir), network_mode="none",
                    map_index_template="{{ orchest_run_label }}", **operator_args)
                for key, s in pipeline.steps.items()
            }
            for key, op in tasks.items():
                for parent in pipeline.steps[key].incoming:
                    tasks[parent] >> op

        task_group(group_id="run")(pipeline_run).expand(run=plan())
    return dag


def leftover_containers(client, runs: list[dict]) -> list:
    return [c for run in runs for c in client.containers.list(
        all=True, filters={"label": f"{LABEL_RUN}={run['run_uuid']}"})]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def joined(text: str | list[str] | None) -> str | None:
    """Notebook text fields are a string or a list of lines."""
    return "".join(text) if isinstance(text, list) else text


def test_step_and_pipeline_parameters_with_the_same_name(tmp_path, airflow_home, env_images,
                                                         docker_client):
    code = """\
import json, os, orchest
with open("out.json", "w") as fh:
    json.dump({"pipeline": orchest.get_pipeline_param("size"),
               "step": orchest.get_step_param("size"),
               "cwd": os.getcwd(), "job": os.environ["JOB_VAR"],
               "session": os.environ["ORCHEST_SESSION_UUID"]}, fh)
"""
    pipeline = write_pipeline(tmp_path, [step("gen", "src/gen.py", title="gen",
                                              parameters={"size": "small"})],
                              {"src/gen.py": code}, parameters={"size": 3})
    run = make_run(tmp_path, pipeline, 0, env_images,
                   {"pipeline_parameters": {"size": 5}, "gen": {"size": "large"}},
                   env={"JOB_VAR": "job value", "ORCHEST_SESSION_UUID": "user's"})
    dag_run = run_dag(step_dag("params", pipeline, [run], tmp_path / "data"))
    assert task_states(dag_run)["run.gen[0]"] == "success"
    out = read_json(Path(run["project_dir"]) / "src" / "out.json")
    assert out == {"pipeline": 5, "step": "large", "cwd": "/project-dir/src",
                   "job": "job value", "session": run["run_uuid"]}
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "run.gen")
    assert ti.rendered_map_index == "run 0"
    assert leftover_containers(docker_client, [run]) == []


def test_data_passes_from_parent_to_child_within_one_run_only(tmp_path, airflow_home,
                                                              env_images):
    producer = """\
import orchest
orchest.output({"value": orchest.get_pipeline_param("value")}, name="data")
"""
    consumer = """\
import json, orchest
with open("got.json", "w") as fh:
    json.dump(orchest.get_inputs()["data"], fh)
"""
    pipeline = write_pipeline(
        tmp_path, [step("produce", "produce.py", title="produce"),
                   step("consume", "consume.py", title="consume", incoming=["produce"])],
        {"produce.py": producer, "consume.py": consumer}, parameters={"value": "default"})
    runs = [make_run(tmp_path, pipeline, i, env_images,
                     {"pipeline_parameters": {"value": value}})
            for i, value in enumerate(["first", "second"])]
    dag_run = run_dag(step_dag("data_passing", pipeline, runs, tmp_path / "data"))
    assert set(task_states(dag_run).values()) == {"success"}
    for run, value in zip(runs, ["first", "second"], strict=True):
        copy = Path(run["project_dir"])
        assert read_json(copy / "got.json") == {"value": value}
        outputs = copy / ".orchest" / "pipelines" / PIPELINE_UUID / "data"
        assert sorted(p.name for p in outputs.iterdir()) == ["produce"]


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [],
         "source": "import orchest\nsize = orchest.get_pipeline_param('size')\n"
                   "print('size is', size)"},
        {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [],
         "source": "size * 7"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def test_notebook_runs_in_place_and_keeps_an_html_copy(tmp_path, airflow_home, env_images,
                                                       capfd):
    pipeline = write_pipeline(tmp_path, [step("nb", "nb/Analyse.ipynb", title="analyse")],
                              {"nb/Analyse.ipynb": json.dumps(NOTEBOOK)},
                              parameters={"size": 1})
    run = make_run(tmp_path, pipeline, 0, env_images, {"pipeline_parameters": {"size": 6}})
    dag_run = run_dag(step_dag("notebook", pipeline, [run], tmp_path / "data"))
    assert task_states(dag_run)["run.analyse[0]"] == "success"
    copy = Path(run["project_dir"])
    executed = read_json(copy / "nb" / "Analyse.ipynb")
    texts = [joined(o.get("text") or o.get("data", {}).get("text/plain"))
             for cell in executed["cells"] for o in cell["outputs"]]
    assert texts == ["size is 6\n", "42"]
    assert "size is 6" in (copy / "nb" / "Analyse.html").read_text()
    assert read_json(pipeline.project_dir / "nb" / "Analyse.ipynb") == NOTEBOOK  # untouched
    assert "size is 6" in capfd.readouterr().out
    assert "size is 6" in (copy / step_log_path(PIPELINE_UUID, "nb")).read_text()


def test_failing_step_fails_its_task_with_its_output_and_leaves_no_container(
        tmp_path, airflow_home, env_images, docker_client, capfd):
    pipeline = write_pipeline(
        tmp_path, [step("bad", "bad.sh", title="bad", environment=SH),
                   step("after", "after.sh", title="after", environment=SH, incoming=["bad"])],
        {"bad.sh": "echo marker-out\necho marker-err >&2\nexit 3\n",
         "after.sh": "echo should not run\n"})
    run = make_run(tmp_path, pipeline, 0, env_images)
    dag_run = run_dag(step_dag("failing", pipeline, [run], tmp_path / "data"))
    states = task_states(dag_run)
    assert states["run.bad[0]"] == "failed"
    assert states["run.after[0]"] == "upstream_failed"
    out = capfd.readouterr().out
    assert "marker-out" in out and "marker-err" in out
    assert "Step 'bad' (bad) of run run 0 exited with code 3" in out
    log = (Path(run["project_dir"]) / step_log_path(PIPELINE_UUID, "bad")).read_text()
    # stdout and stderr are two pipes: their relative order is the engine's, not fixed.
    assert sorted(log.splitlines()) == ["marker-err", "marker-out"]
    assert leftover_containers(docker_client, [run]) == []


def test_step_past_its_timeout_is_killed_and_leaves_no_container(
        tmp_path, airflow_home, env_images, docker_client):
    pipeline = write_pipeline(tmp_path, [step("slow", "slow.sh", title="slow", environment=SH)],
                              {"slow.sh": "echo sleeping\nsleep 300\n"})
    run = make_run(tmp_path, pipeline, 0, env_images)
    started = time.monotonic()
    dag_run = run_dag(step_dag("timeout", pipeline, [run], tmp_path / "data",
                               execution_timeout=timedelta(seconds=3)))
    assert task_states(dag_run)["run.slow[0]"] == "failed"
    assert time.monotonic() - started < 60
    assert leftover_containers(docker_client, [run]) == []


def test_on_kill_from_another_thread_removes_the_container(tmp_path, env_images,
                                                           docker_client):
    pipeline = write_pipeline(tmp_path, [step("slow", "slow.sh", title="slow", environment=SH)],
                              {"slow.sh": "sleep 300\n"})
    run = make_run(tmp_path, pipeline, 0, env_images)
    op = OrchestStepOperator(task_id="slow", pipeline=pipeline, step=pipeline.steps["slow"],
                             project_uuid=PROJECT_UUID, run=run,
                             data_dir=str(tmp_path / "data"), network_mode="none")
    failures: list[BaseException] = []

    def execute() -> None:
        try:
            op.execute({})
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 30
    while not docker_client.containers.list(filters={"label": f"{LABEL_RUN}={run['run_uuid']}"}):
        assert time.monotonic() < deadline, "the step container never started"
        time.sleep(0.2)
    op.on_kill()
    worker.join(30)
    assert not worker.is_alive()
    assert failures, "a killed step must fail its task"
    assert leftover_containers(docker_client, [run]) == []


def test_parameter_full_of_shell_syntax_arrives_unchanged(tmp_path, airflow_home, env_images):
    code = """\
import json, os, orchest
with open("seen.json", "w") as fh:
    json.dump([orchest.get_step_param("text"), os.environ["NASTY"]], fh)
"""
    pipeline = write_pipeline(tmp_path, [step("echo", "echo.py", title="echo",
                                              parameters={"text": "plain"})],
                              {"echo.py": code})
    run = make_run(tmp_path, pipeline, 0, env_images, {"echo": {"text": NASTY}},
                   env={"NASTY": NASTY})
    dag_run = run_dag(step_dag("shell_syntax", pipeline, [run], tmp_path / "data"))
    assert task_states(dag_run)["run.echo[0]"] == "success"
    copy = Path(run["project_dir"])
    assert read_json(copy / "seen.json") == [NASTY, NASTY]
    assert not (copy / "pwned").exists()


def test_secret_variables_come_from_airflow_and_are_masked(
        tmp_path, airflow_home, env_images, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ORCHEST_TEST_TOKEN", "tok-7f3a9")
    monkeypatch.setenv("AIRFLOW_CONN_ORCHEST_TEST_DB", "postgres://user:pa%24s-91c2@db:5432/x")
    code = """\
import json, os
with open("secrets.json", "w") as fh:
    json.dump([os.environ["TOKEN"], os.environ["DB_PASSWORD"], os.environ["DB_URI"]], fh)
"""
    pipeline = write_pipeline(tmp_path, [step("use", "use.py", title="use")], {"use.py": code})
    run = make_run(tmp_path, pipeline, 0, env_images)
    run["secret_env"] = {
        "TOKEN": {"airflow_variable": "orchest_test_token"},
        "DB_PASSWORD": {"airflow_connection": "orchest_test_db", "field": "password"},
        "DB_URI": {"airflow_connection": "orchest_test_db"},
    }
    dag_run = run_dag(step_dag("secrets", pipeline, [run], tmp_path / "data"))
    assert task_states(dag_run)["run.use[0]"] == "success"
    token, password, uri = read_json(Path(run["project_dir"]) / "secrets.json")
    assert (token, password) == ("tok-7f3a9", "pa$s-91c2")
    assert uri.startswith("postgres://user:") and uri.endswith("@db:5432/x")
    # Registered with Airflow's masker (the task log shows *** in place of each value);
    # dag.test() prints task logs unmasked, so check the masker itself.
    from airflow.sdk.log import redact

    assert redact(f"token is {token}, db {uri}") == "token is ***, db ***"


def test_frozen_image_survives_the_environment_being_rebuilt(tmp_path, airflow_home, images,
                                                             docker_client):
    root = tmp_path / f"frozen-{uuid.uuid4().hex[:8]}"
    pipeline = write_pipeline(root, [step("which", "which.sh", title="which")],
                              {"which.sh": "cat /version > version.txt\n"})
    project = pipeline.project_dir
    env_folder = write_environment(project, ENV, base_image=images["busybox"])
    uuid_of_project = project_uuid(project.name)
    tag = environment_image(uuid_of_project, ENV)
    job_id = f"test-job-{uuid.uuid4().hex[:8]}"
    try:
        (env_folder / "setup_script.sh").write_text("echo v1 > /version\n")
        assert cli_main(["environments", "build", str(project)]) == 0
        pinned = freeze(docker_client, resolve_images(pipeline, uuid_of_project, {}), job_id)
        assert pinned == {ENV: docker_client.images.get(tag).id}

        (env_folder / "setup_script.sh").write_text("echo v2 > /version\n")
        assert cli_main(["environments", "build", str(project)]) == 0
        assert docker_client.images.get(tag).id != pinned[ENV]

        run = make_run(root, pipeline, 0, pinned)
        dag_run = run_dag(step_dag("frozen", pipeline, [run], root / "data"))
        assert task_states(dag_run)["run.which[0]"] == "success"
        assert (Path(run["project_dir"]) / "version.txt").read_text() == "v1\n"

        assert release(docker_client, job_id)
        with pytest.raises(Exception, match="No such image"):
            docker_client.images.get(pinned[ENV])  # only the job's tag held it
    finally:
        release(docker_client, job_id)
        docker_client.images.remove(tag, force=True)


def test_missing_environment_image_is_a_clear_error(docker_client):
    tag = environment_image("no-such-project", ENV)
    with pytest.raises(OrchestError) as caught:
        freeze(docker_client, {ENV: tag}, "job-x")
    text = str(caught.value)
    assert f"environment {ENV}" in text and tag in text
    assert "airflow-orchest-jobs environments build" in text


def test_missing_interpreter_is_a_clear_error_and_the_log_file_is_kept(
        tmp_path, airflow_home, env_images, images, capfd):
    pipeline = write_pipeline(tmp_path, [step("model", "model.R", title="model")],
                              {"model.R": "print('hi')\n"})
    run = make_run(tmp_path, pipeline, 0, env_images)
    dag_run = run_dag(step_dag("no_rscript", pipeline, [run], tmp_path / "data"))
    assert task_states(dag_run)["run.model[0]"] == "failed"
    message = (f"orchest-runner: the image environment {PY} ({images['python']}) has no "
               "'Rscript' (needed to run /project-dir/model.R)")
    out = capfd.readouterr().out
    assert message in out and "exited with code 127" in out
    log = Path(run["project_dir"]) / step_log_path(PIPELINE_UUID, "model")
    assert message in log.read_text()


def test_unreachable_engine_names_the_url(tmp_path):
    from airflow.sdk.exceptions import AirflowException

    url = f"unix://{tmp_path}/no-docker.sock"
    pipeline = write_pipeline(tmp_path, [step("a", "a.py", title="a")], {"a.py": ""})
    run = make_run(tmp_path, pipeline, 0, {PY: "any"})
    op = OrchestStepOperator(task_id="a", pipeline=pipeline, step=pipeline.steps["a"],
                             project_uuid=PROJECT_UUID, run=run,
                             data_dir=str(tmp_path / "data"), network_mode="none",
                             docker_url=url)
    with pytest.raises(AirflowException, match=f"Docker engine not reachable at {url}"):
        op.execute({})
    with pytest.raises(DockerUnavailable, match="docker_url"):
        docker_client(url)


def test_max_steps_parallelism_holds_steps_of_one_run_back(tmp_path):
    import logging

    from airflow_orchest_jobs.operators.step import _step_slot

    spans: list[tuple[float, float]] = []

    def occupy(limit: int) -> None:
        with _step_slot(str(tmp_path), limit, logging.getLogger("test")):
            start = time.monotonic()
            time.sleep(0.3)
            spans.append((start, time.monotonic()))

    def overlaps(limit: int) -> bool:
        spans.clear()
        workers = [threading.Thread(target=occupy, args=(limit,)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        ordered = sorted(spans)
        return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))

    assert not overlaps(1)
    assert overlaps(3)
