"""Poisoned projects on the real deployment: each is its own one line, the rest stay listed.

Before: a NUL byte in a step's ``file_path`` or a deeply nested document failed the DAG
file's import (every Orchest DAG gone), and a ``.gitignore`` pattern with many ``*``
made discovery and snapshots run for ever. Now each poisoned project gives one
placeholder DAG with one line (or, for the pattern, simply works), the DAG file has no
import error, and the healthy project beside them runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.layout import StoreLayout, safe_name
from tests.deployment import PARSE_TIMEOUT, Deployment
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

PATTERN = "a*" * 17 + "b"
LONG_NAME = "a" * 200
OK_STEP = "print('fine')\n"


def _good(root: Path) -> None:
    write_project(root, pipeline_doc([step("s1", "a.py")]), files={"a.py": OK_STEP})


def _nul(root: Path) -> None:
    write_project(root, pipeline_doc([step("s1", "a\x00.py")]), files={"a.py": OK_STEP})


def _deep(root: Path) -> None:
    _good(root)
    (root / "main.orchest").write_text("[" * 100_000 + "]" * 100_000)


def _pattern(root: Path) -> None:
    _good(root)
    (root / ".gitignore").write_text(PATTERN + "\n")
    (root / LONG_NAME).mkdir()  # discovery asks the rules about every folder
    (root / LONG_NAME / (LONG_NAME + ".txt")).write_text("data\n")


def _latin1(root: Path) -> None:
    """A pipeline file named in Latin-1 (an old system's file name, not UTF-8)."""
    _good(root)
    os.rename(root / "main.orchest", os.fsencode(root) + b"/caf\xe9.orchest")


def _unexpected(root: Path, store: Path) -> None:
    """A per-job job whose frozen state (our own file, here damaged) is not an object
    of the fields it should have: loading it raises a TypeError no check foresaw."""
    _good(root)
    (root / "nightly.job.json").write_text(json.dumps({"pipeline": "main.orchest"}))
    jobs = StoreLayout(store).jobs
    jobs.mkdir(parents=True, exist_ok=True)
    job_key = f"orchest_job__{root.name}__nightly"
    (jobs / f"{safe_name(job_key)}.json").write_text(json.dumps({"damaged": True}))


def _dag_ids(deployment: Deployment, prefix: str) -> dict[str, str]:
    """``{dag_id: description}`` of the listed DAGs whose id contains ``prefix``."""
    response = deployment.api("GET", "/dags", params={"dag_id_pattern": prefix,
                                                      "limit": 100})
    response.raise_for_status()
    return {d["dag_id"]: d["description"] or "" for d in response.json()["dags"]}


def test_poisoned_projects_stay_their_own_problem(deployment: Deployment) -> None:
    projects = deployment.projects_dir
    prefix = "poison"
    _good(projects / f"{prefix}-good")
    _nul(projects / f"{prefix}-nul")
    _deep(projects / f"{prefix}-deep")
    _pattern(projects / f"{prefix}-pattern")
    _latin1(projects / f"{prefix}-latin1")
    _unexpected(projects / f"{prefix}-unexpected", deployment.store_dir)
    expected = {
        f"orchest__{prefix}-good__main": None,
        f"orchest__{prefix}-pattern__main": None,
        f"orchest_invalid__{prefix}-nul__main.orchest":
            "steps.s1.file_path: 'a\\x00.py' contains a NUL character at position 1",
        f"orchest_invalid__{prefix}-latin1__caf_.orchest":
            "its name contains a byte that is not UTF-8 (0xe9) at position",
        f"orchest_invalid__{prefix}-deep__main.orchest":
            "lists and objects are nested more than 64 levels deep",
        f"orchest_invalid__{prefix}-unexpected__nightly.job.json": "cannot be loaded "
            "(TypeError: FrozenJob.__init__() got an unexpected keyword argument 'damaged')",
    }

    def all_listed() -> dict[str, str] | None:
        listed = _dag_ids(deployment, prefix)
        return listed if set(expected) <= set(listed) else None

    listed = deployment.wait("every poisoned project's DAG or placeholder", all_listed,
                             PARSE_TIMEOUT, 2)
    # The unexpected one keeps its project's pipeline: only the job file is its problem.
    assert f"orchest__{prefix}-unexpected__main" in listed
    for dag_id, line in expected.items():
        if line is None:
            assert not listed[dag_id].startswith("INVALID"), listed[dag_id]
        else:
            assert line in listed[dag_id], listed[dag_id]
            assert "\n" not in listed[dag_id]
    assert len(listed) == len(expected) + 1, sorted(listed)  # one placeholder each
    # No import error: the DAG file itself always imports.
    errors = deployment.api("GET", "/importErrors", params={"limit": 100}).json()
    assert [e for e in errors["import_errors"] if "orchest_jobs.py" in e["filename"]] == []

    # The healthy projects run: the pattern's project is snapshot (every name matched
    # against the pattern, the long ones included) within the bound of a DAG run.
    for dag_id in (f"orchest__{prefix}-good__main", f"orchest__{prefix}-pattern__main"):
        deployment.wait_for_dag(dag_id)
        run_id = deployment.trigger(dag_id)
        run = deployment.wait_finished(dag_id, run_id)
        assert run["state"] == "success", deployment.task_states(dag_id, run_id)


def test_validate_on_the_poisoned_projects_prints_lines_not_tracebacks(
        deployment: Deployment) -> None:
    """The command a user runs first gives the same lines, with the same settings."""
    import subprocess
    import sys

    projects = deployment.projects_dir
    for name, build in (("poison-v-nul", _nul), ("poison-v-deep", _deep)):
        if not (projects / name).exists():
            build(projects / name)
    result = subprocess.run(
        [sys.executable, "-m", "airflow_orchest_jobs.cli", "validate",
         str(projects / "poison-v-nul"), str(projects / "poison-v-deep")],
        env={**deployment.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2, result.stderr
    assert "NUL character" in result.stderr and "nested more than 64" in result.stderr
