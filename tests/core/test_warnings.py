"""``validate`` warns about fields the plugin loads but does not honour; exit code stays 0."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.project import Project
from airflow_orchest_jobs.core.warnings import unhonoured
from tests.orchest_factory import ENV, pipeline_doc, step, write_project

SERVICE = {"image": "postgres:16", "command": "", "args": "", "binds": {}, "ports": [5432],
           "env_variables": {}, "env_variables_inherit": [], "order": 0}


def _project(root: Path) -> Path:
    """A pipeline setting every unhonoured field, a GPU environment and a job file."""
    doc = pipeline_doc(
        [step("s1", "a.py", kernel={"name": "r", "display_name": "R"})],  # not warned
        settings={"auto_eviction": True, "data_passing_memory_size": "4GB",
                  "max_steps_parallelism": 0})
    doc["services"] = {
        "db": {**SERVICE, "name": "db", "scope": ["interactive", "noninteractive"],
               "exposed": True, "requires_authentication": False,
               "preserve_base_path": True},
        "ui": {**SERVICE, "name": "ui", "scope": ["interactive"], "exposed": True,
               "ports": [8080]},
        "cache": {**SERVICE, "name": "cache", "scope": ["noninteractive"], "exposed": False,
                  "requires_authentication": True, "ports": [6379]},  # nothing ignored
    }
    path = write_project(root / "proj", doc)
    props = root / "proj" / ".orchest" / "environments" / ENV / "properties.json"
    props.write_text(json.dumps({**json.loads(props.read_text()), "gpu_support": True}))
    (root / "proj" / "nightly.job.json").write_text(json.dumps({"pipeline": "main.orchest"}))
    return path


def _expected(path: Path) -> list[str]:
    pipe = path.resolve()
    props = pipe.parent / ".orchest" / "environments" / ENV / "properties.json"
    return [
        f"{pipe}: warning: settings.auto_eviction: true is ignored: data passing is on disk "
        "only, there is no memory store to evict from (set it to false)",
        f'{pipe}: warning: settings.data_passing_memory_size: "4GB" is ignored: memory data '
        "passing is not implemented (the orchest SDK 0.3.11 writes outputs to disk anyway; "
        'set it to "1GB")',
        f"{pipe}: warning: services.db.exposed: true is ignored: services in jobs are "
        "reachable only from the run's own steps and services, never exposed to a browser "
        "(set it to false)",
        f"{pipe}: warning: services.db.requires_authentication: false is ignored: services "
        "in jobs are reachable only from the run's own steps and services, no external "
        "access to authenticate (remove it)",
        f"{pipe}: warning: services.db.preserve_base_path: true is ignored: services in jobs "
        "are reachable only from the run's own steps and services, no proxy in front of it "
        "to keep the path for (remove it)",
        f'{pipe}: warning: services.ui.scope: ["interactive"] lacks "noninteractive": '
        'interactive-only services never start in jobs (add "noninteractive" to start it '
        "beside every pipeline run)",
        f"{props}: warning: gpu_support: true is ignored: containers get no GPU request, so "
        "GPU code runs on the CPU or fails (set it to false once its steps need no GPU)",
    ]


def test_each_unhonoured_field_is_one_warning_line_and_validation_passes(tmp_path, capsys):
    path = _project(tmp_path)
    assert main(["validate", str(tmp_path / "proj")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "valid: 1 pipeline(s), 1 job(s)"
    assert err.splitlines() == _expected(path)  # once each, though the job runs it too


def test_validating_one_file_warns_about_that_pipeline(tmp_path, capsys):
    path = _project(tmp_path)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == _expected(path)


def test_warnings_do_not_hide_problems(tmp_path, capsys):
    path = _project(tmp_path)
    (path.parent / "broken.orchest").write_text("{")
    assert main(["validate", str(tmp_path / "proj")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{(path.parent / 'broken.orchest').resolve()}: ")
    assert err[1:] == _expected(path)


def test_a_clean_pipeline_has_no_warnings(tmp_path, capsys):
    doc = pipeline_doc([step("s1", "a.py")])
    doc["services"] = {"cache": {**SERVICE, "name": "cache", "scope": ["noninteractive"],
                                 "exposed": False, "requires_authentication": True}}
    path = write_project(tmp_path / "proj", doc)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err == ""
    pipeline = load_pipeline(path, path.parent)
    assert unhonoured(pipeline, Project(path.parent)) == []


def test_old_files_migrated_with_default_service_flags_are_not_warned(tmp_path):
    """Migration from 1.1.0 adds exposed: false and requires_authentication: true."""
    doc = pipeline_doc([step("s1", "a.py")], version="1.1.0")
    doc.pop("settings")
    doc["services"] = {"cache": {"name": "cache", "image": "redis", "scope": ["noninteractive"],
                                 "entrypoint": "", "command": ""}}
    path = write_project(tmp_path / "proj", doc)
    pipeline = load_pipeline(path, path.parent)
    assert pipeline.services["cache"]["requires_authentication"] is True
    assert unhonoured(pipeline, Project(path.parent)) == []
