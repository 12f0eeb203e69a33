"""Orchest services beside a pipeline run: the pure specs, then real containers.

The Docker tests keep every byte on loopback: the holder runs with network "none", the
service and a step-like container join its namespace, and the step reaches the service by
the hostname the real SDK (``orchest.get_service``) returns.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.labels import LABEL_JOB, LABEL_RUN, LABEL_SERVICE
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.services import (
    duplicate_port_problems,
    extra_hosts,
    holder_name,
    job_services,
    service_image_key,
    service_image_refs,
    service_specs,
)
from airflow_orchest_jobs.engine.services import (
    ServiceStartError,
    remove_leftovers,
    start_run_services,
    stop_run_services,
)
from tests.orchest_factory import ENV, pipeline_doc, step, write_project

docker = pytest.mark.docker

RUN = "0b9d6b1e-1111-4c4b-9d0a-5f1e2d3c4b5a"
PROJECT = "6f2a0e0c-2222-4c4b-9d0a-5f1e2d3c4b5a"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "orchest" / "projects"


def service(name: str, **fields) -> dict:
    data = {"name": name, "image": f"environment@{ENV}", "scope": ["noninteractive"],
            "ports": [8080], "order": 0}
    data.update(fields)
    return data


def load(tmp_path: Path, services: dict, name: str = "main.orchest"):
    doc = pipeline_doc([step("s1", "a.py")])
    doc["services"] = services
    path = write_project(tmp_path / "proj", doc, name=name)
    return load_pipeline(path, tmp_path / "proj")


# ---- the pure module ------------------------------------------------------------------

def test_only_noninteractive_services_run_in_order_then_name():
    services = {
        "late": service("late", order=5),
        "b": service("b", order=1),
        "a": service("a", order=1),
        "ui": service("ui", scope=["interactive"], order=0),
        "both": service("both", scope=["interactive", "noninteractive"], order=2),
    }
    assert [k for k, _ in job_services(services)] == ["a", "b", "both", "late"]


def test_command_is_one_executable_and_args_split_like_a_shell(tmp_path):
    pipeline = load(tmp_path, {
        "sh": service("sh", command="bash", args="-c 'umask 002 && echo \"a b\"'"),
        "plain": service("plain", ports=[5432], command="", order=1),
    })
    sh, plain = service_specs(pipeline, RUN, PROJECT)
    assert sh.command == ("bash",)
    assert sh.args == ("-c", 'umask 002 && echo "a b"')
    assert plain.command is None and plain.args is None  # the image's entrypoint and cmd


def test_old_files_migrate_entrypoint_to_command(tmp_path):
    """A 1.0.0 file: ``entrypoint`` became ``command``, old ``command`` ``args``."""
    path = FIXTURES / "services-1-0-0" / "main.orchest"
    pipeline = load_pipeline(path, path.parent, check_files=False)
    spec = next(s for s in service_specs(pipeline, RUN, PROJECT) if s.name == "streamlit")
    assert spec.command == ("bash",)
    assert spec.args[0] == "-c" and "streamlit run src/dashboard.py" in spec.args[1]
    assert spec.binds == (("/data", "/data"), ("/project-dir", "/usr/src/app/src"))
    assert spec.env["STREAMLIT_SERVER_BASE_URL_PATH"] == f"pbp-service-streamlit-{RUN}_8501"
    assert spec.image_key == "7c788682-4361-4f71-81f2-92b8ecd9e1c0"


def test_env_service_variables_then_inherited_job_variables_win(tmp_path):
    pipeline = load(tmp_path, {"db": service(
        "db", env_variables={"A": "svc", "B": "svc"}, env_variables_inherit=["A", "C", "Z"],
        binds={"/project-dir": "/src/"})})
    (spec,) = service_specs(pipeline, RUN, PROJECT)
    env = spec.environment({"A": "job", "C": "job-c", "D": "not inherited"})
    assert env["A"] == "job" and env["B"] == "svc" and env["C"] == "job-c"
    assert "D" not in env and "Z" not in env
    assert env["ORCHEST_SESSION_UUID"] == RUN
    assert env["ORCHEST_SESSION_TYPE"] == "noninteractive"
    assert env["ORCHEST_PROJECT_UUID"] == PROJECT
    assert env["ORCHEST_PIPELINE_UUID"] == pipeline.uuid
    assert env["ORCHEST_PIPELINE_PATH"] == "/src/main.orchest"  # where the copy is bound
    assert spec.binds == (("/project-dir", "/src"),)


def test_hostnames_images_and_refs(tmp_path):
    pipeline = load(tmp_path, {
        "web": service("web"),
        "redis": service("redis", image="redis:7", ports=[6379], order=1),
        "ui": service("ui", image="jupyter", scope=["interactive"], ports=[8888], order=2),
    })
    specs = service_specs(pipeline, RUN, PROJECT)
    assert [s.hostname for s in specs] == [f"web-{RUN}", f"redis-{RUN}"]
    assert extra_hosts(specs) == {f"web-{RUN}": "127.0.0.1", f"redis-{RUN}": "127.0.0.1"}
    assert holder_name(RUN) == f"orchest-run-{RUN}"
    assert service_image_key(f"environment@{ENV}") == ENV
    assert [s.image_key for s in specs] == [ENV, "service-image:redis:7"]
    refs = service_image_refs(pipeline.services, lambda env: f"orchest-env-p-{env}:latest")
    assert refs == {ENV: f"orchest-env-p-{ENV}:latest", "service-image:redis:7": "redis:7"}


def test_broken_service_definitions_are_reported_together(tmp_path):
    """Loading the pipeline (validate, the DAG processor) reports them all at once."""
    with pytest.raises(OrchestError) as exc:
        load(tmp_path, {"x": service("x", args="-c 'unclosed", binds={"/etc": "/e"},
                                     ports=["80"])})
    wheres = [p.where for p in exc.value.problems]
    assert wheres == ["services.x.args", "services.x.binds", "services.x.ports"]


def test_two_services_on_one_port_is_one_clear_problem(tmp_path, capsys):
    services = {"api": service("api", ports=[8080, 9000]),
                "web": service("web", ports=[8080], order=1),
                "ui": service("ui", scope=["interactive"], ports=[9000], order=2)}
    doc = pipeline_doc([step("s1", "a.py")])
    doc["services"] = services
    path = write_project(tmp_path / "proj", doc)
    assert main(["validate", str(tmp_path / "proj")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # the interactive-only service never runs in a job
    line = lines[0]
    assert line.startswith(f"{path}: services.web.ports: port 8080")
    assert "'api'" in line and "'web'" in line and "give each service its own port" in line
    assert duplicate_port_problems(str(path), {"api": services["api"]}) == []


# ---- real containers ------------------------------------------------------------------

def _run_labels(client, run_uuid: str) -> list[str]:
    return [c.name for c in client.containers.list(
        all=True, filters={"label": f"{LABEL_RUN}={run_uuid}"})]


@pytest.fixture
def run_setup(tmp_path, images):
    """A project with one ``web`` service (http.server on /data) and a fresh run uuid."""
    run_uuid = str(uuid.uuid4())
    data = tmp_path / "data"
    data.mkdir()
    marker = f"served-by-web-{uuid.uuid4().hex}"
    (data / "file.txt").write_text(marker)
    doc = pipeline_doc([step("s1", "a.py")])
    doc["services"] = {"web": service(
        "web", command="python3", args="-m http.server 8000 --directory /srv",
        binds={"/data": "/srv"}, ports=[8000], env_variables={"WHO": "web"},
        env_variables_inherit=["TOKEN"])}
    path = write_project(tmp_path / "proj", doc)
    pipeline = load_pipeline(path, tmp_path / "proj")
    return {"run_uuid": run_uuid, "data": data, "marker": marker, "pipeline": pipeline,
            "project": tmp_path / "proj", "images": {ENV: images["python"]},
            "job": f"test-services-{uuid.uuid4().hex[:8]}"}


STEP_SCRIPT = textwrap.dedent("""
    import os, urllib.request
    import orchest
    svc = orchest.get_service("web")
    print("interfaces", sorted(os.listdir("/sys/class/net")))
    url = "http://%s:%d/file.txt" % (svc["internal_hostname"], svc["ports"][0])
    print("got", urllib.request.urlopen(url, timeout=10).read().decode())
""")


@docker
def test_step_reaches_service_by_sdk_hostname_on_loopback(docker_client, images, run_setup):
    s = run_setup
    run_uuid = s["run_uuid"]
    specs = service_specs(s["pipeline"], run_uuid, PROJECT)
    holder = start_run_services(
        docker_client, run_uuid, specs, s["images"], "none", s["data"], s["project"],
        {"TOKEN": "t0k", "OTHER": "x"}, s["job"], timeout=30)
    try:
        assert holder == holder_name(run_uuid)
        box = docker_client.containers.get(holder)
        assert box.attrs["HostConfig"]["NetworkMode"] == "none"
        web = docker_client.containers.get(f"{holder}-web")
        assert web.labels == {LABEL_RUN: run_uuid, LABEL_SERVICE: "web", LABEL_JOB: s["job"]}
        env = dict(e.split("=", 1) for e in web.attrs["Config"]["Env"])
        assert env["TOKEN"] == "t0k" and env["WHO"] == "web" and "OTHER" not in env
        out = docker_client.containers.run(
            images["python"], ["python3", "-c", STEP_SCRIPT], remove=True,
            network_mode=f"container:{holder}",
            environment={"ORCHEST_PIPELINE_PATH": "/project-dir/main.orchest",
                         "ORCHEST_SESSION_UUID": run_uuid,
                         "ORCHEST_SESSION_TYPE": "noninteractive",
                         "ORCHEST_PIPELINE_UUID": s["pipeline"].uuid},
            volumes={str(s["project"]): {"bind": "/project-dir", "mode": "ro"}},
        ).decode()
        assert "interfaces ['lo']" in out  # nothing but loopback
        assert f"got {s['marker']}" in out
        assert remove_leftovers(docker_client, s["job"], {run_uuid}) == []
        assert len(_run_labels(docker_client, run_uuid)) == 2
    finally:
        removed = stop_run_services(docker_client, run_uuid, timeout=1)
    assert sorted(removed) == sorted([holder, f"{holder}-web"])
    assert _run_labels(docker_client, run_uuid) == []
    assert stop_run_services(docker_client, run_uuid) == []  # idempotent


def _with_service(s: dict, **fields):
    doc = json.loads(s["pipeline"].path.read_text())
    doc["services"]["web"].update(fields)
    s["pipeline"].path.write_text(json.dumps(doc))
    pipeline = load_pipeline(s["pipeline"].path, s["project"])
    return service_specs(pipeline, s["run_uuid"], PROJECT)


@docker
def test_service_that_exits_fails_with_its_last_log_lines(docker_client, run_setup):
    s = run_setup
    lines = "; ".join(f"echo line-{i}" for i in range(30))
    specs = _with_service(s, command="sh", args=f"-c '{lines}; sleep 0.2; echo boom >&2; exit 3'")
    with pytest.raises(ServiceStartError) as exc:
        start_run_services(docker_client, s["run_uuid"], specs, s["images"], "none",
                           s["data"], s["project"], {}, s["job"], timeout=30)
    message = str(exc.value)
    assert "service 'web'" in message and "exited with code 3" in message
    assert "port 8000" in message and "boom" in message and "line-29" in message
    assert "line-5\n" not in message  # only the last lines
    assert exc.value.service == "web"
    assert _run_labels(docker_client, s["run_uuid"]) == []


@docker
def test_service_that_never_listens_times_out(docker_client, run_setup):
    s = run_setup
    specs = _with_service(s, command="sh", args="-c 'echo waiting-forever; exec sleep 60'")
    with pytest.raises(ServiceStartError) as exc:
        start_run_services(docker_client, s["run_uuid"], specs, s["images"], "none",
                           s["data"], s["project"], {}, s["job"], timeout=1.5)
    message = str(exc.value)
    assert "did not listen on port 8000 within 1.5 s" in message
    assert "waiting-forever" in message
    assert _run_labels(docker_client, s["run_uuid"]) == []


@docker
def test_missing_image_starts_nothing(docker_client, images, run_setup):
    s = run_setup
    specs = service_specs(s["pipeline"], s["run_uuid"], PROJECT)
    with pytest.raises(ServiceStartError, match="no pinned image"):
        start_run_services(docker_client, s["run_uuid"], specs, {"other": "x"}, "none",
                           s["data"], s["project"], {}, s["job"])
    assert _run_labels(docker_client, s["run_uuid"]) == []
    # An image the engine lacks is never pulled: one error, the holder removed again.
    missing = {ENV: "orchest-jobs-missing:none"}
    with pytest.raises(ServiceStartError, match=r"service 'web' .* could not start: .*image"):
        start_run_services(docker_client, s["run_uuid"], specs, missing, "none", s["data"],
                           s["project"], {}, s["job"], holder_image=images["busybox"])
    assert _run_labels(docker_client, s["run_uuid"]) == []


@docker
def test_leftovers_of_a_job_are_removed(docker_client, images, run_setup):
    s = run_setup
    specs = _with_service(s, command="httpd", args="-f -p 8000", binds={})
    refs = {ENV: images["busybox"]}
    start_run_services(docker_client, s["run_uuid"], specs, refs, "none", s["data"],
                       s["project"], {}, s["job"], timeout=20)
    # A retry of the same run replaces its leftovers instead of failing on the names.
    start_run_services(docker_client, s["run_uuid"], specs, refs, "none", s["data"],
                       s["project"], {}, s["job"], timeout=20)
    assert len(_run_labels(docker_client, s["run_uuid"])) == 2
    assert remove_leftovers(docker_client, s["job"], [], timeout=1) == [s["run_uuid"]]
    assert _run_labels(docker_client, s["run_uuid"]) == []
