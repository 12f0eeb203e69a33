"""Our own Orchest projects (tests/fixtures/orchest) load, validate and migrate like Orchest.

The fixtures cover every shape found in real Orchest projects: each file version, the
legacy per-step ``image`` layout, old and new services, the ``ir`` kernel, parameters and
parameters files, environments, pipelines in sub-folders, projects folders and stale
``.ipynb_checkpoints`` copies. ``tests/fixtures/orchest/README.md`` maps fixture to shape.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.grid import Grid
from airflow_orchest_jobs.core.pipeline import load_pipeline
from airflow_orchest_jobs.core.project import Project
from airflow_orchest_jobs.core.scan import scan_project, scan_projects
from airflow_orchest_jobs.core.snapshot import select

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "orchest"
#: A projects folder (Orchest's /userdir/projects): every sub-folder is one project.
PROJECTS = FIXTURES / "projects"
#: A repository that is no project itself, with a projects folder deep inside.
DEEP_PROJECTS = FIXTURES / "repo-with-projects" / "ci" / "fixtures" / "projects"
ALL_FILES = sorted(p for p in FIXTURES.rglob("*.orchest") if p.is_file())
CHECKPOINTS = [p for p in ALL_FILES if ".ipynb_checkpoints" in p.parts]
PIPELINES = [p for p in ALL_FILES if p not in CHECKPOINTS]
LATEST = "1.2.3"
SERVICE_NAME = re.compile(r"^[a-z][0-9a-z-]{0,25}$")


def _raw(path: Path) -> dict:
    return json.loads(path.read_text())


def _project_root(path: Path) -> Path:
    """The project holding ``path``: the folder right under a projects folder."""
    for folder in path.parents:
        if folder.parent in (PROJECTS, DEEP_PROJECTS):
            return folder
    raise AssertionError(f"{path} is not inside a fixture project")


def _load(rel: str):
    path = PROJECTS / rel
    return load_pipeline(path, _project_root(path))


def test_fixtures_carry_every_orchest_version():
    versions = {_raw(p).get("version") for p in PIPELINES}
    assert versions == {None, "1.0.0", "1.1.0", "1.2.0", "1.2.1", "1.2.2", "1.2.3"}


@pytest.mark.parametrize("source", PIPELINES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_pipeline_validates_and_migrates(source: Path, capsys):
    """Scan, API and CLI agree: valid, newest version, Orchest's fields all present."""
    raw = _raw(source)
    scan = scan_project(Project(_project_root(source)))
    assert [str(p) for p in scan.all_problems] == []
    pipeline = {p.pipeline.path: p.pipeline for p in scan.pipelines}[source]
    assert pipeline.version == LATEST
    assert pipeline.source_version == raw.get("version")
    assert list(pipeline.steps) == list(raw["steps"])  # file order (the grid's order)
    for step in pipeline.steps.values():
        assert pipeline.step_host_path(step).is_file(), step.file_path

    doc = pipeline.document
    assert doc["version"] == LATEST
    assert isinstance(doc["parameters"], dict)
    settings = raw.get("settings", {})
    assert doc["settings"]["max_steps_parallelism"] == settings.get("max_steps_parallelism", 0)
    assert pipeline.settings.max_steps_parallelism == doc["settings"]["max_steps_parallelism"]
    assert all(isinstance(s["parameters"], dict) for s in doc["steps"].values())
    assert all(s["kernel"]["name"] != "ir" for s in doc["steps"].values())
    for key, service in doc["services"].items():
        assert service["name"] == key and SERVICE_NAME.match(key), key
        assert "entrypoint" not in service
        assert isinstance(service["order"], int)
        assert service["ports"] and isinstance(service["exposed"], bool)
        assert isinstance(service["requires_authentication"], bool)
    orders = [s["order"] for s in doc["services"].values()]
    assert len(orders) == len(set(orders))

    assert main(["validate", str(source)]) == 0
    assert capsys.readouterr().out == "valid: 1 pipeline(s), 0 job(s)\n"


def test_projects_folder_scans_every_pipeline_and_nothing_else(capsys):
    scan = scan_projects(PROJECTS)
    assert scan.problems == {}
    found = sorted((p.project.name, str(p.pipeline.rel_path)) for p in scan.pipelines)
    assert found == [
        ("housing-1-0-0", "main.orchest"),
        ("legacy-images", "pipeline.orchest"),
        ("nested-1-2-3", "main.orchest"),
        ("nested-1-2-3", "pipelines/etl/etl.orchest"),
        ("polyglot-1-2-2", "main.orchest"),
        ("r-python-1-0-0", "main.orchest"),
        ("services-1-0-0", "main.orchest"),
        ("services-1-1-0", "main.orchest"),
        ("services-1-2-0", "main.orchest"),
        ("services-1-2-1", "main.orchest"),
    ]
    assert main(["validate", str(PROJECTS)]) == 0
    assert capsys.readouterr().out == "valid: 10 pipeline(s), 0 job(s)\n"


def test_projects_folder_deep_inside_a_repository(capsys):
    scan = scan_projects(DEEP_PROJECTS)
    assert scan.problems == {}
    assert sorted(p.project.name for p in scan.pipelines) == ["data-passing", "env-params"]
    # A single file: its project is the nearest folder holding .orchest/.
    pipeline = DEEP_PROJECTS / "env-params" / "env-params.orchest"
    assert main(["validate", str(pipeline)]) == 0
    assert main(["validate", str(DEEP_PROJECTS / "data-passing")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "valid: 1 pipeline(s), 0 job(s)", "valid: 1 pipeline(s), 0 job(s)"]


def test_pipeline_in_a_sub_folder_resolves_paths_from_its_own_folder():
    pipeline = _load("nested-1-2-3/pipelines/etl/etl.orchest")
    assert str(pipeline.rel_path) == "pipelines/etl/etl.orchest"
    paths = [pipeline.step_container_path(s) for s in pipeline.steps.values()]
    assert paths == ["/project-dir/pipelines/etl/extract.py",
                     "/project-dir/pipelines/etl/transform.ipynb",
                     "/project-dir/scripts/load.sh"]


def test_stale_checkpoint_copies_are_skipped(capsys):
    project = PROJECTS / "nested-1-2-3"
    assert sorted(str(p.relative_to(project)) for p in CHECKPOINTS) == [
        ".ipynb_checkpoints/main-checkpoint.orchest",
        "pipelines/etl/.ipynb_checkpoints/etl-checkpoint.orchest",
    ]
    assert Project(project).pipelines == [project / "main.orchest",
                                          project / "pipelines" / "etl" / "etl.orchest"]
    # Were they read, the stale copies would fail: they name files renamed since.
    for stale, missing in zip(CHECKPOINTS, ["prepare_old.py", "extract_v0.py"], strict=True):
        with pytest.raises(OrchestError, match=missing):
            load_pipeline(stale, project)
    assert main(["validate", str(project)]) == 0
    assert capsys.readouterr().out == "valid: 2 pipeline(s), 0 job(s)\n"


def test_legacy_layout_keeps_step_images_and_gets_default_settings():
    pipeline = _load("legacy-images/pipeline.orchest")
    assert pipeline.source_version is None
    assert [s.image for s in pipeline.steps.values()] == [
        "orchestsoftware/custom-base-kernel-py:nlp",
        "orchestsoftware/custom-base-kernel-py:nlp",
        "orchest/base-kernel-py",
    ]
    assert all(s.environment is None for s in pipeline.steps.values())
    assert pipeline.environments == ()
    assert pipeline.parameters == {} and pipeline.services == {}
    assert pipeline.document["settings"] == {
        "auto_eviction": False, "data_passing_memory_size": "1GB", "max_steps_parallelism": 0}
    assert Project(PROJECTS / "legacy-images").environments == {}


def test_1_0_0_gains_parameters_and_the_ir_kernel_becomes_r():
    path = PROJECTS / "r-python-1-0-0" / "main.orchest"
    assert "parameters" not in _raw(path)
    pipeline = _load("r-python-1-0-0/main.orchest")
    assert pipeline.parameters == {}
    assert [s.kernel for s in pipeline.steps.values()] == ["python", "r", "r"]
    kernels = [s["kernel"] for s in pipeline.document["steps"].values()]
    assert kernels[1] == {"name": "r", "display_name": "R"}
    assert [s.file_path for s in pipeline.steps.values()][-1] == "plot.R"


def test_1_0_0_services_are_reshaped():
    services = _load("services-1-0-0/main.orchest").services
    assert list(services) == ["streamlit", "postgres", "vscode"]
    streamlit = services["streamlit"]
    assert streamlit["command"] == "bash"  # was the entrypoint
    assert streamlit["args"] == "-c 'umask 002 && streamlit run src/dashboard.py'"
    assert streamlit["binds"] == {"/data": "/data", "/project-dir": "/usr/src/app/src"}
    assert streamlit["image"] == "environment@7c788682-4361-4f71-81f2-92b8ecd9e1c0"
    assert (streamlit["exposed"], streamlit["requires_authentication"]) == (False, True)
    postgres = services["postgres"]
    assert postgres["command"] == "" and "args" not in postgres  # no entrypoint: kept
    assert postgres["ports"] == [5432]  # filled in from the image, as Orchest did
    assert postgres["env_variables"] == {"POSTGRES_HOST_AUTH_METHOD": "trust",
                                         "POSTGRES_DB": "sales"}
    assert services["vscode"]["scope"] == ["interactive"]
    assert {k: s["order"] for k, s in services.items()} == {
        "postgres": 0, "streamlit": 1, "vscode": 2}


def test_1_1_0_services_are_reshaped():
    services = _load("services-1-1-0/main.orchest").services
    assert (services["api"]["command"], services["api"]["args"]) == (
        "bash", "-c 'python -m http.server 8000'")
    assert services["api"]["ports"] == [8080]  # no known image: Orchest's default
    assert services["cache"]["command"] == "redis-server --appendonly yes"
    assert services["cache"]["ports"] == [6379]
    assert {k: s["order"] for k, s in services.items()} == {"api": 0, "cache": 1}


def test_1_2_0_services_gain_an_order_and_nothing_else():
    path = PROJECTS / "services-1-2-0" / "main.orchest"
    services = _load("services-1-2-0/main.orchest").services
    assert {k: s["order"] for k, s in services.items()} == {"db": 0, "mlflow": 1}
    without_order = {k: {f: v for f, v in s.items() if f != "order"}
                     for k, s in services.items()}
    assert without_order == _raw(path)["services"]


def test_1_2_1_service_names_become_rfc_1035_safe():
    services = _load("services-1-2-1/main.orchest").services
    assert list(services) == ["postgres", "redis"]
    assert services["postgres"]["name"] == "postgres"
    assert [s["order"] for s in services.values()] == [267, 268]


def test_1_2_2_gains_max_steps_parallelism():
    path = PROJECTS / "polyglot-1-2-2" / "main.orchest"
    assert "max_steps_parallelism" not in _raw(path)["settings"]
    pipeline = _load("polyglot-1-2-2/main.orchest")
    assert pipeline.document["settings"]["max_steps_parallelism"] == 0
    assert [s.kernel for s in pipeline.steps.values()] == ["julia", "julia", "javascript"]


def test_newest_version_is_left_as_written():
    path = PROJECTS / "nested-1-2-3" / "main.orchest"
    pipeline = _load("nested-1-2-3/main.orchest")
    assert pipeline.document == _raw(path)
    assert (pipeline.settings.max_steps_parallelism, pipeline.settings.auto_eviction,
            pipeline.settings.data_passing_memory_size) == (2, True, "512MB")


def test_parameters_file_sets_the_default_grid(capsys):
    project = PROJECTS / "housing-1-0-0"
    [loaded] = scan_project(Project(project)).pipelines
    assert loaded.parameters_file == project / "main.parameters.json"
    grid = Grid(loaded.pipeline, loaded.parameters)
    get_data = "1083563e-02aa-44bc-b289-b052dc75c29d"
    runs = list(grid)
    assert [(r["pipeline_parameters"]["year"], r[get_data]["limit"]) for r in runs] == [
        (2021, 10), (2021, 100), (2021, 1000), (2022, 10), (2022, 100), (2022, 1000)]
    # What the file leaves out keeps the pipeline's value: the pipeline and step defaults.
    assert runs[0]["pipeline_parameters"] == {"year": 2021, "region": "north"}
    assert runs[0][get_data]["columns"] == ["rooms", "price"]
    assert runs[0][get_data]["note"] is None
    # The two steps sharing status.py keep their own parameters.
    assert runs[0]["2de7ec3b-158e-4541-9bea-5edcddd3eec0"] == {"action": "start"}
    assert runs[0]["3e22c09b-5d7b-4012-8725-f910bab0de4b"] == {"action": "poll"}

    assert main(["grid", str(project / "main.orchest")]) == 0
    assert json.loads(capsys.readouterr().out) == runs


def test_parameters_file_beside_a_pipeline_in_a_sub_folder():
    project = PROJECTS / "nested-1-2-3"
    loaded = {str(p.pipeline.rel_path): p for p in scan_project(Project(project)).pipelines}
    etl = loaded["pipelines/etl/etl.orchest"]
    assert etl.parameters_file == project / "pipelines" / "etl" / "etl.parameters.json"
    runs = list(Grid(etl.pipeline, etl.parameters))
    transform = "b4cfde1a-2e08-4ea8-8b70-4c17f8692781"
    assert [(r["pipeline_parameters"]["source"], r[transform]["threshold"]) for r in runs] == [
        ("eu", 0.25), ("eu", 0.75), ("us", 0.25), ("us", 0.75)]
    assert loaded["main.orchest"].parameters_file is None


@pytest.mark.parametrize(("project", "languages"), [
    ("housing-1-0-0", ["python"]),
    ("r-python-1-0-0", ["python", "r"]),
    ("polyglot-1-2-2", ["javascript", "julia"]),
])
def test_environments_are_read_and_are_not_pipelines(project: str, languages: list[str]):
    found = Project(PROJECTS / project)
    envs = found.environments
    assert sorted(e.language for e in envs.values()) == languages
    for env_uuid, env in envs.items():
        props = _raw(env.folder / "properties.json")
        assert (env.uuid, env.name, env.base_image, env.gpu_support) == (
            env_uuid, props["name"], props["base_image"], False)
        assert env.setup_script.read_text().startswith("#!/bin/bash\n")
    assert found.pipelines == [PROJECTS / project / "main.orchest"]


def test_project_gitignore_keeps_files_out_of_the_snapshot(tmp_path: Path):
    """Orchest-style .gitignore: ignored files and Orchest's run output stay out."""
    project = tmp_path / "services-1-0-0"
    shutil.copytree(PROJECTS / "services-1-0-0", project)
    extra = [".env", "__pycache__/load.cpython-311.pyc", ".ipynb_checkpoints/x-checkpoint.py",
             ".orchest/pipelines/471cf618-7b77-4449-8070-3e1016a725f7/logs/step.log",
             ".orchest/pipelines/471cf618-7b77-4449-8070-3e1016a725f7/data/HEAD"]
    for rel in extra:
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x\n")
    kept = {f.path for f in select(project).files}
    assert kept == {
        ".gitignore", "main.orchest", "load.py", "query.ipynb", "dashboard.py",
        ".orchest/environments/7c788682-4361-4f71-81f2-92b8ecd9e1c0/properties.json",
        ".orchest/environments/7c788682-4361-4f71-81f2-92b8ecd9e1c0/setup_script.sh",
    }
    assert Project(project).pipelines == [project / "main.orchest"]
