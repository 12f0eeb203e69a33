"""The run contract and image resolution, without Docker or Airflow (fast)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.contract import (
    RUNNER_DIR,
    runner_dir,
    stage_runner,
    step_command,
    step_environment,
    step_log_path,
    step_working_dir,
)
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.engine.images import (
    environment_image,
    frozen_repository,
    image_key,
    pinned_reference,
    resolve_images,
)
from tests.orchest_factory import ENV, pipeline_doc, step, write_project

OTHER_ENV = "9c14c977-d5be-4c67-a26c-921f63e0eae3"
NASTY = "$(touch /project-dir/pwned); rm -rf / \"'`;|&"


@pytest.fixture
def pipeline(tmp_path):
    doc = pipeline_doc([
        step("s-nb", "notebooks/Analyse.IPYNB", parameters={"x": NASTY}),
        step("s-data", "/data/scripts/../tools/run.sh", environment=OTHER_ENV),
        step("s-legacy", "legacy.py", environment=None, image="python:3.11"),
    ], uuid="pipe-uuid")
    path = write_project(tmp_path / "proj", doc, name="flows/main.orchest")
    return load_pipeline(path, tmp_path / "proj", check_files=False)


def test_environment_job_variables_first_and_orchest_names_win(pipeline):
    job_env = {"A_VAR": "1", "ORCHEST_STEP_UUID": "user value", "ZED": NASTY}
    env = step_environment(job_env, pipeline=pipeline, step=pipeline.steps["s-nb"],
                           project_uuid="proj-uuid", run_uuid="run-uuid")
    assert list(env)[:2] == ["A_VAR", "ORCHEST_STEP_UUID"]
    assert env == {
        "A_VAR": "1",
        "ZED": NASTY,
        "ORCHEST_STEP_UUID": "s-nb",
        "ORCHEST_PIPELINE_UUID": "pipe-uuid",
        "ORCHEST_PIPELINE_PATH": "/project-dir/flows/main.orchest",
        "ORCHEST_PROJECT_UUID": "proj-uuid",
        "ORCHEST_SESSION_UUID": "run-uuid",
        "ORCHEST_SESSION_TYPE": "noninteractive",
    }


def test_command_runs_the_runner_on_the_step_file_and_never_holds_parameters(pipeline):
    nb, data = pipeline.steps["s-nb"], pipeline.steps["s-data"]
    assert step_command(pipeline, nb) == [
        "/bin/sh", f"{RUNNER_DIR}/runner.sh", "/project-dir/flows/notebooks/Analyse.IPYNB"]
    assert step_command(pipeline, data)[-1] == "/data/tools/run.sh"
    assert NASTY not in json.dumps(step_command(pipeline, nb))
    assert step_working_dir(pipeline, nb) == "/project-dir/flows/notebooks"
    assert step_working_dir(pipeline, data) == "/data/tools"


def test_log_path_is_orchests():
    assert step_log_path("p", "s") == ".orchest/pipelines/p/logs/s.log"


def test_runner_files_ship_with_the_package_and_stage_idempotently(tmp_path):
    assert {p.name for p in runner_dir().iterdir()} >= {"runner.sh", "notebook.py"}
    staged = stage_runner(tmp_path / "runner")
    first = {p.name: p.read_bytes() for p in staged.iterdir()}
    assert first == {n: (runner_dir() / n).read_bytes() for n in ("runner.sh", "notebook.py")}
    stage_runner(tmp_path / "runner")
    assert sorted(p.name for p in staged.iterdir()) == ["notebook.py", "runner.sh"]


def test_runner_is_posix_sh():
    subprocess.run(["sh", "-n", str(runner_dir() / "runner.sh")], check=True)
    text = (runner_dir() / "runner.sh").read_text()
    assert not re.search(r"\[\[|\bfunction\b|\bpipefail\b|\$\{[A-Za-z_]+//", text)


def test_images_setting_wins_by_uuid_then_star_then_the_environment_tag(pipeline):
    plain = resolve_images(pipeline, "P", {})
    assert plain == {ENV: environment_image("P", ENV),
                     OTHER_ENV: f"orchest-env-P-{OTHER_ENV}:latest",
                     "image:python:3.11": "python:3.11"}
    star = resolve_images(pipeline, "P", {"*": "any:1", OTHER_ENV: "other:2"})
    assert star == {ENV: "any:1", OTHER_ENV: "other:2", "image:python:3.11": "python:3.11"}
    assert image_key(pipeline.steps["s-legacy"]) == "image:python:3.11"


def test_frozen_repository_is_a_valid_reference_and_unique_per_job():
    component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    reference = re.compile(rf"{component}(?:/{component})*")
    names = {frozen_repository(j) for j in ("Job", "job", "orchest_job__demo__nightly", "a/b:c")}
    assert len(names) == 4
    assert all(reference.fullmatch(n) for n in names)


class _Image:
    """Test data shaped like docker's Image (attrs and id only)."""

    def __init__(self, digests: list[str]):
        self.attrs = {"RepoDigests": digests}
        self.id = "sha256:" + "1" * 64


def test_pinned_reference_prefers_the_matching_registry_digest():
    digest = "python@sha256:" + "a" * 64
    other = "mirror.local:5000/python@sha256:" + "b" * 64
    assert pinned_reference(_Image([other, digest]), "python:3.11") == digest
    assert pinned_reference(_Image([other]), "mirror.local:5000/python:3") == other
    assert pinned_reference(_Image([]), "orchest-env-x:latest") == "sha256:" + "1" * 64


def test_runtime_folder_holds_no_plugin_code():
    """Mounted into every container: only the runner files (and the package marker)."""
    names = {p.name for p in Path(runner_dir()).iterdir() if p.name != "__pycache__"}
    assert names <= {"__init__.py", "runner.sh", "notebook.py", "README.md"}
