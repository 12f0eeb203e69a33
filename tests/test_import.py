"""``airflow-orchest-jobs import`` against a real PostgreSQL 15 holding Orchest's schema
and a realistic installation (tests/orchest_installation.py), and against the same
installation served as Orchest's HTTP API; Variables and Connections go to the tests'
Airflow (SQLite home, conftest). The end-to-end run is tests/airflow/test_import_e2e.py.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from airflow_orchest_jobs.cli import main
from airflow_orchest_jobs.orchest_import.airflow_store import AirflowStore
from tests.orchest_db import orchest_db  # noqa: F401 (the session fixture)
from tests.orchest_installation import COOKIE, OrchestApiServer, build

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

SECRETS = ("project-db-secret-1", "job-db-secret-2", "warehouse-token-3", "whsec-slack-4")


@pytest.fixture
def setup(tmp_path, orchest_db, airflow_home, monkeypatch):  # noqa: F811
    tag = uuid.uuid4().hex[:6]
    inst = build(tmp_path / "userdir", tag, "http://127.0.0.1:9/hooks")
    orchest_db.load(inst.rows())
    config = tmp_path / "airflow.cfg"
    config.write_text("[core]\nload_examples = False\n")
    monkeypatch.setenv("AIRFLOW_CONFIG", str(config))
    monkeypatch.delenv("AIRFLOW__ORCHEST_JOBS__MAX_PARALLEL_PIPELINE_RUNS", raising=False)
    return inst, tmp_path / "projects", config, orchest_db


def _import(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["import", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _actions(out: str) -> set[str]:
    """The ACTION column of the table (its first word)."""
    lines = out.splitlines()
    at = lines[0].index("ACTION")
    return {line[at:].split()[0] for line in lines[1:] if len(line) > at and line[at] != " "
            and not line.startswith(("dry run", "applied"))}


def test_import_from_the_database(setup, capsys):
    inst, projects, config, db = setup
    args = ["--db", db.url, "--userdir", str(inst.userdir),
            "--projects-dir", str(projects)]
    analytics, etl = inst.folders["analytics"], inst.folders["etl"]
    # Dry run (the default): the table, every note, nothing written.
    rc, out, err = _import(capsys, *args)
    assert rc == 0, out + err
    assert not projects.exists()
    assert f"orchest_job__{analytics}__nightly-report; cron, active; runs 3 of 4" in out
    assert "cron, cancelled: paused" in out and "one-off at " in out
    assert "job 'Backfill 2023'" in err and "not imported: a finished one-off job" in err
    assert "dry run: nothing was written" in out
    assert "http://127.0.0.1:9/..." in out and "/hooks/slack" not in out  # a URL's path is
    # often its secret (Slack's, Discord's): never printed
    assert "has no image on this Docker engine (looked for orchest-env-" in err or \
        "environment images not checked" in err

    rc, out, err = _import(capsys, *args, "--apply")
    assert rc == 0, out + err
    # Project folders copied unchanged, a job file beside each pipeline.
    source = _files(inst.userdir / "projects" / analytics)
    written = _files(projects / analytics)
    assert {k: v for k, v in written.items() if not k.endswith(".job.json")} == source
    assert sorted(k for k in written if k.endswith(".job.json")) == [
        "hourly-sync.job.json", "nightly-report.job.json", "old-export.job.json",
        "year-end.job.json"]
    nightly = json.loads(written["nightly-report.job.json"])
    assert nightly == {
        "pipeline": "main.orchest", "description": "Nightly report", "schedule": "0 3 * * *",
        "parameters": {"pipeline_parameters": {"city": ["Oslo", "Lima"]},
                       "step-report": {"n": [1, 2]}},
        "runs": [0, 1, 3],
        "env_variables": {
            name: {"airflow_variable": f"orchest_jobenv__{analytics}__nightly-report__{name}"}
            for name in ("DB_PASSWORD", "REPORT_TITLE")},
        "max_retained_pipeline_runs": 5}
    assert json.loads(written["hourly-sync.job.json"])["paused"] is True
    assert json.loads(written["old-export.job.json"])["paused"] is True
    year_end = json.loads(written["year-end.job.json"])
    assert year_end["schedule"] == inst.job("Year end")["next_scheduled_time"].strftime(
        "%Y-%m-%dT%H:%M:%SZ") and "paused" not in year_end and year_end["runs"] == [2]
    etl_job = json.loads((projects / etl / "pipelines/etl/etl-daily.job.json").read_text())
    assert etl_job["pipeline"] == "pipelines/etl/etl.orchest" and etl_job["runs"] == [0, 2, 3, 5]
    assert etl_job["env_variables"] == {"ETL_LEVEL": {
        "airflow_variable": f"orchest_jobenv__{etl}__etl-daily__ETL_LEVEL"}}
    # No secret in any file written.
    for path in projects.rglob("*"):
        if path.is_file():
            assert not any(s.encode() in path.read_bytes() for s in SECRETS), path
    # Variables as the plugin reads them; job-only and overriding values on their own.
    store = AirflowStore()
    assert json.loads(store.variable(f"orchest_env__{analytics}")) == \
        inst.api_projects[0]["env_variables"]
    assert json.loads(store.variable(f"orchest_env__{analytics}__main")) == {
        "SHARED": "from-pipeline", "REGION": "eu-north"}
    assert store.variable(f"orchest_jobenv__{analytics}__nightly-report__DB_PASSWORD") == \
        "job-db-secret-2"
    assert store.variable(f"orchest_jobenv__{etl}__etl-daily__ETL_LEVEL") == "debug"
    assert store.variable(f"orchest_env__{etl}__pipelines_etl_etl") is None  # none in Orchest
    # Webhooks: Connections in the shared contract's shape, and the Variable listing them.
    slack = json.loads(store.connection("orchest_webhook__Slack_alerts"))
    assert slack == {"conn_type": "orchest_webhook",
                     "host": "http://127.0.0.1:9/hooks/slack?team=data",
                     "password": "whsec-slack-4", "extra": {
                         "name": "Slack alerts", "content_type": "application/json",
                         "verify_ssl": True, "subscriptions": [
                             {"event_type": "project:cron-job:run:pipeline-run:failed"},
                             {"event_type": "project:one-off-job:pipeline-run:failed"}]}}
    ops = json.loads(store.connection("orchest_webhook__Ops_form"))
    assert ops["password"] == "" and ops["extra"]["verify_ssl"] is False
    assert ops["extra"]["content_type"] == "application/x-www-form-urlencoded"
    assert ops["extra"]["subscriptions"] == [
        {"event_type": "project:cron-job:run:failed", "project": etl},
        {"event_type": "project:cron-job:run:pipeline-run:failed", "project": analytics,
         "job": f"orchest_job__{analytics}__nightly-report"}]
    assert "subscription to project:one-off-job:succeeded" in err  # the finished job's
    assert {"orchest_webhook__Ops_form", "orchest_webhook__Slack_alerts"} <= set(
        json.loads(store.variable("orchest_jobs_webhooks")))
    assert "[orchest_jobs]\nmax_parallel_pipeline_runs = 3\n" in config.read_text()
    # validate passes on everything written.
    assert main(["validate", str(projects)]) == 0, capsys.readouterr().err
    capsys.readouterr()

    # A second import changes nothing.
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in projects.rglob("*")
              if p.is_file()}
    rc, out, err = _import(capsys, *args, "--apply")
    assert rc == 0, out + err
    assert "applied: 0 item(s) written" in out
    assert _actions(out) == {"unchanged"}, out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in projects.rglob("*")
            if p.is_file()} == before

    # Orchest changed two jobs; a person edited one of their files and a Variable since.
    conn = db.connect("orchest_api")
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE jobs SET schedule = '0 4 * * *' WHERE name IN "
                    "('Nightly report', 'Hourly sync')")
    conn.close()
    hourly = projects / analytics / "hourly-sync.job.json"
    edited = hourly.read_text().replace('"0 * * * *"', '"5 * * * *"')
    hourly.write_text(edited)
    store.set_variable(f"orchest_env__{etl}", '{"WAREHOUSE_TOKEN": "rotated"}')
    rc, out, err = _import(capsys, *args, "--apply")
    assert rc == 0, out + err
    assert json.loads(written_nightly := (projects / analytics / "nightly-report.job.json")
                      .read_text())["schedule"] == "0 4 * * *", written_nightly
    assert hourly.read_text() == edited
    assert f"kept: {analytics}: {analytics}/hourly-sync.job.json: edited since the last " \
           "import" in err
    assert f"Variable orchest_env__{etl}: edited since the last import" in err
    assert store.variable(f"orchest_env__{etl}") == '{"WAREHOUSE_TOKEN": "rotated"}'


def test_one_bad_job_keeps_its_project_unwritten_not_the_others(setup, capsys):
    inst, projects, _, db = setup
    conn = db.connect("orchest_api")
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE jobs SET schedule = '0 0 4 * * *' WHERE name = 'ETL daily'")
    conn.close()
    rc, out, err = _import(capsys, "--db", db.url, "--userdir", str(inst.userdir),
                           "--projects-dir", str(projects), "--apply")
    assert rc == 1, out + err
    etl = inst.folders["etl"]
    [line] = [x for x in err.splitlines() if x.startswith("problem:")] or [err]
    assert f"project {etl}: job 'ETL daily'" in line and "six fields" in line
    assert not (projects / etl).exists()
    assert AirflowStore().variable(f"orchest_env__{etl}") is None
    assert (projects / inst.folders["analytics"] / "nightly-report.job.json").is_file()
    assert f"NOT written because of the problems above: {etl}" in out
    # Leaving the job out imports the rest of its project.
    rc, out, err = _import(capsys, "--db", db.url, "--userdir", str(inst.userdir),
                           "--projects-dir", str(projects), "--apply", "--projects", etl,
                           "--jobs", "nothing-else")
    assert rc == 0, err
    assert (projects / etl / "pipelines/etl/etl.orchest").is_file()


def test_from_job_snapshots(setup, capsys):
    inst, projects, _, db = setup
    analytics = inst.folders["analytics"]
    snapshot = inst.userdir / "jobs" / inst.api_projects[0]["uuid"] / \
        inst.job("Nightly report")["pipeline_uuid"] / inst.job("Nightly report")["uuid"] / \
        "snapshot"
    (snapshot / "frozen.txt").write_text("what Orchest froze\n")
    rc, out, err = _import(capsys, "--db", db.url, "--userdir", str(inst.userdir),
                           "--projects-dir", str(projects), "--apply", "--projects",
                           analytics, "--from-job-snapshots")
    assert rc == 0, out + err
    folder = projects / f"{analytics}--nightly-report"
    assert (folder / "frozen.txt").read_text() == "what Orchest froze\n"
    assert json.loads((folder / "nightly-report.job.json").read_text())["runs"] == [0, 1, 3]
    assert not (projects / analytics).exists()
    assert main(["validate", str(projects)]) == 0, capsys.readouterr().err


def test_import_from_the_api_writes_what_the_database_gives(setup, capsys, tmp_path):
    inst, _, _, db = setup
    store = AirflowStore()
    with OrchestApiServer(inst) as server:
        rc, out, err = _import(capsys, "--api", server.url, "--projects-dir",
                               str(tmp_path / "x"))
        assert rc == 1 and "answered 401 (log in: pass --cookie or --header)" in err
        rc, out, err = _import(capsys, "--api", server.url, "--cookie", COOKIE,
                               "--userdir", str(inst.userdir), "--projects-dir",
                               str(tmp_path / "api"), "--apply")
    assert rc == 0, out + err
    assert "webhooks: Orchest's HTTP API never returns their URLs and secrets" in err
    assert "Connection" not in out
    names = [f"orchest_env__{inst.folders['analytics']}",
             f"orchest_env__{inst.folders['analytics']}__main",
             f"orchest_env__{inst.folders['etl']}",
             f"orchest_jobenv__{inst.folders['analytics']}__nightly-report__DB_PASSWORD",
             f"orchest_jobenv__{inst.folders['analytics']}__nightly-report__REPORT_TITLE",
             f"orchest_jobenv__{inst.folders['etl']}__etl-daily__ETL_LEVEL"]
    from_api = {name: store.variable(name) for name in names}
    assert None not in from_api.values()
    for name in names:
        store.delete_variable(name)
    rc, out, err = _import(capsys, "--db", db.url, "--userdir", str(inst.userdir),
                           "--projects-dir", str(tmp_path / "db"), "--apply")
    assert rc == 0, out + err
    assert {name: store.variable(name) for name in names} == from_api
    assert _files(tmp_path / "api") == {
        k: v for k, v in _files(tmp_path / "db").items()}, "the same files, byte for byte"
    assert os.listdir(tmp_path / "api") == os.listdir(tmp_path / "db")


def test_an_unreachable_database_is_one_line(capsys, airflow_home, tmp_path):
    rc, out, err = _import(capsys, "--db", "postgresql://postgres:pw@127.0.0.1:1/",
                           "--projects-dir", str(tmp_path))
    assert rc == 1 and out == ""
    [line] = err.splitlines()
    assert "cannot connect to database orchest_webserver" in line and "pw@" not in line


def test_an_imported_webhook_gets_a_ping_signed_with_its_imported_secret(
        tmp_path, orchest_db, airflow_home, monkeypatch, capsys):  # noqa: F811
    """Orchest's webhook, URL and secret, carried into a Connection: `webhooks test`
    reaches the receiver Orchest had and signs with the secret Orchest kept."""
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[str, dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tag = uuid.uuid4().hex[:6]
        inst = build(tmp_path / "userdir", tag,
                     f"http://127.0.0.1:{server.server_address[1]}/hooks")
        orchest_db.load(inst.rows())
        config = tmp_path / "airflow.cfg"
        config.write_text("[core]\nload_examples = False\n")
        monkeypatch.setenv("AIRFLOW_CONFIG", str(config))
        monkeypatch.delenv("AIRFLOW__ORCHEST_JOBS__MAX_PARALLEL_PIPELINE_RUNS",
                           raising=False)
        rc, out, err = _import(capsys, "--db", orchest_db.url, "--userdir",
                               str(inst.userdir), "--projects-dir", str(tmp_path / "p"),
                               "--apply")
        assert rc == 0, out + err
        rc = main(["webhooks", "test", "Slack alerts"])
        out, err = capsys.readouterr()
        assert rc == 0, out + err
        assert "HTTP 200" in out and "whsec-slack-4" not in out + err
    finally:
        server.shutdown()
    [(path, headers, body)] = received
    assert path == "/hooks/slack?team=data"
    assert headers["X-Orchest-Event"] == "ping" and headers["User-Agent"] == "Orchest"
    assert headers["X-Hub-Signature"] == hmac.new(b"whsec-slack-4", body,
                                                  hashlib.sha256).hexdigest()
