"""Bad input, table-driven: each case asserts the one line a user sees from ``validate``.

Every message names the file, the field and the fix; there is never a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main
from tests.orchest_factory import ENV, pipeline_doc, step, write_project


@dataclass
class Case:
    id: str
    build: Callable[[Path], Path]  # writes a project under the folder, returns what to validate
    file: str  # file name the message must start with (relative to the project)
    expected: list[str]  # fragments of the message, in order


def _pipe(steps=None, **kwargs):
    return pipeline_doc(steps or [step("s1", "a.py")], **kwargs)


def _with(doc_change=None, params=None, job=None, files=None, steps=None, **kwargs):
    def build(root: Path) -> Path:
        doc = _pipe(steps, **kwargs)
        if doc_change:
            doc_change(doc)
        write_project(root, doc, files=files, parameters=params)
        if job is not None:
            (root / "nightly.job.json").write_text(
                job if isinstance(job, str) else json.dumps(job))
        return root
    return build


def _raw_pipeline(text: str):
    def build(root: Path) -> Path:
        root.mkdir(parents=True)
        (root / "main.orchest").write_text(text)
        return root
    return build


def _set(path: str, value):
    def change(doc):
        target = doc
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return change


def _outside_link(root: Path) -> Path:
    _with(files={})(root)
    (root / "a.py").symlink_to("/etc/hostname")
    return root


CASES = [
    Case("malformed-json", _raw_pipeline('{"uuid": "x", "steps": {'), "main.orchest",
         ["line 1 column 25", "malformed JSON", "fix the syntax"]),
    Case("not-an-object", _raw_pipeline("[1, 2]"), "main.orchest",
         ["(top level)", "must be an object, not a list"]),
    Case("missing-steps", _raw_pipeline('{"uuid": "x"}'), "main.orchest",
         ["missing required field 'steps'"]),
    Case("unknown-version", _with(version="2.0.0"), "main.orchest",
         ["version", '"2.0.0" is not one of', "remove the field"]),
    Case("name-too-long", _with(name="n" * 300), "main.orchest",
         ["name", "longer than 255 characters"]),
    Case("bad-parallelism", _with(settings={"max_steps_parallelism": "four"}),
         "main.orchest", ["settings.max_steps_parallelism", "must be a whole number",
                          "0 for unlimited"]),
    Case("negative-parallelism", _with(settings={"max_steps_parallelism": -1}),
         "main.orchest", ["settings.max_steps_parallelism", "at least 0"]),
    Case("bad-memory-size", _with(settings={"data_passing_memory_size": "lots"}),
         "main.orchest", ["settings.data_passing_memory_size", "\"1GB\""]),
    Case("step-key-not-uuid", _with(_set("steps.s1.uuid", "other")), "main.orchest",
         ["steps.s1.uuid", "'other'", "make the two equal"]),
    Case("dangling-connection", _with(steps=[step("s1", "a.py", incoming=["ghost"])]),
         "main.orchest", ["steps.s1.incoming_connections", "'ghost' does not exist"]),
    Case("self-loop", _with(steps=[step("s1", "a.py", incoming=["s1"])]), "main.orchest",
         ["steps", "cycle", "'s1' (s1) -> 's1' (s1)", "remove one"]),
    Case("cycle", _with(steps=[step("s1", "a.py", incoming=["s3"], title="Load"),
                               step("s2", "b.py", incoming=["s1"], title="Clean"),
                               step("s3", "c.py", incoming=["s2"], title="Train")]),
         "main.orchest", ["cycle", "'Load' (s1) -> 'Clean' (s2) -> 'Train' (s3) -> 'Load'"]),
    Case("path-traversal", _with(steps=[step("s1", "../../etc/passwd")]), "main.orchest",
         ["steps.s1.file_path", "leaves the project folder"]),
    Case("absolute-path", _with(steps=[step("s1", "/etc/passwd")]), "main.orchest",
         ["steps.s1.file_path", "absolute path '/etc/passwd' is outside the project",
          "/data/"]),
    Case("missing-file", _with(files={}), "main.orchest",
         ["steps.s1.file_path", "'a.py' does not exist", "create the file or fix the path"]),
    Case("symlink-out-of-project", _outside_link, "main.orchest",
         ["steps.s1.file_path", "is a link to /etc/hostname", "outside the project"]),
    Case("shared-notebook", _with(steps=[step("s1", "nb.ipynb"), step("s2", "./nb.ipynb")]),
         "main.orchest", ["steps.s2.file_path", "also used by step 's1'", "copy it"]),
    Case("unknown-environment", _with(steps=[step("s1", "a.py", environment="nope")]),
         "main.orchest", ["steps.s1.environment", "unknown environment 'nope'",
                          "environment_images"]),
    Case("no-environment", _with(steps=[step("s1", "a.py", environment=None)]),
         "main.orchest", ["steps.s1.environment", "missing"]),
    Case("connections-not-list", _with(_set("steps.s1.incoming_connections", "s0")),
         "main.orchest", ["steps.s1.incoming_connections", "must be a list, not a string"]),
    Case("parameter-not-list", _with(params={"pipeline_parameters": {"a": 3}}),
         "main.parameters.json", ["pipeline_parameters.a", "must be a list, not a number 3",
                                  "wrap the value in a list"]),
    Case("parameter-empty-list", _with(params={"s1": {"a": []}}), "main.parameters.json",
         ["s1.a", "must not be an empty list"]),
    Case("parameters-unknown-step", _with(params={"ghost": {"a": [1]}}),
         "main.parameters.json", ["ghost", "no step with uuid 'ghost' in main.orchest"]),
    Case("job-unknown-pipeline", _with(job={"pipeline": "other.orchest"}), "nightly.job.json",
         ["pipeline", "unknown pipeline 'other.orchest'"]),
    Case("job-pipeline-outside", _with(job={"pipeline": "../x/main.orchest"}),
         "nightly.job.json", ["pipeline", "leaves the project folder"]),
    Case("job-bad-cron", _with(job={"pipeline": "main.orchest", "schedule": "61 * * * *"}),
         "nightly.job.json", ["schedule", "not a valid cron expression", "\"0 3 * * *\""]),
    Case("job-bad-preset", _with(job={"pipeline": "main.orchest", "schedule": "@fortnightly"}),
         "nightly.job.json", ["schedule", "unknown preset '@fortnightly'", "@daily"]),
    Case("job-bad-datetime", _with(job={"pipeline": "main.orchest",
                                        "schedule": "2026-13-45T00:00"}),
         "nightly.job.json", ["schedule", "not a valid ISO-8601 datetime"]),
    Case("job-runs-out-of-range", _with(job={"pipeline": "main.orchest", "runs": [0, 4]}),
         "nightly.job.json", ["runs", "run index 4 is out of range; the grid has 1 runs"]),
    Case("job-runs-empty", _with(job={"pipeline": "main.orchest", "runs": []}),
         "nightly.job.json", ["runs", "must not be an empty list"]),
    Case("job-bad-env-name", _with(job={"pipeline": "main.orchest",
                                        "env_variables": {"MY VAR": "x"}}),
         "nightly.job.json", ["env_variables", "name \"MY VAR\" is not allowed",
                              "letters, digits, - and _"]),
    Case("job-unknown-field", _with(job={"pipeline": "main.orchest", "shedule": "@daily"}),
         "nightly.job.json", ["unknown field 'shedule'", "allowed fields"]),
    Case("job-bad-snapshot", _with(job={"pipeline": "main.orchest", "snapshot": "never"}),
         "nightly.job.json", ["snapshot", '"per_job"']),
    Case("job-inline-params-not-list", _with(job={"pipeline": "main.orchest",
                                                  "parameters": {"s1": {"a": "x"}}}),
         "nightly.job.json", ["parameters.s1.a", "must be a list"]),
    Case("job-malformed", _with(job='{"pipeline": '), "nightly.job.json",
         ["malformed JSON"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, tmp_path: Path, capsys):
    project = case.build(tmp_path / "proj")
    code = main(["validate", str(project)])
    out = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(str(project / case.file) + ": "), line
    position = 0
    for fragment in case.expected:
        found = line.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in order in {line!r}"
        position = found + len(fragment)


def test_table_is_big_enough():
    assert len(CASES) >= 20


def test_bad_pipeline_does_not_hide_good_ones(tmp_path, capsys):
    good = write_project(tmp_path / "projects" / "good", _pipe())
    _raw_pipeline("{oops")(tmp_path / "projects" / "bad")
    code = main(["validate", str(tmp_path / "projects")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "bad/main.orchest" in err
    assert main(["validate", str(good)]) == 0


def test_unreadable_environment_is_reported(tmp_path, capsys):
    write_project(tmp_path / "p", _pipe())
    props = tmp_path / "p" / ".orchest" / "environments" / ENV / "properties.json"
    props.write_text("{")
    assert main(["validate", str(tmp_path / "p")]) == 1
    assert f"{props}: line 1 column 2: malformed JSON" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["grid", "x.orchest", "--runs", "a,b"])
    assert exc.value.code == 2


def test_missing_path(tmp_path, capsys):
    assert main(["validate", os.fspath(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def _variants(node, depth=0):
    """The document with one value at a time replaced by wrong ones (and keys added)."""
    yield node
    if depth > 6:
        return
    wrong = [None, "x", 3, -1, 1.5, True, [], {}, ["x"], {"x": 1}, "", "n" * 300]
    if isinstance(node, dict):
        yield {**node, "unknown_field": 1}
        for key, value in node.items():
            for other in [*wrong, *_variants(value, depth + 1)]:
                yield {**node, key: other}
            yield {k: v for k, v in node.items() if k != key}
    elif isinstance(node, list):
        for i in range(len(node)):
            for other in wrong[:4]:
                yield [*node[:i], other, *node[i + 1:]]


def test_fast_validator_agrees_with_jsonschema(tmp_path):
    """Parsing decides validity with jsonschema_rs and explains with jsonschema: both
    must accept and refuse the same documents, or an invalid file would load."""
    from airflow_orchest_jobs.core import schema

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "orchest"
    documents = {"pipeline": [json.loads(p.read_text())
                              for p in sorted(fixtures.rglob("*.orchest")) if p.is_file()][:8],
                 "parameters": [json.loads(p.read_text())
                                for p in sorted(fixtures.rglob("*.parameters.json"))][:4]}
    documents["pipeline"].append(_pipe())
    documents["conf"] = [{"parameters": {"pipeline_parameters": {"a": [1, 2]}}, "runs": [0],
                          "env_variables": {"A": "b"}}]
    documents["job"] = [{"pipeline": "main.orchest", "schedule": "0 3 * * *",
                         "parameters": {"pipeline_parameters": {"a": [1]}}}]
    checked = refused = 0
    for name, docs in documents.items():
        assert docs, name
        for doc in docs:
            for variant in _variants(doc):
                slow = not any(True for _ in schema.validator(name).iter_errors(variant))
                assert schema.fast_validator(name).is_valid(variant) == slow, (name, variant)
                checked += 1
                refused += not slow
    assert checked > 1000 and refused > checked / 4
