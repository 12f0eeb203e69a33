"""Each Orchest format version migrates forward the way Orchest did."""

from __future__ import annotations

import copy

import pytest

from airflow_orchest_jobs.core.migrate import LATEST, MIGRATIONS, migrate
from tests.orchest_factory import pipeline_doc, step


def _doc(version, **extra):
    doc = pipeline_doc([step("s1", "a.py")], version=version)
    doc.update(extra)
    return doc


@pytest.mark.parametrize("version", [None, "", "1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.2.2",
                                     "1.2.3"])
def test_every_version_reaches_latest(version):
    doc = migrate(_doc(version))
    assert doc["version"] == LATEST
    assert doc["settings"]["max_steps_parallelism"] == 0
    assert doc["steps"]["s1"]["parameters"] == {}


def test_chain_is_complete():
    version, seen = "1.0.0", []
    while version in MIGRATIONS:
        seen.append(version)
        version = MIGRATIONS[version][1]
    assert seen == ["1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.2.2"] and version == LATEST


def test_1_0_0_adds_parameters_renames_ir_kernel_and_fixes_env_names():
    doc = _doc("1.0.0")
    del doc["parameters"]
    doc["steps"]["s1"]["kernel"] = {"name": "ir", "display_name": "R"}
    doc["services"] = {"db": {"name": "db", "image": "postgres",
                              "env_variables": {"MY VAR": "1", "MY_VAR": "2"}}}
    out = migrate(doc)
    assert out["parameters"] == {}
    assert out["steps"]["s1"]["kernel"]["name"] == "r"
    assert out["services"]["db"]["env_variables"] == {"MY_VAR": "1", "MY_VAR_2": "2"}


def test_1_1_0_reshapes_services():
    doc = _doc("1.1.0", services={
        "st": {"name": "st", "image": "orchest/streamlit", "entrypoint": "bash",
               "command": "-c 'streamlit run app.py'"},
        "cache": {"name": "cache", "image": "redis", "command": "redis-server"},
    })
    out = migrate(doc)["services"]
    assert out["st"]["command"] == "bash"
    assert out["st"]["args"] == "-c 'streamlit run app.py'"
    assert "entrypoint" not in out["st"]
    assert out["st"]["ports"] == [8501] and out["cache"]["ports"] == [6379]
    assert out["cache"]["command"] == "redis-server"  # no entrypoint: command kept
    assert out["st"]["exposed"] is False and out["st"]["requires_authentication"] is True


def test_1_2_0_fills_unique_service_order():
    doc = _doc("1.2.0", services={
        "b": {"name": "b", "image": "x", "order": 5},
        "a": {"name": "a", "image": "x"},
        "c": {"name": "c", "image": "x"},
    })
    out = migrate(doc)["services"]
    assert (out["b"]["order"], out["a"]["order"], out["c"]["order"]) == (5, 6, 7)


def test_1_2_1_makes_service_names_rfc1035_safe():
    doc = _doc("1.2.1", services={"1VSCode": {"name": "1VSCode", "image": "x"}})
    out = migrate(doc)["services"]
    assert list(out) == ["vscode"] and out["vscode"]["name"] == "vscode"


def test_latest_is_untouched():
    doc = _doc("1.2.3", services={"Odd Name": {"name": "Odd Name", "image": "x"}})
    before = copy.deepcopy(doc)
    assert migrate(doc) == before


def test_legacy_layout_gets_settings():
    doc = {"name": "old", "uuid": "u", "steps": {"s": {"uuid": "s", "file_path": "a.sh",
                                                       "image": "busybox"}}}
    out = migrate(doc)
    assert out["settings"] == {"auto_eviction": False, "data_passing_memory_size": "1GB",
                               "max_steps_parallelism": 0}
    assert out["steps"]["s"]["incoming_connections"] == []
