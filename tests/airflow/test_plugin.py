"""The plugin: entry points, the run-files app (auth, path safety, sandbox) and the link."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from airflow_orchest_jobs.core.layout import StoreLayout
from airflow_orchest_jobs.core.urls import run_file_url
from airflow_orchest_jobs.web.runfiles import resolve_run_file

pytestmark = pytest.mark.airflow


def test_entry_points_are_registered():
    plugins = {e.name: e.value for e in entry_points(group="airflow.plugins")}
    assert plugins["orchest_jobs"] == "airflow_orchest_jobs.plugin:OrchestJobsPlugin"
    providers = {e.value for e in entry_points(group="apache_airflow_provider")}
    assert "airflow_orchest_jobs.provider:get_provider_info" in providers


def test_provider_declares_the_config_section():
    from airflow_orchest_jobs.provider import get_provider_info

    options = get_provider_info()["config"]["orchest_jobs"]["options"]
    assert set(options) == {"projects_dir", "store_dir", "data_dir", "environment_images",
                            "network_mode", "docker_url", "docker_conn_id", "tls_ca_cert",
                            "tls_client_cert", "tls_client_key", "step_user",
                            "max_parallel_pipeline_runs", "registry", "step_memory_limit",
                            "step_pids_limit", "step_tmp_size", "webhooks"}
    for key, option in options.items():  # typed, with an example, for `airflow config`
        assert option["type"] in ("string", "integer"), key
        assert option["example"], key
    # The plugin registers once, through its entry point (test_plugin_loads_once).
    assert "plugins" not in get_provider_info()


#: Prints what Airflow's plugins manager loaded: plugin names and plugin import errors.
_LIST_PLUGINS = """
import json
from airflow import plugins_manager
names = [info["name"] for info in plugins_manager.get_plugin_info()]
print(json.dumps({"names": names, "errors": plugins_manager.get_import_errors()}))
"""


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_plugin_loads_once(lazy, airflow_home):
    """Whether or not Airflow discovers providers eagerly, one plugin and no import error.

    Eager discovery (``lazy_discover_providers = False``) also loads providers' plugins;
    a plugin declared both there and as an entry point was recorded as an import error.
    """
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": lazy}
    out = subprocess.run([sys.executable, "-c", _LIST_PLUGINS], env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded["names"].count("orchest_jobs") == 1, loaded
    assert loaded["errors"] == {}, loaded


def test_public_names_are_the_deep_ones():
    """``from airflow_orchest_jobs import ...`` gives the very objects of the deep paths,
    without passing through a deprecated module path."""
    import warnings

    import airflow_orchest_jobs as aoj
    from airflow_orchest_jobs.config import load_settings
    from airflow_orchest_jobs.core.settings import Settings
    from airflow_orchest_jobs.dag.factory import build_dags
    from airflow_orchest_jobs.operators.step import OrchestStepOperator

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        public = (aoj.build_dags, aoj.OrchestStepOperator, aoj.load_settings, aoj.Settings)
    assert public == (build_dags, OrchestStepOperator, load_settings, Settings)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aoj.nope  # noqa: B018


def test_validate_and_the_dags_read_one_settings_path(tmp_path, monkeypatch, capsys):
    """An environment mapped only in airflow.cfg: validate and the DAG processor agree."""
    from airflow.configuration import conf

    from airflow_orchest_jobs.cli import main
    from airflow_orchest_jobs.dag.factory import build_dags
    from tests.orchest_factory import pipeline_doc, step, write_project

    doc = pipeline_doc([step("s", "s.py", environment="only-in-cfg")])
    write_project(tmp_path / "projects" / "p", doc, environment=False)
    monkeypatch.delenv("AIRFLOW__ORCHEST_JOBS__ENVIRONMENT_IMAGES", raising=False)
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR", str(tmp_path / "projects"))
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(tmp_path / "store"))
    assert main(["validate", str(tmp_path / "projects")]) == 1  # unknown environment
    assert "unknown environment 'only-in-cfg'" in capsys.readouterr().err
    conf.set("orchest_jobs", "environment_images", '{"only-in-cfg": "some-image"}')
    try:
        assert main(["validate", str(tmp_path / "projects")]) == 0
        assert "orchest__p__main" in build_dags()
    finally:
        conf.remove_option("orchest_jobs", "environment_images")


def test_airflow_config_reads_the_section(monkeypatch, tmp_path):
    from airflow_orchest_jobs.config import load_settings

    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__ENVIRONMENT_IMAGES", '{"*": "img:1"}')
    settings = load_settings()
    assert settings.store_dir == tmp_path / "s"
    assert settings.environment_images == {"*": "img:1"}


RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def _run_folder(tmp_path):
    root = StoreLayout(tmp_path).job_run("orchest__p__main", RUN_ID)
    (root / "run-00000" / "project").mkdir(parents=True)
    (root / "run-00000" / "project" / "nb.html").write_text("<html><script>x</script></html>")
    (tmp_path / "secret.txt").write_text("no")
    return root


def test_run_files_never_leave_the_run_folder(tmp_path):
    _run_folder(tmp_path)
    run_id = "manual__2026-01-01T00:00:00+00:00"
    found = resolve_run_file(tmp_path, "orchest__p__main", run_id, "run-00000/project/nb.html")
    assert found is not None and found.name == "nb.html"
    for bad in ("../../../secret.txt", "/etc/passwd", "run-00000/../../x", "run-00000"):
        assert resolve_run_file(tmp_path, "orchest__p__main", run_id, bad) is None
    link = StoreLayout(tmp_path).job_run("orchest__p__main", run_id) / "l"
    link.symlink_to(tmp_path / "secret.txt")
    assert resolve_run_file(tmp_path, "orchest__p__main", run_id, "l") is None


def test_app_requires_auth_and_sandboxes_html(tmp_path, monkeypatch, airflow_home):
    from airflow.api_fastapi.core_api import security
    from fastapi.testclient import TestClient

    from airflow_orchest_jobs.web import app as web_app
    from airflow_orchest_jobs.web.app import create_app

    # The DAG run's existence in Airflow's database is checked for real in
    # tests/views/test_run_files_attacks.py; here it is taken as given.
    monkeypatch.setattr(web_app, "existing_run", lambda session, dag_id, run_id: True)
    monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(tmp_path))
    _run_folder(tmp_path)
    app = create_app()
    client = TestClient(app)
    url = ("/runs/orchest__p__main/manual__2026-01-01T00%3A00%3A00%2B00%3A00/"
           "run-00000/project/nb.html")
    assert client.get(url).status_code in (401, 403)
    # Authentication itself is Airflow's; here only the permission check is replaced.
    app.dependency_overrides[security.get_user] = lambda: object()
    monkeypatch.setattr(security, "_requires_access", lambda **kwargs: None)
    response = client.get(url)
    assert response.status_code == 200
    assert "<script>x</script>" in response.text
    assert response.headers["content-security-policy"].startswith("sandbox")
    assert client.get(url.replace("nb.html", "missing.html")).status_code == 404


def test_url_quotes_run_ids():
    url = run_file_url("orchest__p__main", "manual__2026-01-01T00:00:00+00:00",
                       "run-00001/project/a b.html", "http://host:8080/")
    assert url == ("http://host:8080/orchest-jobs/runs/orchest__p__main/"
                   "manual__2026-01-01T00%3A00%3A00%2B00%3A00/run-00001/project/a%20b.html")
