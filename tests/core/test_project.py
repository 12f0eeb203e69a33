"""Project discovery: pipelines, jobs and environments; ignored places are skipped."""

from __future__ import annotations

from airflow_orchest_jobs.core.project import Project, discover_projects, project_uuid
from tests.orchest_factory import pipeline_doc, step, write_project


def test_discovery_skips_ignored_checkpoints_and_folders_named_like_pipelines(tmp_path):
    doc = pipeline_doc([step("s", "a.py")])
    write_project(tmp_path / "p", doc)
    write_project(tmp_path / "p", doc, name="sub/other.orchest", environment=False)
    write_project(tmp_path / "p", doc, name="scratch/old.orchest", environment=False)
    write_project(tmp_path / "p", doc, name=".ipynb_checkpoints/main-checkpoint.orchest",
                  environment=False)
    (tmp_path / "p" / ".gitignore").write_text("scratch/\n")
    (tmp_path / "p" / "folder.orchest").mkdir()
    (tmp_path / "p" / "nightly.job.json").write_text("{}")
    project = Project(tmp_path / "p")
    assert [p.relative_to(project.path).as_posix() for p in project.pipelines] == [
        "main.orchest", "sub/other.orchest"]
    assert [p.name for p in project.job_files] == ["nightly.job.json"]
    assert list(project.environments) == ["2f0a0e0c-3c3e-4c4b-9d0a-5f1e2d3c4b5a"]


def test_projects_and_stable_uuid(tmp_path):
    for name in ("b", "a", ".hidden"):
        (tmp_path / name).mkdir()
    assert [p.name for p in discover_projects(tmp_path)] == ["a", "b"]
    assert project_uuid("a") == project_uuid("a") != project_uuid("b")
    assert Project(tmp_path / "a").uuid == project_uuid("a")
