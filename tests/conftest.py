"""Shared test setup: a temporary AIRFLOW_HOME set before anything imports Airflow.

Fixtures here are the real components: an ``airflow db migrate``-d SQLite home, the
local Docker engine and locally built images (see ``scripts/images.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: The session's real Airflow deployment (fixture ``deployment``), started on first use.
pytest_plugins = ["tests.postgres", "tests.deployment"]

REPO = Path(__file__).resolve().parent.parent
#: The optional external Orchest corpus (test_corpus.py): $ORCHEST_CORPUS, else
#: ../shared/orchest-corpus beside the repository. tests/fixtures/orchest covers its shapes.
CORPUS_ENV = "ORCHEST_CORPUS"
CORPUS = Path(os.environ.get(CORPUS_ENV) or REPO.parent / "shared" / "orchest-corpus")
CORPUS = CORPUS.expanduser().absolute()

_HOME = Path(tempfile.mkdtemp(prefix="aoj-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__ORCHEST_JOBS__NETWORK_MODE"] = "none"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """An Airflow home with a migrated SQLite database (``airflow db migrate``)."""
    marker = _HOME / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.touch()
    return _HOME


def _load_images_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("aoj_images", REPO / "scripts" / "images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def docker_client():
    """The local Docker engine; a clear failure (not a skip) when it is not running."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(
            f"Docker engine not reachable ({exc}); start it as .ci/run does "
            "(dockerd --bridge=none --iptables=false --ip-masq=false)"
        )
    return client


@pytest.fixture(scope="session")
def images(docker_client) -> dict[str, str]:
    """Locally built test images, cached by content: {"python": tag, "busybox": tag}."""
    return _load_images_module().ensure_all(docker_client)


def pytest_terminal_summary(terminalreporter):
    """What the session deployment used (CPU per component), and one plain line when the
    external corpus was absent and its tests were skipped."""
    from tests.deployment import SUMMARY

    for line in SUMMARY:
        terminalreporter.write_line(line)
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if r.nodeid.split("::")[0].endswith("test_corpus.py")]
    if skipped and not CORPUS.is_dir():
        where = (f"from ${CORPUS_ENV}" if os.environ.get(CORPUS_ENV) else "the default, "
                 f"../shared/orchest-corpus beside the repository; set ${CORPUS_ENV} to look "
                 "elsewhere")
        terminalreporter.write_line(
            f"external Orchest corpus not found at {CORPUS} ({where}): {len(skipped)} corpus "
            "test(s) skipped; tests/fixtures/orchest covers every shape", yellow=True)


#: Where the unit tier's tests live (those of them without Docker or Airflow markers).
UNIT_FOLDERS = ("tests/core/", "tests/views/")
HEAVY_MARKERS = {"docker", "airflow", "cluster"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The tiers scripts/test runs: tests/test_cluster.py needs the multi-host deployment
    (marker ``cluster``); the tests in tests/core and tests/views that need neither Docker
    nor Airflow are the ``unit`` tier. The end-to-end tier runs the tests that use the
    session deployment (marker ``deployment``, given here from the fixtures they use) and
    the others in two processes side by side."""
    for item in items:
        if item.nodeid.startswith("tests/test_cluster.py"):
            item.add_marker(pytest.mark.cluster)
        elif item.nodeid.startswith(UNIT_FOLDERS) and not HEAVY_MARKERS & {
                mark.name for mark in item.iter_markers()}:
            item.add_marker(pytest.mark.unit)
        if "deployment" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.deployment)
