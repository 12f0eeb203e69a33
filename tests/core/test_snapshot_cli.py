"""``airflow-orchest-jobs snapshot ...`` through the real CLI entry point."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "debug.log").write_text("noise")
    return root


def test_create_list_checkout_delete_gc(project: Path, tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "store")
    assert main(["snapshot", "create", str(project), "--store", store]) == 0
    out = capsys.readouterr().out.splitlines()
    snapshot_id = out[-1]
    assert "3 files" in out[0] and len(snapshot_id) == 20

    assert main(["snapshot", "list", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert snapshot_id in listing and str(project) in listing and "1 snapshot(s)" in listing

    dest = tmp_path / "run"
    assert main(["snapshot", "checkout", snapshot_id, str(dest), "--store", store]) == 0
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) \
        == [".gitignore", "main.py", "pkg/util.py"]

    capsys.readouterr()
    assert main(["snapshot", "delete", snapshot_id, "--store", store]) == 0
    assert "snapshot gc" in capsys.readouterr().out
    assert main(["snapshot", "gc", "--store", store]) == 0
    assert capsys.readouterr().out.startswith("freed ")
    assert main(["snapshot", "list", "--store", store]) == 0
    assert "0 snapshot(s), 0 stored file(s)" in capsys.readouterr().out


def test_unknown_id_is_one_line_on_stderr_and_exit_1(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "store")
    code = main(["snapshot", "checkout", "0123456789abcdef0123", str(tmp_path / "x"),
                 "--store", store])
    err = capsys.readouterr().err
    assert code == 1
    assert "0123456789abcdef0123" in err and "snapshot list" in err
    assert "Traceback" not in err


def test_missing_project_is_reported(tmp_path: Path, capsys) -> None:
    code = main(["snapshot", "create", str(tmp_path / "nope"), "--store", str(tmp_path)])
    assert code == 1 and "is not a folder" in capsys.readouterr().err


def test_default_store_comes_from_the_settings(project: Path, tmp_path: Path, capsys,
                                               monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(tmp_path / "configured"))
    assert main(["snapshot", "create", str(project)]) == 0
    snapshot_id = capsys.readouterr().out.splitlines()[-1]
    manifest = tmp_path / "configured" / "snapshots" / "manifests" / f"{snapshot_id}.json"
    assert manifest.is_file()
    assert os.access(manifest, os.R_OK)


def test_subcommand_is_required(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["snapshot"])
    assert exit_info.value.code == 2
