"""A pipeline on a TLS-protected Docker engine, reached through a Docker Connection.

A second ``dockerd`` of the test's own (``--tlsverify``; certificates made here with
openssl; its own data root, exec root and pidfile; loopback TCP only; no bridge) gets the
busybox test image (``docker save | docker load``). A Connection of type docker
(``AIRFLOW_CONN_...``) carries the TLS files in its extra, ``[orchest_jobs]
docker_conn_id`` names it: the job freezes its image, runs its step and sweeps its
containers on that engine, and an engine access without the client certificate is
refused with the URL in the message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from airflow_orchest_jobs.engine.clients import DockerUnavailable
from airflow_orchest_jobs.operators.dockerhook import engine_api
from tests.airflow_helpers import run_dag, task_states
from tests.deployment import free_port
from tests.orchest_factory import pipeline_doc, step, write_project
from tests.test_registry import registry  # noqa: F401 - the real registry, a fixture

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

CONN_ID = "orchest_tls_engine"
#: requests lets these win over the engine's CA (docker-py talks HTTPS through requests).
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate signed by it."""
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=orchest-jobs test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = folder / f"{name}.ext"
        ext.write_text(f"extendedKeyUsage={usage}\n"
                       + ("subjectAltName=IP:127.0.0.1\n" if name == "server" else ""))
        _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}")
        _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
                 "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", ext.name,
                 "-out", f"{name}-cert.pem")
    return {"ca": folder / "ca.pem", "cert": folder / "client-cert.pem",
            "key": folder / "client-key.pem", "server_cert": folder / "server-cert.pem",
            "server_key": folder / "server-key.pem"}


def _docker(engine: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """The docker CLI against the TLS engine."""
    return subprocess.run(["docker", "--tlsverify", "--tlscacert", str(engine["ca"]),
                           "--tlscert", str(engine["cert"]), "--tlskey", str(engine["key"]),
                           "-H", engine["url"], *args], capture_output=True, **kwargs)


@pytest.fixture(scope="module")
def tls_engine(images, docker_client) -> Iterator[dict]:
    """A dockerd with ``--tlsverify`` on a loopback port, the busybox image loaded."""
    # Short: the engine's exec root holds unix sockets (about 100 bytes per path at most).
    folder = Path(tempfile.mkdtemp(prefix="aoj-tls-", dir="/tmp"))
    certs = make_certificates(folder)
    port = free_port()
    engine = {**certs, "url": f"tcp://127.0.0.1:{port}", "root": folder / "data"}
    (folder / "daemon.json").write_text("{}\n")
    log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - kept open while it runs
    proc = subprocess.Popen([
        "dockerd", "--config-file", str(folder / "daemon.json"),
        "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"),
        "--pidfile", str(folder / "docker.pid"), "-H", engine["url"], "--tlsverify",
        "--tlscacert", str(certs["ca"]), "--tlscert", str(certs["server_cert"]),
        "--tlskey", str(certs["server_key"]), "--bridge=none", "--iptables=false",
        "--ip-masq=false", "--cgroup-parent", "orchest-jobs-tls-test"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            if proc.poll() is not None or _docker(engine, "version").returncode == 0:
                break
            time.sleep(0.5)
        if proc.poll() is not None or _docker(engine, "version").returncode != 0:
            pytest.fail("the TLS dockerd did not start: "
                        + (folder / "dockerd.log").read_text()[-2000:])
        saved = subprocess.Popen(["docker", "save", images["busybox"]], stdout=subprocess.PIPE)
        loaded = _docker(engine, "load", stdin=saved.stdout)
        assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
        yield engine
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _connection(monkeypatch, engine: dict, **fields) -> None:
    """The Docker Connection (an ``AIRFLOW_CONN_`` variable): the engine's TLS files in its
    extra, ``fields`` (a registry's host, port, login, password) beside them."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
        "conn_type": "docker", **fields,
        "extra": {"tls_ca_cert": str(engine["ca"]), "tls_client_cert": str(engine["cert"]),
                  "tls_client_key": str(engine["key"])}}))


@pytest.fixture
def tls_settings(tls_engine, orchest_settings, images, monkeypatch) -> Settings:
    """[orchest_jobs] pointing at the TLS engine, its files in the Docker Connection."""
    for name in CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    _connection(monkeypatch, tls_engine)
    return orchest_settings(docker_url=tls_engine["url"], docker_conn_id=CONN_ID,
                            environment_images={"*": images["busybox"]})


def test_a_step_runs_on_a_tls_engine_through_a_docker_connection(tls_engine, tls_settings):
    doc = pipeline_doc([step("s1", "hello.sh", title="hello")])
    write_project(tls_settings.projects_dir / "tls", doc,
                  files={"hello.sh": "echo over-tls > /data/tls.txt\necho step done\n"})
    dag_run = run_dag(build_dags(tls_settings)["orchest__tls__main"])
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert (tls_settings.data_dir / "tls.txt").read_text() == "over-tls\n"
    # The step ran on the TLS engine (its data root in the engine record of the try) ...
    records = [r for path in tls_settings.store_dir.rglob("engines/*.json")
               for r in json.loads(path.read_text())]
    assert [r["docker_url"] for r in records] == [tls_engine["url"]]
    assert str(tls_engine["root"]) in records[0]["engine"]
    # ... the job froze its image there, and the run left no container behind.
    tags = _docker(tls_engine, "images", "--format", "{{.Repository}}", text=True).stdout
    assert "orchest-frozen/" in tags
    left = _docker(tls_engine, "ps", "-aq", text=True)
    assert left.returncode == 0 and left.stdout.strip() == ""


def test_without_the_client_certificate_the_engine_is_refused(tls_engine, tls_settings):
    with pytest.raises(DockerUnavailable, match=f"not reachable at {tls_engine['url']}"):
        engine_api(Settings.from_mapping({"docker_url": tls_engine["url"]}), timeout=5)


def test_the_connections_registry_login_and_pushes_go_through_the_tls_engine(
        tls_engine, tls_settings, registry, orchest_settings, images, monkeypatch):  # noqa: F811
    """With ``[orchest_jobs] registry`` and the Connection naming it, the hook logs the TLS
    engine in to that registry (a loopback ``docker-registry``) and the job's image is
    pushed and pinned by digest through that engine."""
    host, _, port = registry.partition(":")
    _connection(monkeypatch, tls_engine, host=host, port=int(port), login="robot",
                password="s3cret")
    settings = orchest_settings(docker_url=tls_engine["url"], docker_conn_id=CONN_ID,
                                environment_images={"*": images["busybox"]}, registry=registry)
    write_project(settings.projects_dir / "tlsreg", pipeline_doc([step("s1", "hello.sh")]),
                  files={"hello.sh": "echo pushed > /data/pushed.txt\n"})
    dag_run = run_dag(build_dags(settings)["orchest__tlsreg__main"])
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert (settings.data_dir / "pushed.txt").read_text() == "pushed\n"
    catalog = requests.get(f"http://{registry}/v2/_catalog", timeout=5).json()
    assert any(r.startswith("orchest-frozen/") for r in catalog["repositories"]), catalog
