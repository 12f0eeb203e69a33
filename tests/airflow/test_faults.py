"""Faults with the real engine: a killed container, an engine that goes away, a bad store."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from tests.airflow_helpers import run_dag, task_states
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

SLOW_STEP = """\
import time, orchest
if orchest.get_pipeline_param("slow"):
    print("sleeping", flush=True)
    time.sleep(120)
print("done")
"""


@pytest.fixture
def settings(orchest_settings, images):
    return orchest_settings(environment_images={"*": images["python"]})


def _project(settings: Settings, grid: dict | None = None, job: dict | None = None) -> Path:
    doc = pipeline_doc([step("s1", "work.py", title="work")], parameters={"slow": False},
                       uuid="fault-pipeline")
    root = settings.projects_dir / "faults"
    write_project(root, doc, files={"work.py": SLOW_STEP}, parameters=grid)
    if job is not None:
        (root / "job.job.json").write_text(json.dumps(job))
    return root


def _run_while(dag, watcher):
    """Run ``dag`` while ``watcher`` (the fault) acts from another thread."""
    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    try:
        return run_dag(dag)
    finally:
        thread.join(5)


def _containers(client, pipeline_uuid="fault-pipeline", running_only=False):
    return client.containers.list(all=not running_only, filters={
        "label": f"orchest-jobs.pipeline-uuid={pipeline_uuid}"})


def test_a_container_killed_from_outside_fails_only_its_run(settings, docker_client):
    _project(settings, grid={"pipeline_parameters": {"slow": [True, False]}})
    dag = build_dags(settings)["orchest__faults__main"]
    killed: list[str] = []

    def killer() -> None:
        import docker.errors

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for container in _containers(docker_client, running_only=True):
                try:  # the other run's container may finish and go at any moment
                    if "sleeping" in container.logs().decode():
                        container.kill()
                        killed.append(container.id)
                except docker.errors.APIError:
                    continue
            time.sleep(0.2)

    dag_run = _run_while(dag, killer)
    states = task_states(dag_run)
    assert killed, "the slow step never started"
    assert str(dag_run.state) == "failed"
    assert states["pipeline_run.work[0]"] == "failed"
    assert states["pipeline_run.work[1]"] == "success"
    assert _containers(docker_client) == []


class EngineProxy:
    """A unix socket in front of the Docker engine that can be stopped and started."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock"):
        self.path, self.target = path, target
        self.server: socket.socket | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.path))
        self.server.listen(16)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.path.unlink(missing_ok=True)

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_engine_gone_then_back_between_retries(settings, tmp_path, monkeypatch):
    from airflow.utils.session import create_session

    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__DOCKER_URL", f"unix://{proxy.path}")
    _project(settings, job={"pipeline": "main.orchest"})
    settings = Settings.from_environment()
    dag = build_dags(settings)["orchest_job__faults__job"]
    work = dag.task_dict["pipeline_run.work"]
    work.retries, work.retry_delay = 1, timedelta(seconds=1)  # as default_args would
    first = run_dag(dag)  # creates the job (freezing needs the engine)
    assert str(first.state) == "success", task_states(first)

    proxy.stop()  # the engine is gone when the second run's step starts
    restarted: list[float] = []

    def restart_after_first_failure() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with create_session() as session:
                from airflow.models.taskinstance import TaskInstance

                ti = session.query(TaskInstance).filter_by(
                    dag_id=dag.dag_id, task_id="pipeline_run.work").filter(
                    TaskInstance.run_id != first.run_id).one_or_none()
                if ti is not None and str(ti.state) == "up_for_retry":
                    proxy.start()
                    restarted.append(time.monotonic())
                    return
            time.sleep(0.3)

    second = _run_while(dag, restart_after_first_failure)
    proxy.stop()
    assert restarted, "the step never failed while the engine was away"
    assert str(second.state) == "success", task_states(second)


@pytest.fixture
def tiny_mount(tmp_path):
    """A folder on a mounted tmpfs; yields a function (options) -> Path."""
    mounted: list[Path] = []

    def make(options: str) -> Path:
        path = tmp_path / f"mnt{len(mounted)}"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       check=True)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize(("options", "expected"), [
    ("size=64k", "No space left on device"),
    ("ro", "Read-only file system"),
])
def test_full_or_read_only_store_is_a_clear_error(settings, tiny_mount, monkeypatch, capfd,
                                                  options, expected):
    store = tiny_mount(options)
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(store))
    project = _project(settings)
    (project / "big.bin").write_bytes(os.urandom(200_000))
    dag_run = run_dag(build_dags(Settings.from_environment())["orchest__faults__main"])
    out = capfd.readouterr().out
    assert task_states(dag_run)["snapshot"] == "failed"
    assert expected in out and str(store) in out
    assert "[orchest_jobs] store_dir" in out
