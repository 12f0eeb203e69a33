"""``airflow-orchest-jobs doctor`` against real things: the local Docker engine, real
folders with real owners, a real registry (Debian's ``docker-registry``) and a closed port.

Each deployment fault is made for real (not simulated in the checks) and must give its
own ``FAIL`` line with the fix, and exit 1; a healthy deployment exits 0. The result
model and its rendering are tested without any of that at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_orchest_jobs.core import doctor as report
from tests.deployment import free_port
from tests.test_registry import registry  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "projects" / "weather-report"
#: The example under a name of its own: its environment's tag (orchest-env-<uuid of the
#: name>-...) is then one nobody builds (the demo builds the example's).
PROJECT = "doctor-weather"
NOBODY = 65534


@pytest.fixture
def site() -> Iterator[Path]:
    """A deployment's folders the step user (nobody) may pass through: projects (the
    example project), store, data (the step user's, as the plugin makes it)."""
    root = Path(tempfile.mkdtemp(prefix="aoj-doctor-"))
    root.chmod(0o755)
    shutil.copytree(EXAMPLE, root / "projects" / PROJECT)
    (root / "store").mkdir()
    (root / "data").mkdir()
    os.chown(root / "data", NOBODY, NOBODY)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def doctor(site: Path, images: dict[str, str], *args: str, plugins: Path | None = None,
           **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a deployment would: settings from AIRFLOW__ORCHEST_JOBS__*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__ORCHEST_JOBS")}
    if plugins is not None:
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins)
    values = {"projects_dir": str(site / "projects"), "store_dir": str(site / "store"),
              "data_dir": str(site / "data"), "network_mode": "none",
              "environment_images": json.dumps({"*": images["python"]}), **settings}
    env.update({f"AIRFLOW__ORCHEST_JOBS__{k.upper()}": v for k, v in values.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "airflow_orchest_jobs.cli", "doctor", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def fail_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("FAIL")]


def no_doctor_leftovers(site: Path, docker_client) -> None:
    assert not list((site / "store").glob(".orchest-jobs-doctor*"))
    assert not list((site / "data").glob(".orchest-jobs-doctor*"))
    assert not docker_client.containers.list(all=True, filters={"label": "orchest-jobs.doctor"})
    assert not docker_client.images.list(filters={"label": "orchest-jobs.doctor"})


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="switches to the step user: run as root, as CI")
def test_a_healthy_deployment_with_a_registry_exits_0(site, images, docker_client,
                                                        registry):  # noqa: F811
    done = doctor(site, images, registry=registry)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not fail_lines(done)
    out = done.stdout
    assert f"projects_dir = {site / 'projects'}" in out  # the effective settings
    assert "OK    engine: unix://var/run/docker.sock: Docker " in out and " API 1." in out
    assert "OK    plugin: orchest_jobs loaded once" in out
    assert "OK    data_dir: the step user nobody (65534:65534) can create" in out
    assert "OK    store: the step user nobody" in out
    assert "OK    store locks: flock and atomic rename work across processes" in out
    assert (f"OK    image {PROJECT}/Python 3: {images['python']} has python3 and "
            "orchest, nbclient, ipykernel") in out
    assert f"OK    registry: http://{registry} answers and accepted a push" in out
    assert "OK    projects: 2 DAG(s)" in out
    assert out.rstrip().endswith("doctor: all is well")
    no_doctor_leftovers(site, docker_client)
    document = json.loads(doctor(site, images, "--json").stdout)
    assert document["ok"] is True
    assert {c["name"]: c["status"] for c in document["checks"]}["registry"] == "skip"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make root-owned folders")
def test_each_fault_gives_its_line_and_exit_1(site, images, docker_client, tmp_path):
    # The engine's socket is absent.
    done = doctor(site, images, docker_url=f"unix://{tmp_path}/missing.sock")
    assert done.returncode == 1
    assert [line.split(":")[0] for line in fail_lines(done)] == ["FAIL  engine"]
    assert f"Docker engine not reachable at unix://{tmp_path}/missing.sock" in done.stdout
    assert "-- fix: start Docker there, or point [orchest_jobs] docker_url" in done.stdout
    assert "SKIP  images: the engine is not reachable" in done.stdout

    # data_dir owned by root, mode 700, while steps run as nobody.
    data = tmp_path / "rootdata"
    data.mkdir(mode=0o700)
    done = doctor(site, images, data_dir=str(data))
    assert done.returncode == 1
    [line] = fail_lines(done)
    assert line.startswith(f"FAIL  data_dir: the step user nobody (65534:65534) cannot "
                           f"create files in {data} (")
    assert "Permission denied" in line and "owned by 0:0, mode 700" in line
    assert f"-- fix: chown 65534:65534 {data}" in line

    # An environment with no image (nothing mapped, never built).
    done = doctor(site, images, environment_images="{}")
    assert done.returncode == 1
    [line] = fail_lines(done)
    assert line.startswith(f"FAIL  image {PROJECT}/Python 3: no image orchest-env-")
    assert (f"-- fix: build it with `airflow-orchest-jobs environments build "
            f"{site / 'projects' / PROJECT}`") in line

    # An image without python3 (busybox) for the environment.
    done = doctor(site, images, environment_images=json.dumps({"*": images["busybox"]}))
    assert done.returncode == 1
    [line] = fail_lines(done)
    assert f"FAIL  image {PROJECT}/Python 3: {images['busybox']} has no python3" in line

    # The registry is down: a closed port on 127.0.0.1.
    port = free_port()
    done = doctor(site, images, registry=f"127.0.0.1:{port}")
    assert done.returncode == 1
    [line] = fail_lines(done)
    assert line.startswith(f"FAIL  registry: not reachable at http://127.0.0.1:{port} (")
    assert "Connection refused" in line and "-- fix: start the registry" in line

    # An invalid pipeline in a second project: its line, the other project still checked.
    broken = site / "projects" / "broken"
    broken.mkdir()
    (broken / "main.orchest").write_text('{"version": "1.0.0", "steps": ')
    done = doctor(site, images)
    assert done.returncode == 1
    [line] = fail_lines(done)
    assert line.startswith(f"FAIL  project file {broken / 'main.orchest'}: ")
    assert "validate PATH" in line
    assert f"OK    image {PROJECT}/Python 3" in done.stdout
    assert json.loads(doctor(site, images, "--json").stdout)["ok"] is False
    broken.joinpath("main.orchest").unlink()

    # A copy of the plugin in Airflow's plugins folder, beside the installed package.
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "orchest_copy.py").write_text(
        "from airflow_orchest_jobs.plugin import OrchestJobsPlugin  # noqa: F401\n")
    done = doctor(site, images, plugins=plugins)
    assert done.returncode == 1
    [line] = fail_lines(done)
    assert line.startswith("FAIL  plugin: registered 2 times: ")
    assert "orchest_copy.py" in line and "remove any copy of it from the plugins" in line
    # Airflow logs the duplicate on stdout: --json keeps stdout pure JSON all the same.
    document = json.loads(doctor(site, images, "--json", plugins=plugins).stdout)
    assert [c["name"] for c in document["checks"] if c["status"] == "fail"] == ["plugin"]
    no_doctor_leftovers(site, docker_client)


def test_result_model_lines_json_and_masking():
    checks = [report.ok("engine", "up"), report.fail("registry", "down", "start it"),
              report.Check("images", report.Status.SKIP, "no engine", "unused")]
    assert checks[1].line() == "FAIL  registry: down -- fix: start it"
    assert checks[2].line() == "SKIP  images: no engine"
    assert report.exit_code(checks) == 1 and report.exit_code(checks[:1]) == 0
    settings = {"docker_url": "tcp://me:hunter2@docker:2376", "webhook_secret": "s3",
                "registry": ""}
    text = report.render_text(checks, settings)
    assert "hunter2" not in text and "s3" not in text
    assert "docker_url = tcp://me:***@docker:2376" in text
    assert text.endswith("doctor: 1 check(s) failed\n")
    document = json.loads(report.render_json(checks, settings))
    assert document["ok"] is False and document["settings"]["webhook_secret"] == "***"
    assert document["checks"][1] == {"name": "registry", "status": "fail", "message": "down",
                                     "fix": "start it"}
    assert report.mask_value("password", "") == ""
