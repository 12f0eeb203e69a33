"""Every real .orchest file from public projects loads and validates.

The corpus is an optional external input (``$ORCHEST_CORPUS``, else
``../shared/orchest-corpus`` beside the repository, see tests/conftest.py): when it is
absent these tests are skipped, and tests/core/test_fixtures_orchest.py covers every shape
it holds with fixtures of our own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.project import Project
from airflow_orchest_jobs.core.scan import scan_project
from tests.conftest import CORPUS
from tests.orchest_factory import write_environment

PRESENT = CORPUS.is_dir()
pytestmark = pytest.mark.skipif(
    not PRESENT, reason=f"external Orchest corpus not found at {CORPUS} (set ORCHEST_CORPUS)")
PIPELINES = sorted(p for p in CORPUS.rglob("*.orchest") if p.is_file()) if PRESENT else []


def test_corpus_is_present():
    """A folder that is there but holds few pipelines is the wrong folder: fail."""
    assert len(PIPELINES) >= 20, f"{CORPUS} holds {len(PIPELINES)} .orchest files, not a corpus"


def _project_root(path: Path) -> Path:
    """Nearest folder holding ``.orchest/``, else the pipeline's own folder."""
    for folder in path.parents:
        if (folder / ".orchest").is_dir():
            return folder
        if folder == CORPUS:
            break
    return path.parent


@pytest.mark.parametrize("source", PIPELINES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_pipeline_validates(source: Path, tmp_path: Path):
    """Copy the project, give each step the file it names, then validate it fully."""
    root = _project_root(source)
    project = tmp_path / root.name
    shutil.copytree(root, project)
    pipeline_path = project / source.relative_to(root)
    doc = json.loads(pipeline_path.read_text())
    for step in doc["steps"].values():
        target = pipeline_path.parent / step["file_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("# step\n")
        if step.get("environment"):
            known = project / ".orchest" / "environments" / step["environment"]
            if not known.exists():  # the corpus keeps some environments elsewhere
                write_environment(project, step["environment"])
    scan = scan_project(Project(project))
    problems = [str(p) for p in scan.all_problems]
    if ".ipynb_checkpoints" in str(source):
        assert all(str(p.pipeline.path) != str(pipeline_path) for p in scan.pipelines)
        return
    assert problems == []
    loaded = {str(p.pipeline.path): p.pipeline for p in scan.pipelines}
    pipeline = loaded[str(pipeline_path)]
    assert pipeline.version == "1.2.3"
    assert list(pipeline.steps) == list(doc["steps"])
    assert main(["validate", str(pipeline_path)]) == 0


def test_checkpoint_copies_are_not_pipelines():
    project = Project(CORPUS / "atharva253+RNN-Retraining-Pipeline")
    assert [p.name for p in project.pipelines] == ["main.orchest"]


def test_orchest_environment_folders_are_not_pipelines():
    project = Project(CORPUS / "orchest+quickstart")
    assert project.pipelines == [CORPUS / "orchest+quickstart" / "california_housing.orchest"]
    assert list(project.environments) == ["c56ab762-539c-4cce-9b1e-c4b00300ec6f"]


def test_legacy_layout_keeps_step_images():
    path = CORPUS / "ricklamers+nlp-talk-orchest" / "pipeline.orchest"
    pipeline = load_pipeline(path, path.parent, check_files=False)
    assert pipeline.source_version is None
    images = {s.image for s in pipeline.steps.values()}
    assert "orchestsoftware/custom-base-kernel-py:fastai" in images
    assert all(s.environment is None for s in pipeline.steps.values())
    assert pipeline.settings.max_steps_parallelism == 0
