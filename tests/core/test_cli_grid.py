"""``airflow-orchest-jobs grid`` prints every run in Orchest's shape."""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_orchest_jobs.cli import main
from tests.orchest_factory import pipeline_doc, step, write_project


def test_grid_command_prints_runs_in_order(tmp_path, capsys):
    doc = pipeline_doc([step("s-b", "b.py", parameters={"b": "x", "a": 0})],
                       parameters={"a": 1})
    path = write_project(tmp_path, doc, parameters={"pipeline_parameters": {"a": [1, 2]},
                                                    "s-b": {"b": ["x", "y", "z", "w"]}})
    assert main(["grid", str(path)]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 8
    assert runs[3] == {"pipeline_parameters": {"a": 1}, "s-b": {"b": "w", "a": 0}}
    assert main(["grid", str(path), "--runs", "0,5"]) == 0
    assert [r["s-b"]["b"] for r in json.loads(capsys.readouterr().out)] == ["x", "y"]


def test_grid_with_explicit_file_and_bad_selection(tmp_path, capsys):
    path = write_project(tmp_path, pipeline_doc([step("s", "a.py")], parameters={"a": 1}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"pipeline_parameters": {"a": [5, 6, 7]}}))
    assert main(["grid", str(path), "--parameters", str(other), "--runs", "9"]) == 1
    assert "--runs: run index 9 is out of range; the grid has 3 runs" in capsys.readouterr().err


def test_console_script_runs_without_traceback(tmp_path):
    (tmp_path / "main.orchest").write_text("{")
    proc = subprocess.run([sys.executable, "-m", "airflow_orchest_jobs.cli", "validate",
                           str(tmp_path / "main.orchest")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("malformed JSON (Expecting property name enclosed in "
                                        "double quotes); fix the syntax")
    assert "Traceback" not in proc.stderr
