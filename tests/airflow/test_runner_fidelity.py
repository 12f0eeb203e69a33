"""Orchest's runner to the last detail, and environment images that look like Orchest's.

Orchest's run.py ran a ``.py`` step with ``/opt/conda/bin/python`` for ``CONDA_ENV=base``
and ``/opt/conda/envs/$CONDA_ENV/bin/python`` otherwise, and a file without an extension
with bash. The first test runs such steps through Airflow in tiny images made here from
the python test image (a few symlinks under /opt/conda, no network). The second builds
an R and a Python environment with ``environments build --base orchest/base-kernel-*=``
from plain Debian bases and runs an R notebook saved by Orchest that hands data through
the SDK (reticulate on the R side) to a Python step and a Python notebook.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main as cli_main
from airflow_orchest_jobs.core.contract import step_log_path
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.project import project_uuid
from airflow_orchest_jobs.engine.images import environment_image
from airflow_orchest_jobs.engine.orchest_layer import LayerError, orchest_base, parse_bases
from tests.airflow.test_runtime import PIPELINE_UUID, make_run, step_dag
from tests.airflow_helpers import run_dag, task_log, task_states
from tests.conftest import _load_images_module
from tests.orchest_factory import pipeline_doc, step, write_environment, write_project

BASE_ENV = "0b1c2d3e-0000-4000-8000-00000000000b"  # CONDA_ENV=base
MYENV_ENV = "0b1c2d3e-0000-4000-8000-00000000000e"  # CONDA_ENV=myenv
PLAIN_ENV = "0b1c2d3e-0000-4000-8000-00000000000f"  # no conda: python3 from PATH
R_ENV = "d88e7cfa-a9ae-4400-b2fa-bb207befe6a2"
PY_ENV = "5a7d3e2c-1b4f-4c8e-9a6d-0e2f4b6c8d1a"

CONDA_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /opt/conda/bin /opt/conda/envs/myenv/bin \\
 && ln -s /usr/bin/python3 /opt/conda/bin/python \\
 && ln -s /usr/bin/python3 /opt/conda/envs/myenv/bin/python
ENV CONDA_ENV={env}
"""
WHICH_PY = """\
import json, os, sys
with open(os.environ["ORCHEST_STEP_UUID"] + ".json", "w") as fh:
    json.dump({"executable": sys.executable}, fh)
"""
EXTENSIONLESS = """\
printf '{"bash": "%s"}' "$BASH_VERSION" > "$ORCHEST_STEP_UUID.json"
"""


def _build(client, dockerfile: str, repository: str) -> str:
    """A tiny image built from ``dockerfile`` alone (no network), tagged by its content."""
    import hashlib

    tag = f"{repository}:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    data = dockerfile.encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, network_mode="none",
                        rm=True, forcerm=True)
    return tag


def test_orchest_base_names_and_the_base_option(tmp_path, capsys):
    assert orchest_base("orchest/base-kernel-r") == "orchest/base-kernel-r"
    assert orchest_base("docker.io/orchest/base-kernel-py:v2022.04.0") == "orchest/base-kernel-py"
    assert orchest_base("orchestsoftware/custom-base-kernel-r") == "orchest/base-kernel-r"
    assert orchest_base("python:3.11") is None
    assert parse_bases(["orchest/base-kernel-r=my-r:12"]) == {"orchest/base-kernel-r": "my-r:12"}
    with pytest.raises(LayerError, match="--base 'my-r:12': expected ORCHEST_IMAGE=YOUR_IMAGE"):
        parse_bases(["my-r:12"])
    assert cli_main(["environments", "build", str(tmp_path), "--base", "r=my-r:12"]) == 2
    assert capsys.readouterr().err.startswith(
        "--base 'r=my-r:12': expected ORCHEST_IMAGE=YOUR_IMAGE with ORCHEST_IMAGE one of "
        "orchest/base-kernel-py, orchest/base-kernel-py-gpu, orchest/base-kernel-r, ")


@pytest.mark.docker
@pytest.mark.airflow
def test_each_file_runs_with_the_program_orchest_chose(tmp_path, airflow_home, images,
                                                       docker_client):
    conda_base = _build(docker_client, CONDA_DOCKERFILE.format(base=images["python"], env="base"),
                        "orchest-jobs-test-conda")
    conda_myenv = _build(docker_client, CONDA_DOCKERFILE.format(base=images["python"],
                                                                env="myenv"),
                         "orchest-jobs-test-conda")
    doc = pipeline_doc([
        step("base", "which.py", title="base", environment=BASE_ENV),
        step("myenv", "which.py", title="myenv", environment=MYENV_ENV),
        step("plain", "which.py", title="plain", environment=PLAIN_ENV),
        step("shell", "bin/run", title="shell", environment=PLAIN_ENV),
    ], uuid=PIPELINE_UUID)
    path = write_project(tmp_path / "project", doc, environment=False,
                         files={"which.py": WHICH_PY, "bin/run": EXTENSIONLESS})
    pipeline = load_pipeline(path, tmp_path / "project", check_files=False)
    env_images = {BASE_ENV: conda_base, MYENV_ENV: conda_myenv, PLAIN_ENV: images["python"]}
    # Run 1 names a conda env its images lack (a job variable overrides the image's).
    runs = [make_run(tmp_path, pipeline, 0, env_images),
            make_run(tmp_path, pipeline, 1, env_images, env={"CONDA_ENV": "nope"})]
    dag_run = run_dag(step_dag("runner_programs", pipeline, runs, tmp_path / "data"))
    states = task_states(dag_run)

    assert [states[f"run.{s}[0]"] for s in ("base", "myenv", "plain", "shell")] == [
        "success"] * 4
    copy = Path(runs[0]["project_dir"])
    ran = {s: json.loads((copy / (f"bin/{s}.json" if s == "shell" else f"{s}.json"))
                         .read_text()) for s in ("base", "myenv", "plain", "shell")}
    assert ran["base"]["executable"] == "/opt/conda/bin/python"
    assert ran["myenv"]["executable"] == "/opt/conda/envs/myenv/bin/python"
    assert ran["plain"]["executable"] == "/usr/bin/python3"
    assert ran["shell"]["bash"].startswith("5.")  # $BASH_VERSION: bash ran it, not sh

    # Fail-fast skips the other once one has failed.
    failed = [s for s in ("base", "myenv") if states[f"run.{s}[1]"] == "failed"]
    assert failed
    for name in failed:
        env_uuid, image = ((BASE_ENV, conda_base) if name == "base"
                           else (MYENV_ENV, conda_myenv))
        log = (Path(runs[1]["project_dir"]) / step_log_path(PIPELINE_UUID, name)).read_text()
        assert (f"orchest-runner: the image environment {env_uuid} ({image}) has no "
                "/opt/conda/envs/nope/bin/python (Orchest runs .py steps with the Python of "
                "the conda env CONDA_ENV=nope names, needed to run /project-dir/which.py)"
                ) in log
    # An image without /opt/conda ignores CONDA_ENV: python3 from PATH, as any image.
    if states["run.plain[1]"] == "success":  # fail-fast may stop it first
        plain = json.loads((Path(runs[1]["project_dir"]) / "plain.json").read_text())
        assert plain["executable"] == "/usr/bin/python3"


# An R notebook as Orchest saved it: kernelspec renamed to orchest-kernel-<env uuid>,
# the SDK through reticulate as Orchest's docs showed ("which python" finds the env's).
R_NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "outputs": [],
         "source": ["library(reticulate)\n",
                    "python_path <- system(\"which python\", intern=TRUE)\n",
                    "use_python(python_path)\n",
                    "orchest <- import(\"orchest\")"]},
        {"cell_type": "code", "execution_count": 2, "id": "c2", "metadata": {}, "outputs": [],
         "source": ["numbers <- c(1, 2, 3) * 2\n",
                    "orchest$transfer$output(list(numbers = numbers, language = \"R\",\n",
                    "    python = python_path, conda_env = Sys.getenv(\"CONDA_ENV\")),\n",
                    "    name = \"from-r\")\n",
                    "cat(\"sent\", numbers, \"\\n\")"]},
    ],
    "metadata": {"kernelspec": {"display_name": "R", "language": "R",
                                "name": f"orchest-kernel-{R_ENV}"},
                 "language_info": {"name": "R"}},
    "nbformat": 4, "nbformat_minor": 4,
}
USE_PY = """\
import json, sys, orchest
with open("got.json", "w") as fh:
    json.dump({"data": orchest.get_inputs()["from-r"], "executable": sys.executable}, fh)
"""
# A Python notebook saved by Orchest in the Python environment: its kernel is the
# python3 of /opt/conda, as in Orchest's images.
PY_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "p1", "metadata": {},
               "outputs": [],
               "source": "import json, sys, orchest\n"
                         "with open('nb.json', 'w') as fh:\n"
                         "    json.dump({'numbers': orchest.get_inputs()['from-r']['numbers'],"
                         " 'kernel': sys.executable}, fh)"}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                "name": f"orchest-kernel-{PY_ENV}"}},
    "nbformat": 4, "nbformat_minor": 5,
}
# Runs after the layer (its python and SDK are there) as Orchest ran it: bash, in the
# project copy.
R_SETUP = """\
#!/bin/bash
set -e
python -c 'import orchest' && Rscript -e 'cat(R.version$major, "\\n")' > /opt/conda/setup-ran
"""


@pytest.mark.docker
@pytest.mark.airflow
def test_r_notebook_passes_data_to_python_in_images_built_like_orchests(
        tmp_path, airflow_home, docker_client, capsys):
    module = _load_images_module()
    r_base, debian = module.r_base_image(docker_client), module.debian_image(docker_client)
    project = tmp_path / "r-python-mix"  # a fixed name: the same tags (and cache) each time
    doc = pipeline_doc([
        step("model", "model.ipynb", title="model", environment=R_ENV,
             kernel={"name": "r", "display_name": "R"}),
        step("use", "use.py", title="use", environment=PY_ENV, incoming=["model"]),
        step("report", "report.ipynb", title="report", environment=PY_ENV, incoming=["model"]),
    ], uuid=PIPELINE_UUID)
    path = write_project(project, doc, environment=False,
                         files={"model.ipynb": json.dumps(R_NOTEBOOK), "use.py": USE_PY,
                                "report.ipynb": json.dumps(PY_NOTEBOOK)})
    write_environment(project, R_ENV, base_image="orchest/base-kernel-r", language="r")
    (project / ".orchest/environments" / R_ENV / "setup_script.sh").write_text(R_SETUP)
    write_environment(project, PY_ENV, base_image="orchest/base-kernel-py:v2022.04.0")

    # A base without R cannot carry base-kernel-r's layout: one line says what it lacks.
    status = cli_main(["environments", "build", str(project),
                       "--base", f"orchest/base-kernel-r={debian}",
                       "--base", f"orchest/base-kernel-py={debian}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert lines[-1] == (
        f"{project}/.orchest/environments/{R_ENV}/properties.json: base_image: "
        f"orchest/base-kernel-r mapped to {debian} (--base): the base image {debian} has no "
        "Rscript: orchest/base-kernel-r needs R (Debian/Ubuntu: r-base-core, "
        "r-cran-irkernel, r-cran-reticulate); add it to "
        f"{debian}, or map orchest/base-kernel-r to another image (--base NAME=IMAGE)")

    status = cli_main(["environments", "build", str(project),
                       "--base", f"orchest/base-kernel-r={r_base}",
                       "--base", f"orchest/base-kernel-py={debian}"])
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    uuid = project_uuid(project.name)
    tags = {R_ENV: environment_image(uuid, R_ENV), PY_ENV: environment_image(uuid, PY_ENV)}
    assert f"{R_ENV}: {tags[R_ENV]}" in out.out and f"{PY_ENV}: {tags[PY_ENV]}" in out.out
    r_image = docker_client.images.get(tags[R_ENV])
    env = dict(item.split("=", 1) for item in r_image.attrs["Config"]["Env"])
    assert env["CONDA_ENV"] == "base" and env["JUPYTER_PATH"] == "/opt/conda/share/jupyter"
    assert env["PATH"].startswith("/opt/conda/bin:")

    pipeline = load_pipeline(path, project, check_files=False)
    run = make_run(tmp_path, pipeline, 0, tags)
    dag_run = run_dag(step_dag("r_python_mix", pipeline, [run], tmp_path / "data"))
    states = task_states(dag_run)
    assert states == {"plan": "success", "run.model[0]": "success", "run.use[0]": "success",
                      "run.report[0]": "success"}, task_log(dag_run, "run.model", 0)[-3000:]

    copy = Path(run["project_dir"])
    got = json.loads((copy / "got.json").read_text())
    assert got == {"data": {"numbers": [2.0, 4.0, 6.0], "language": "R",
                            "python": "/opt/conda/bin/python", "conda_env": "base"},
                   "executable": "/opt/conda/bin/python"}
    assert json.loads((copy / "nb.json").read_text()) == {
        "numbers": [2.0, 4.0, 6.0], "kernel": "/opt/conda/bin/python"}
    executed = json.loads((copy / "model.ipynb").read_text())
    assert executed["metadata"]["kernelspec"]["name"] == f"orchest-kernel-{R_ENV}"
    assert "sent 2 4 6" in json.dumps(executed["cells"][1]["outputs"])
    assert (copy / "model.html").is_file()
    model_log = (copy / step_log_path(PIPELINE_UUID, "model")).read_text()
    assert "with kernel ir (kernelspec name" in model_log
    ran_setup = docker_client.containers.run(tags[R_ENV], ["cat", "/opt/conda/setup-ran"],
                                             network_mode="none", remove=True)
    assert ran_setup.decode().strip() == "4"
