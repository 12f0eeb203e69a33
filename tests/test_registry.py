"""Frozen images by registry digest: a real registry (Debian's ``docker-registry``) on
127.0.0.1, the local engine pushing and pulling (loopback registries are trusted by
default). Freezing pins ``<registry>/orchest-frozen/<job>@sha256:...``; an engine without
the image pulls exactly that; release deletes the manifests; a registry that is down is one
clear error with nothing left behind."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.engine.images import freeze, frozen_repository, release
from airflow_orchest_jobs.engine.registry import Registry, missing_image_message
from tests.deployment import free_port


def test_registry_setting_parsed_and_checked(tmp_path: Path) -> None:
    base = {"projects_dir": str(tmp_path)}
    assert Settings.from_mapping(base).registry == ""
    assert Settings.from_mapping({**base, "registry": " 127.0.0.1:5000/ "}).registry == \
        "127.0.0.1:5000"
    with pytest.raises(OrchestError, match=r"registry.*host\[:port\]"):
        Settings.from_mapping({**base, "registry": "not a registry"})
    assert Registry.parse("127.0.0.1:5000") == Registry("127.0.0.1:5000", "", "http")
    assert Registry.parse("reg.example.com/team/x") == Registry("reg.example.com", "team/x",
                                                                "https")
    assert Registry.parse("http://reg:80/p").repository("orchest-frozen/j") == \
        "reg:80/p/orchest-frozen/j"
    message = missing_image_message("sha256:abc", "environment e", "unix://x.sock")
    assert "[orchest_jobs] registry" in message and "unix://x.sock" in message


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry with deletes enabled on a free loopback port (``host:port``)."""
    if not shutil.which("docker-registry"):
        pytest.fail("docker-registry missing: run scripts/setup.sh")
    folder = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _manifest_status(registry: str, ref: str) -> int:
    repository, _, digest = ref.partition("@")
    name = repository.split("/", 1)[1]
    return requests.head(f"http://{registry}/v2/{name}/manifests/{digest}", timeout=5,
                         headers={"Accept": "application/vnd.docker.distribution.manifest.v2"
                                            "+json"}).status_code


@pytest.mark.docker
def test_freeze_pushes_pins_digest_pull_and_release(docker_client, images, registry) -> None:
    job = f"registry-test-{uuid.uuid4().hex[:6]}@x"
    pinned = freeze(docker_client, {"env-1": images["busybox"]}, job, registry=registry)
    ref = pinned["env-1"]
    assert ref.startswith(f"{registry}/{frozen_repository(job)}@sha256:"), ref
    assert _manifest_status(registry, ref) == 200
    # An engine without the image pulls it by digest: drop the local tag, pull, same image.
    image_id = docker_client.images.get(images["busybox"]).id
    docker_client.images.remove(f"{registry}/{frozen_repository(job)}:env-1")
    docker_client.api.pull(ref)
    assert docker_client.images.get(ref).id == image_id
    removed = release(docker_client, job, registry=registry)
    assert any(r.endswith(ref.partition("@")[2]) for r in removed), removed
    assert _manifest_status(registry, ref) == 404
    assert docker_client.images.get(images["busybox"]).id == image_id  # the source stays


@pytest.mark.docker
def test_registry_down_is_one_clear_error_and_nothing_frozen(docker_client, images) -> None:
    job = f"registry-down-{uuid.uuid4().hex[:6]}@x"
    down = f"127.0.0.1:{free_port()}"
    with pytest.raises(OrchestError) as caught:
        freeze(docker_client, {"env-1": images["busybox"]}, job, registry=down)
    assert len(caught.value.problems) == 1
    text = str(caught.value)
    assert f"registry {down}" in text and "not reachable" in text
    assert "the next run creates the job" in text
    assert not [t for i in docker_client.images.list() for t in i.tags
                if frozen_repository(job) in t]
