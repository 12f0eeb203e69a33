"""Poisonous input: each gives its file one clear line, and never hides another project.

What a user sees from ``validate`` (one line naming the file, the field and the fix, exit
1, never a traceback), and what the scan the DAG processor runs keeps: every other
project's pipelines and jobs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core import jsonfile
from airflow_orchest_jobs.core.errors import OrchestError, Problem, one_line
from airflow_orchest_jobs.core.scan import scan_projects
from airflow_orchest_jobs.core.variables import parse_level
from tests.orchest_factory import pipeline_doc, step, write_project

DEEP = 100_000


@dataclass
class Case:
    id: str
    build: Callable[[Path], None]  # writes one project into the folder
    file: str  # the file the line names (relative to the project)
    expected: list[str]  # fragments of the line, in order


def _pipeline(text: str) -> Callable[[Path], None]:
    """A project whose pipeline file is ``text`` as written (raw JSON)."""
    def build(root: Path) -> None:
        write_project(root, pipeline_doc([step("s1", "a.py")]))
        (root / "main.orchest").write_text(text)
    return build


def _doc(change: Callable[[dict], None], files: dict[str, str] | None = None):
    def build(root: Path) -> None:
        doc = pipeline_doc([step("s1", "a.py")])
        change(doc)
        write_project(root, doc, files=files if files is not None else {"a.py": ""})
    return build


def _job(job: dict | str, parameters: str | None = None):
    def build(root: Path) -> None:
        write_project(root, pipeline_doc([step("s1", "a.py")]))
        (root / "nightly.job.json").write_text(job if isinstance(job, str) else json.dumps(job))
        if parameters is not None:
            (root / "grid.json").write_text(parameters)
    return build


def _renamed(name: bytes):
    """A project whose pipeline file has the (not UTF-8) ``name``."""
    def build(root: Path) -> None:
        write_project(root, pipeline_doc([step("s1", "a.py")]))
        os.rename(root / "main.orchest", os.fsencode(root) + b"/" + name)
    return build


def _file_path(value: str):
    def change(doc: dict) -> None:
        doc["steps"]["s1"]["file_path"] = value
    return change


def _service_env(value: str):
    def change(doc: dict) -> None:
        doc["services"] = {"db": {"name": "db", "image": "postgres", "ports": [5432],
                                  "scope": ["noninteractive"],
                                  "env_variables": {"PASSWORD": value}}}
    return change


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = [
    Case("nul-in-file-path", _doc(_file_path("a\x00.py")), "main.orchest",
         ["steps.s1.file_path", "'a\\x00.py'", "a NUL character at position 1",
          "rename the file"]),
    Case("newline-in-file-path", _doc(_file_path("a\n.py")), "main.orchest",
         ["steps.s1.file_path", "a control character (\\x0a)", "rename the file"]),
    Case("surrogate-in-file-path", _pipeline(json.dumps(
        pipeline_doc([step("s1", "a.py")])).replace('"a.py"', '"a\\ud800.py"')),
         "main.orchest", ["steps.s1.file_path", "a lone surrogate (\\ud800)"]),
    Case("nul-in-environment", _doc(lambda d: d["steps"]["s1"].update(environment="e\x00")),
         "main.orchest", ["steps.s1.environment", "NUL"]),
    Case("deep-pipeline", _pipeline(_nested(DEEP)), "main.orchest",
         ["nested more than 64 levels deep", "flatten the document"]),
    Case("deep-parameter-value", _pipeline(json.dumps(pipeline_doc(
        [step("s1", "a.py")], parameters={"p": json.loads(_nested(65))}))),
         "main.orchest", ["nested more than 64 levels deep"]),
    Case("huge-integer", _pipeline(json.dumps(pipeline_doc([step("s1", "a.py")]))
                                   .replace('"parameters": {}', '"parameters": {"p": '
                                            + "9" * 5000 + "}", 1)),
         "main.orchest", ["cannot be read as JSON", "fix the value"]),
    Case("deep-job", _job(_nested(DEEP)), "nightly.job.json", ["nested more than 64"]),
    Case("deep-parameters-file", _job({"pipeline": "main.orchest", "parameters": "grid.json"},
                                      parameters=_nested(DEEP)),
         "grid.json", ["nested more than 64"]),
    Case("nul-in-job-env", _job({"pipeline": "main.orchest",
                                 "env_variables": {"TOKEN": "ab\x00c"}}),
         "nightly.job.json", ["env_variables.TOKEN", "the value of TOKEN contains a NUL",
                              "container's environment cannot carry",
                              "remove it from the value"]),
    Case("nul-in-job-pipeline", _job({"pipeline": "main\x00.orchest"}), "nightly.job.json",
         ["pipeline", "NUL character"]),
    Case("nul-in-job-parameters", _job({"pipeline": "main.orchest", "parameters": "g\x00.json"}),
         "nightly.job.json", ["parameters", "NUL character"]),
    Case("nul-in-service-env", _doc(_service_env("pw\x00")), "main.orchest",
         ["services.db.env_variables.PASSWORD", "NUL", "cannot carry"]),
    Case("nul-in-pipeline-name", _doc(lambda d: d.update(name="n\x00")), "main.orchest",
         ["name: contains a NUL character", "text shown in Airflow", "remove it"]),
    Case("surrogate-in-step-title", _pipeline(json.dumps(pipeline_doc(
        [step("s1", "a.py", title="t")])).replace('"title": "t"', '"title": "\\udfff"')),
         "main.orchest", ["steps.s1.title: contains a lone surrogate (\\udfff)"]),
    Case("nul-in-job-description", _job({"pipeline": "main.orchest", "description": "\x00"}),
         "nightly.job.json", ["description: contains a NUL character"]),
    Case("latin1-pipeline-name", _renamed(b"caf\xe9.orchest"), "caf\udce9.orchest",
         ["its name contains a byte that is not UTF-8 (0xe9) at position 3", "rename it"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_poisonous_input_gives_one_line_and_keeps_other_projects(case: Case, tmp_path: Path,
                                                                 capsys) -> None:
    projects = tmp_path / "projects"
    write_project(projects / "good", pipeline_doc([step("s1", "a.py")]))
    case.build(projects / "poisoned")
    # validate, on the project: one line, exit 1, no traceback
    code = main(["validate", str(projects / "poisoned")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(one_line(f"{projects / 'poisoned' / case.file}: ")), line
    position = 0
    for fragment in case.expected:
        found = line.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in {line!r}"
        position = found + len(fragment)
    # the scan the DAG processor makes keeps the other project, and says it once
    scan = scan_projects(projects)
    assert [p.project.name for p in scan.pipelines if p.project.name == "good"] == ["good"]
    assert [str(p) for p in scan.all_problems] == [line]


def test_nesting_at_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(_nested(jsonfile.MAX_DEPTH))
    assert jsonfile.nesting_depth(jsonfile.read_json(path)) == jsonfile.MAX_DEPTH
    path.write_text(_nested(jsonfile.MAX_DEPTH + 1))
    with pytest.raises(OrchestError, match="nested more than 64 levels"):
        jsonfile.read_json(path)


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, capsys) -> None:
    """A pipeline file or environment definition that is a fifo would block the parse."""
    root = tmp_path / "p"
    write_project(root, pipeline_doc([step("s1", "a.py")]))
    props = next((root / ".orchest" / "environments").glob("*/properties.json"))
    props.unlink()
    os.mkfifo(props)
    os.mkfifo(root / "other.orchest")  # never a pipeline: not a regular file
    assert main(["validate", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"{props}: is not a regular file" in err
    assert "other.orchest" not in err


def test_nul_in_an_airflow_variable_level_is_refused() -> None:
    with pytest.raises(OrchestError) as error:
        parse_level("orchest_env__p", json.dumps({"A": "ok", "B": "x\x00"}))
    assert [str(p) for p in error.value.problems] == [
        "Airflow Variable orchest_env__p: B: the value of B contains a NUL character at "
        "position 1, which a container's environment cannot carry; remove it from the value"]
    with pytest.raises(OrchestError, match="nested more than 64"):
        parse_level("orchest_env__p", '{"A": ' + _nested(DEEP) + "}")


def test_an_unexpected_exception_is_the_files_one_line(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    """Whatever a file's loading raises (here: a bug, simulated in the loader) stays that
    file's problem: the containment does not depend on anyone foreseeing the input."""
    from airflow_orchest_jobs.core import scan as scan_module

    projects = tmp_path / "projects"
    write_project(projects / "good", pipeline_doc([step("s1", "a.py")]))
    write_project(projects / "buggy", pipeline_doc([step("s1", "a.py")]))
    real = scan_module.load_pipeline

    def load_pipeline(path, *args, **kwargs):
        if "buggy" in str(path):
            raise KeyError("a bug\nover two lines")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scan_module, "load_pipeline", load_pipeline)
    assert main(["validate", str(projects)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"{projects / 'buggy' / 'main.orchest'}: cannot be loaded (KeyError: 'a bug\\nover "
        "two lines'); this input is not handled: fix the file, or report it with this line"]
    assert [p.project.name for p in scan_projects(projects).pipelines] == ["good"]


def test_a_problem_is_always_one_line() -> None:
    assert str(Problem("f\nx", "w\r", "m\x00\ud800")) == "f\\nx: w\\r: m\\x00\\ud800"


def test_a_project_folder_not_named_in_utf8_is_its_one_line(tmp_path: Path) -> None:
    write_project(tmp_path / "good", pipeline_doc([step("s1", "a.py")]))
    write_project(tmp_path / "x", pipeline_doc([step("s1", "a.py")]))
    os.rename(tmp_path / "x", os.fsencode(tmp_path) + b"/caf\xe9")
    scan = scan_projects(tmp_path)
    assert [p.project.name for p in scan.pipelines] == ["good"]
    assert [str(p) for p in scan.all_problems] == [
        f"{tmp_path}/caf\\udce9: its name contains a byte that is not UTF-8 (0xe9) at "
        "position 3; rename it to UTF-8 text without control characters"]


def test_nul_in_a_trigger_confs_variable_is_refused_before_any_container() -> None:
    from airflow_orchest_jobs.core.request import resolve_request

    with pytest.raises(OrchestError) as error:
        resolve_request(None, {"env_variables": {"TOKEN": "x\x00"}}, default_parameters={})
    assert str(error.value) == (
        "trigger conf: env_variables.TOKEN: the value of TOKEN contains a NUL character at "
        "position 1, which a container's environment cannot carry; remove it from the value")
    with pytest.raises(OrchestError, match="nested more than 64 levels deep; flatten the conf"):
        resolve_request(None, {"parameters": json.loads(_nested(65))}, default_parameters={})
