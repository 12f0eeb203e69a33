"""Losing a worker, on the local engine: before a step starts, what earlier tries of the
same run and step left is removed (here and on their recorded engines, an unreachable one
skipped); a worker coming back removes exactly its own leftovers. The cluster test
(tests/test_cluster.py) does the same across two engines with a SIGKILLed worker."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

# Other engines are reached through the DockerHook factory, which imports Airflow; Airflow
# sets its logging up when imported: here, before caplog's handler is installed.
from airflow.providers.docker.hooks.docker import DockerHook  # noqa: F401

from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.engine.hosts import (
    LABEL_RUN,
    LABEL_STEP,
    LABEL_WORKER,
    claim_engine,
    engine_identity,
    sweep_worker,
)
from airflow_orchest_jobs.operators.dockerhook import engine_api

pytestmark = pytest.mark.docker


def _connect(url: str):
    """Another engine reached as the step operator reaches it (the DockerHook factory)."""
    return engine_api(Settings.from_mapping({}), url, timeout=5)


def _container(client, image: str, **labels: str) -> str:
    container = client.containers.run(image, ["sleep", "60"], detach=True, labels=labels,
                                      network_mode="none")
    return str(container.id)


def _exists(client, cid: str) -> bool:
    """Whether the container is there. Asked by id: a list of all containers races with
    other tests removing theirs on the shared engine (the end-to-end tier runs two pytest
    runs side by side)."""
    return any(c.id == cid for c in client.containers.list(
        all=True, filters={"id": cid}, ignore_removed=True))


def test_claim_removes_earlier_tries_and_records_this_one(docker_client, images, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    run, step = uuid.uuid4().hex, "step-a"
    left = _container(docker_client, images["busybox"], **{LABEL_RUN: run, LABEL_STEP: step})
    other_step = _container(docker_client, images["busybox"],
                            **{LABEL_RUN: run, LABEL_STEP: "step-b"})
    records = tmp_path / "engines" / f"{step}.json"
    records.parent.mkdir()
    gone = {"try": 1, "engine": "gone|host|/x", "docker_url": f"unix://{tmp_path}/none.sock",
            "worker": "celery@gone"}
    records.write_text(json.dumps([gone]))
    try:
        with caplog.at_level(logging.INFO):
            labels = claim_engine(docker_client.api, "unix://var/run/docker.sock", tmp_path, run,
                                  step, SimpleNamespace(try_number=2), logging.getLogger("test"),
                                  connect=_connect)
        assert not _exists(docker_client, left)
        assert _exists(docker_client, other_step)  # another step of the run is left alone
        assert "not reachable" in caplog.text and "celery@gone" in caplog.text
        written = json.loads(records.read_text())
        assert [r["try"] for r in written] == [1, 2]
        assert written[1]["engine"] == engine_identity(docker_client.api)
        assert set(labels) == {LABEL_WORKER}
    finally:
        docker_client.containers.get(other_step).remove(force=True)


def test_sweep_removes_only_the_workers_own(docker_client, images) -> None:
    mine = _container(docker_client, images["busybox"],
                      **{LABEL_RUN: "r", LABEL_STEP: "s", LABEL_WORKER: "celery@sweep-me"})
    theirs = _container(docker_client, images["busybox"],
                        **{LABEL_RUN: "r", LABEL_STEP: "s", LABEL_WORKER: "celery@other"})
    try:
        # A container made after the worker (re)started is a task it took since: kept.
        assert sweep_worker(docker_client.api, "celery@sweep-me",
                            started=time.time() - 3600) == []
        removed = sweep_worker(docker_client.api, "celery@sweep-me", started=time.time() + 5)
        assert removed == [mine]
        assert _exists(docker_client, theirs)
    finally:
        docker_client.containers.get(theirs).remove(force=True)
