"""Notebooks run as Orchest's job runner ran them, in real containers of the local images.

Orchest saved every notebook with the kernelspec name ``orchest-kernel-<environment
uuid>``; its runner picked the kernel from the kernelspec's language, skipped cells
tagged ``skip`` and kept an HTML copy. One test goes through Airflow and the step
operator; the others start the runner directly (``docker run`` as the operator does:
runner read-only at /orchest-runner, the project at /project-dir, no network) to watch
exit codes, timings and ``docker stop``. Time bounds only prove that nothing hangs.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import stat
import struct
import time
import uuid
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_orchest_jobs.core.contract import runner_dir, step_log_path
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.plan import hand_over
from airflow_orchest_jobs.core.settings import step_owner
from tests.airflow_helpers import run_dag, task_states
from tests.orchest_factory import ENV, pipeline_doc, step, write_project

docker = pytest.mark.docker

ORCHEST_KERNEL = {"name": f"orchest-kernel-{ENV}", "display_name": "Python 3",
                  "language": "python"}
PIPELINE_UUID = "3c1f6a0e-8d2b-4f47-9e55-0a1b2c3d4e5f"
STEP_UUID = "6b2d4f8a-1c3e-4a5b-8d7f-9e0a1b2c3d4e"
OWNER = step_owner("", os.geteuid(), os.getegid())  # the operator's default step user


def code(source: str, *tags: str, outputs: list | None = None) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8],
            "metadata": {"tags": list(tags)} if tags else {}, "outputs": outputs or [],
            "source": source}


def notebook(*cells: dict, kernelspec: dict | None = None) -> dict:
    return {"cells": list(cells), "metadata": {"kernelspec": kernelspec or ORCHEST_KERNEL},
            "nbformat": 4, "nbformat_minor": 5}


def joined(text: str | list[str] | None) -> str:
    """Notebook text fields are a string or a list of lines."""
    return "".join(text) if isinstance(text, list) else (text or "")


def tiny_png() -> bytes:
    """A 2x2 red PNG, from plain bytes (no imaging library in the image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG_CELL = f"""\
import base64
from IPython.display import Image, display
display(Image(data=base64.b64decode({base64.b64encode(tiny_png()).decode()!r})))
"""


def runner_lines(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if line.startswith("orchest-runner: ")]


# --- the kernel choice (pure) ---------------------------------------------------------

def load_runtime_notebook():
    """The runner's notebook.py as a module (it is a script mounted into containers)."""
    spec = importlib.util.spec_from_file_location("runtime_notebook",
                                                  runner_dir() / "notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("metadata", "installed", "chosen"), [
    ({"kernelspec": ORCHEST_KERNEL}, {"python3": "python"}, "python3"),
    ({"kernelspec": {"name": "orchest-kernel-x", "language": "R"}},
     {"python3": "python", "ir": "R"}, "ir"),
    ({"kernelspec": {"name": "orchest-kernel-x", "language": "julia"}},
     {"python3": "python", "julia-1.10": "julia"}, "julia-1.10"),
    ({"kernelspec": {"name": "py-env"}, "language_info": {"name": "python"}},
     {"python3": "python", "py-env": "python"}, "python3"),
    ({"kernelspec": {"name": "mine", "language": "python"}},
     {"mine": "python", "other": "python"}, "mine"),
    ({"kernelspec": {"name": "bash"}}, {"python3": "python", "bash": "bash"}, "bash"),
    ({"kernelspec": {"name": "orchest-kernel-x"}}, {"python3": "python"}, "python3"),
    ({}, {"python3": "python"}, "python3"),
    ({"kernelspec": {"name": "orchest-kernel-x", "language": "r"}}, {"python3": "python"},
     None),
], ids=["orchest-python", "r-any-case", "julia-any-version", "language-info",
        "own-kernel-of-the-language", "no-language-kernelspec-name", "no-language-default",
        "no-metadata", "language-missing"])
def test_kernel_follows_the_notebook_language_not_its_kernelspec_name(metadata, installed,
                                                                      chosen):
    assert load_runtime_notebook().choose_kernel(metadata, installed) == chosen


# --- through Airflow ----------------------------------------------------------------

@docker
@pytest.mark.airflow
def test_orchest_notebook_runs_skips_tagged_cells_and_keeps_html_with_images(
        tmp_path, airflow_home, images, docker_client, capfd):
    from airflow.sdk import DAG

    from airflow_orchest_jobs.operators.step import OrchestStepOperator

    stale = [{"name": "stdout", "output_type": "stream", "text": "from an old session\n"}]
    nb = notebook(
        code("import orchest\nprint('label is', orchest.get_step_param('label'))"),
        code("open('ran-skip.txt', 'w').write('ran')", "skip", outputs=stale),
        code("open('ran-skip-execution.txt', 'w').write('ran')", "skip-execution"),
        {"cell_type": "markdown", "id": "md", "metadata": {}, "source": "# A plot"},
        code(PNG_CELL),
        code("import os\nos.mkdir('made')\nopen('made/out.txt', 'w').write('x')"),
    )
    doc = pipeline_doc([step(STEP_UUID, "nb/Report.ipynb", title="report",
                             parameters={"label": "default"})], uuid=PIPELINE_UUID)
    path = write_project(tmp_path / "project", doc,
                         files={"nb/Report.ipynb": json.dumps(nb)})
    pipeline = load_pipeline(path, tmp_path / "project", check_files=False)
    copy = tmp_path / "run" / "project"
    shutil.copytree(pipeline.project_dir, copy)
    (copy / pipeline.rel_path).write_text(
        json.dumps(pipeline.definition({STEP_UUID: {"label": "from the job"}})))
    hand_over(copy, OWNER)
    run = {"index": 0, "label": "run 0", "run_uuid": str(uuid.uuid4()),
           "project_dir": str(copy), "run_dir": str(tmp_path / "run"),
           "images": {ENV: images["python"]}, "env": {}}

    with DAG("orchest_notebook", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        OrchestStepOperator(task_id="report", pipeline=pipeline, step=pipeline.steps[STEP_UUID],
                            project_uuid=str(uuid.uuid4()), run=run,
                            data_dir=str(tmp_path / "data"), network_mode="none")
    assert task_states(run_dag(dag)) == {"report": "success"}

    folder = copy / "nb"
    assert not (folder / "ran-skip.txt").exists()
    assert not (folder / "ran-skip-execution.txt").exists()
    executed = json.loads((folder / "Report.ipynb").read_text())
    cells = executed["cells"]
    assert [joined(o.get("text")) for o in cells[0]["outputs"]] == ["label is from the job\n"]
    for skipped, original in zip(cells[1:3], nb["cells"][1:3], strict=True):
        assert joined(skipped["source"]) == original["source"]
        assert skipped["outputs"] == []
    png = joined(cells[4]["outputs"][0]["data"]["image/png"]).replace("\n", "")
    assert base64.b64decode(png) == tiny_png()
    assert executed["metadata"]["kernelspec"]["name"] == ORCHEST_KERNEL["name"]  # as saved

    html = (folder / "Report.html").read_text()
    assert f"data:image/png;base64,{png}" in html
    assert "label is from the job" in html
    for made in (folder / "made", folder / "made" / "out.txt", folder / "Report.html"):
        assert made.stat().st_mode & stat.S_IWGRP, f"{made} is not group-writable"

    out = capfd.readouterr().out
    assert "orchest-runner: cell 2 skipped (tagged 'skip')" in out
    assert "label is from the job" in (copy / step_log_path(PIPELINE_UUID, STEP_UUID)).read_text()


# --- the runner started directly, as the operator starts it --------------------------

def start_runner(docker_client, image: str, project: Path, rel: str,
                 env: dict[str, str] | None = None):
    """``sh /orchest-runner/runner.sh /project-dir/REL`` in a container, detached."""
    from docker.types import Mount

    hand_over(project, OWNER)
    return docker_client.containers.run(
        image, ["/bin/sh", "/orchest-runner/runner.sh", f"/project-dir/{rel}"],
        detach=True, network_mode="none", user=f"{OWNER[0]}:{OWNER[1]}",
        working_dir=os.path.dirname(f"/project-dir/{rel}"),
        environment={"ORCHEST_STEP_UUID": STEP_UUID, "ORCHEST_PIPELINE_UUID": PIPELINE_UUID,
                     "ORCHEST_RUNNER_IMAGE": f"environment {ENV} ({image})", "HOME": "/tmp",
                     **(env or {})},
        mounts=[Mount("/orchest-runner", str(runner_dir()), type="bind", read_only=True),
                Mount("/project-dir", str(project), type="bind"),
                Mount("/tmp", None, type="tmpfs")],
        labels={"orchest-jobs.test": "notebooks"})


class Steps:
    """Step containers started in one test's project folder; removed afterwards."""

    def __init__(self, docker_client, project: Path) -> None:
        self.docker_client = docker_client
        self.project = project
        self.containers: list[Any] = []

    def start(self, image: str, files: dict[str, Any], rel: str,
              env: dict[str, str] | None = None):
        for name, content in files.items():
            target = self.project / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content if isinstance(content, str) else json.dumps(content))
        container = start_runner(self.docker_client, image, self.project, rel, env)
        self.containers.append(container)
        return container

    def run(self, *args: Any, **kwargs: Any) -> tuple[int, str, float]:
        """Run a step to its end: (exit code, its output, seconds it took)."""
        begin = time.monotonic()
        container = self.start(*args, **kwargs)
        status = container.wait(timeout=60)["StatusCode"]
        return status, container.logs().decode(), time.monotonic() - begin


@pytest.fixture
def steps(docker_client, tmp_path):
    steps = Steps(docker_client, tmp_path / "project")
    yield steps
    for container in steps.containers:
        container.remove(force=True)


@docker
def test_notebook_in_a_language_the_image_lacks_fails_fast_naming_the_kernels(
        images, steps):
    nb = notebook(code("print(1)"), kernelspec={
        "name": f"orchest-kernel-{ENV}", "display_name": "R", "language": "R"})
    status, logs, seconds = steps.run(images["python"], {"model.ipynb": nb}, "model.ipynb")
    assert status == 127
    assert seconds < 30
    [line] = runner_lines(logs)
    assert f"kernelspec name 'orchest-kernel-{ENV}', language 'r'" in line
    assert "has python3 (python)" in line and images["python"] in line


@docker
def test_html_that_cannot_be_written_is_only_a_warning(images, steps, tmp_path):
    (tmp_path / "project" / "report.html").mkdir(parents=True)  # in the exporter's way
    status, logs, _ = steps.run(images["python"], {"report.ipynb": notebook(code("6 * 7"))},
                                "report.ipynb")
    assert status == 0, logs
    assert "orchest-runner: warning: could not write /project-dir/report.html" in logs
    executed = json.loads((tmp_path / "project" / "report.ipynb").read_text())
    assert joined(executed["cells"][0]["outputs"][0]["data"]["text/plain"]) == "42"


@docker
def test_kernel_killed_mid_cell_fails_the_step_within_seconds(images, steps, tmp_path):
    nb = notebook(code("print('before', flush=True)"),
                  code("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
                  code("print('never')"))
    status, logs, seconds = steps.run(images["python"], {"die.ipynb": nb}, "die.ipynb")
    assert status == 1
    assert seconds < 30
    failure = runner_lines(logs)[-1]
    assert "the kernel python3 died while running cell 2 of /project-dir/die.ipynb" in failure
    assert f"orchest-kernel-{ENV}" in failure and "has python3 (python)" in failure
    assert "never" not in logs
    executed = json.loads((tmp_path / "project" / "die.ipynb").read_text())
    assert joined(executed["cells"][0]["outputs"][0]["text"]) == "before\n"  # kept


@docker
@pytest.mark.parametrize(("argv", "expected_status", "expected"), [
    (["python3", "-c", "raise SystemExit(3)", "{connection_file}"], 1,
     "the kernel crash could not start for /project-dir/k.ipynb: Kernel died"),
    (["no-such-kernel-program", "{connection_file}"], 127,
     "the kernel crash could not start for /project-dir/k.ipynb, its program is missing"),
], ids=["dies-at-start", "program-missing"])
def test_kernel_that_cannot_start_fails_the_step_with_one_line(
        images, steps, argv, expected_status, expected):
    kernel = {"argv": argv, "display_name": "Crash", "language": "crashlang"}
    nb = notebook(code("1"), kernelspec={"name": "orchest-kernel-x", "language": "crashlang"})
    status, logs, seconds = steps.run(
        images["python"], {"k.ipynb": nb, "share/kernels/crash/kernel.json": kernel},
        "k.ipynb", env={"JUPYTER_PATH": "/project-dir/share"})
    assert status == expected_status
    assert seconds < 30
    failure = runner_lines(logs)[-1]
    assert expected in failure
    assert "crash (crashlang), python3 (python)" in failure
    assert len(runner_lines(logs)) == 2  # "executing ..." and the failure, nothing else


SLEEP_CELL = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)"
IGNORE_TERM = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"


@docker
@pytest.mark.parametrize(("image", "name", "content"), [
    ("python", "slow.ipynb", notebook(code(SLEEP_CELL))),
    ("python", "slow.ipynb", notebook(code(IGNORE_TERM + SLEEP_CELL))),
    ("busybox", "slow.sh", "echo sleeping\nsleep 600\n"),
], ids=["notebook-sleeping", "kernel-ignoring-sigterm", "shell-step-sleeping"])
def test_docker_stop_ends_a_step_promptly_whatever_it_does(images, steps, image, name,
                                                            content):
    container = steps.start(images[image], {name: content}, name)
    deadline = time.monotonic() + 30
    while b"sleeping" not in container.logs():
        assert time.monotonic() < deadline, container.logs().decode()
        time.sleep(0.2)
    begin = time.monotonic()
    container.stop(timeout=5)
    status = container.wait(timeout=30)["StatusCode"]
    assert time.monotonic() - begin < 10
    assert status == 143  # ended by its SIGTERM, not by docker's SIGKILL (137)
    if name.endswith(".ipynb"):
        assert (f"orchest-runner: stopped by SIGTERM in cell 1 of /project-dir/{name}; "
                "killing the kernel") in container.logs().decode()


@docker
def test_files_a_step_creates_are_group_writable(images, steps, tmp_path):
    script = "mkdir made\necho x > made/file\necho x > top\n"
    status, logs, _ = steps.run(images["busybox"], {"make.sh": script}, "make.sh")
    assert status == 0, logs
    project = tmp_path / "project"
    # (The step's log file is the worker's now: tests/airflow/test_run_security.py.)
    for made in (project / "made", project / "made" / "file", project / "top"):
        assert made.stat().st_mode & stat.S_IWGRP, f"{made} is not group-writable"
