"""The upstream interfaces listed in ``compat.UPSTREAM`` still exist as used, and no module
imports a non-public Airflow module that is not listed there. An upgrade of Airflow, the
docker provider or docker-py that changes one fails here."""

from __future__ import annotations

import ast
from functools import cached_property
from pathlib import Path

import pytest

from airflow_orchest_jobs.compat import PUBLIC_AIRFLOW, UPSTREAM, parameters_of
from tests.conftest import REPO

SRC = REPO / "src" / "airflow_orchest_jobs"


@pytest.mark.parametrize("entry", UPSTREAM, ids=lambda e: f"{e.module}.{e.name}")
def test_each_listed_upstream_name_exists_with_its_parameters(entry) -> None:
    found = entry.resolve()
    if entry.parameters:
        assert parameters_of(found)[:len(entry.parameters)] == entry.parameters, (
            f"{entry.module}.{entry.name} changed: {entry.used_by} relies on it ({entry.why})")


def test_the_step_operator_can_replace_the_providers_hook() -> None:
    """DockerOperator.hook is a cached_property and cli reads hook.api_client."""
    import inspect

    from airflow.providers.docker.operators.docker import DockerOperator

    assert isinstance(inspect.getattr_static(DockerOperator, "hook"), cached_property)
    sentinel = object()

    class Probe(DockerOperator):
        @cached_property
        def hook(self):  # type: ignore[override]
            return type("Hook", (), {"api_client": sentinel})()

    assert Probe(task_id="probe", image="x").cli is sentinel


def test_docker_clients_object_api_runs_on_the_given_low_level_client() -> None:
    import docker

    from airflow_orchest_jobs.engine.clients import high_level

    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    client = high_level(api)
    assert client.api is api and client.images.client.api is api


def _airflow_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each Airflow import; name "" for a whole module (``import
    airflow.x``, ``from airflow import x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "airflow":
            found += [(f"airflow.{alias.name}", "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow."):
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("airflow")]
    return found


def _public(module: str, name: str) -> bool:
    for entry in PUBLIC_AIRFLOW:
        prefix, _, only = entry.partition(":")
        if (module == prefix or module.startswith(prefix + ".")) and (not only or name == only):
            return True
    return False


def test_every_non_public_airflow_import_is_listed() -> None:
    listed = {(e.module, e.name.split(".")[0]) for e in UPSTREAM}
    modules = {e.module for e in UPSTREAM}
    unlisted = sorted(
        f"{path.relative_to(SRC)}: from {module} import {name or '(the module)'}"
        for path in SRC.rglob("*.py") for module, name in _airflow_imports(path)
        if not _public(module, name)
        and ((module, name) not in listed if name else module not in modules))
    assert not unlisted, "list these in compat.UPSTREAM (with why) or use a public API:\n" + \
        "\n".join(unlisted)
