"""A realistic Orchest installation, as rows of its two databases, as answers of its
HTTP API (shaped by Orchest's marshalling schemas, ``schema.py``), and as its
``/userdir`` (project folders and job snapshots). Test data, not a mock of the plugin.

Three projects; cron jobs active, paused and cancelled; a one-off job in the future and
a finished one; grids with deselected runs; project, pipeline and job variables with
secrets (one job variable overriding a project secret, one set only on a job); two
webhooks with global, project and job subscriptions; MAX_JOB_RUNS_PARALLELISM = 3.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.orchest_factory import pipeline_doc, step, write_project

#: The step of the analytics pipeline: what Orchest's step saw, as JSON in /data.
REPORT_PY = '''import json, os
import orchest
out = {"city": orchest.get_pipeline_param("city"), "n": orchest.get_step_param("n"),
       "env": {k: v for k, v in os.environ.items() if not k.startswith(("ORCHEST_", "PATH",
               "HOME", "HOSTNAME", "LANG", "PYTHON", "GPG", "TERM", "SHLVL", "PWD", "_"))}}
folder = "/data/" + os.environ["OUT_DIR"]
os.makedirs(folder, exist_ok=True)
with open(f"{folder}/{os.environ['ORCHEST_SESSION_UUID']}.json", "w") as f:
    json.dump(out, f)
'''

COOKIE = "auth_token=orchest-login-7f3a"


def _u(tag: str, name: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"{tag}/{name}"))


@dataclass
class Installation:
    tag: str
    userdir: Path
    now: datetime
    folders: dict[str, str] = field(default_factory=dict)  # short name -> folder
    api_projects: list[dict[str, Any]] = field(default_factory=list)
    api_pipelines: list[dict[str, Any]] = field(default_factory=list)
    web_projects: list[dict[str, Any]] = field(default_factory=list)
    web_pipelines: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    subscribers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    settings: list[dict[str, Any]] = field(default_factory=list)

    def rows(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        return {
            "orchest_webserver": {"projects": self.web_projects,
                                  "pipelines": self.web_pipelines},
            "orchest_api": {"settings": self.settings, "projects": self.api_projects,
                            "pipelines": self.api_pipelines, "snapshots": self.snapshots,
                            "jobs": self.jobs, "subscribers": self.subscribers,
                            "subscriptions": self.subscriptions},
        }

    def job(self, name: str) -> dict[str, Any]:
        return next(j for j in self.jobs if j["name"] == name)

    # -- building ------------------------------------------------------------------------
    def project(self, short: str, env: dict[str, str]) -> str:
        folder = f"{short}-{self.tag}"
        self.folders[short] = folder
        puuid = _u(self.tag, short)
        self.web_projects.append({"uuid": puuid, "path": folder, "status": "READY"})
        self.api_projects.append({"uuid": puuid, "name": folder, "env_variables": env})
        return puuid

    def pipeline(self, puuid: str, short: str, rel: str, doc: dict, env: dict[str, str],
                 files: dict[str, str] | None = None) -> str:
        folder = self.userdir / "projects" / self.folders[short]
        write_project(folder, doc, name=rel, files=files)
        self.web_pipelines.append({"uuid": doc["uuid"], "project_uuid": puuid, "path": rel,
                                   "status": "READY"})
        self.api_pipelines.append({"project_uuid": puuid, "uuid": doc["uuid"],
                                   "name": doc["name"], "env_variables": env})
        return str(doc["uuid"])

    def add_job(self, puuid: str, short: str, pluuid: str, rel: str, name: str, *,
                schedule: str | None, status: str, strategy: dict[str, dict[str, list]],
                selected: list[dict], env: dict[str, str], next_time: datetime | None = None,
                retained: int = -1, created: int = 0) -> str:
        juuid = _u(self.tag, "job/" + name)
        suuid = _u(self.tag, "snapshot/" + name)
        project = next(p for p in self.api_projects if p["uuid"] == puuid)
        pipelines = [p for p in self.api_pipelines if p["project_uuid"] == puuid]
        doc = json.loads((self.userdir / "projects" / self.folders[short] / rel).read_text())
        self.snapshots.append({
            "uuid": suuid, "project_uuid": puuid,
            "pipelines": {p["uuid"]: {"path": rel, "definition": doc} for p in pipelines},
            "project_env_variables": project["env_variables"],
            "pipelines_env_variables": {p["uuid"]: p["env_variables"] for p in pipelines}})
        strategy_json = {}
        for key, params in strategy.items():
            title = doc["name"] if key == "pipeline_parameters" else doc["steps"][key]["title"]
            strategy_json[key] = {"key": key, "title": title,
                                  "parameters": {k: json.dumps(v) for k, v in params.items()}}
        self.jobs.append({
            "name": name, "pipeline_name": doc["name"], "uuid": juuid, "project_uuid": puuid,
            "pipeline_uuid": pluuid, "schedule": schedule, "parameters": selected,
            "pipeline_definition": doc,
            "pipeline_run_spec": {
                "uuids": list(doc["steps"]), "project_uuid": puuid, "run_type": "full",
                "run_config": {"project_dir": f"/userdir/projects/{self.folders[short]}",
                               "pipeline_path": rel, "userdir_pvc": "userdir-pvc"},
                "scheduled_start": None},
            "next_scheduled_time": next_time,
            "last_scheduled_time": self.now - timedelta(days=1) if schedule else None,
            "total_scheduled_executions": 3 if schedule else 0,
            "total_scheduled_pipeline_runs": 9 if schedule else 0,
            "status": status, "strategy_json": strategy_json, "env_variables": env,
            "created_time": datetime(2023, 3, 1, 12, created, tzinfo=timezone.utc
                                     ).replace(tzinfo=None),
            "max_retained_pipeline_runs": retained, "snapshot_uuid": suuid})
        snapshot = self.userdir / "jobs" / puuid / pluuid / juuid / "snapshot"
        shutil.copytree(self.userdir / "projects" / self.folders[short], snapshot)
        return juuid


def build(userdir: Path, tag: str, hook_base: str, now: datetime | None = None
          ) -> Installation:
    """Write the userdir and return the rows of Orchest's databases."""
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    inst = Installation(tag=tag, userdir=userdir, now=now)
    # analytics: the e2e project; its step reports its parameters and variables.
    p1 = inst.project("analytics", {"API_URL": "https://api.example.com/v2",
                                    "DB_PASSWORD": "project-db-secret-1",
                                    "SHARED": "from-project", "OUT_DIR": f"imported-{tag}"})
    main = pipeline_doc([step("step-report", "report.py", parameters={"n": 1},
                              title="Report")], parameters={"city": "Oslo"},
                        uuid=_u(tag, "pipeline/main"), name="Daily report")
    pl1 = inst.pipeline(p1, "analytics", "main.orchest", main,
                        {"SHARED": "from-pipeline", "REGION": "eu-north"},
                        files={"report.py": REPORT_PY})
    merged = {"API_URL": "https://api.example.com/v2", "DB_PASSWORD": "project-db-secret-1",
              "SHARED": "from-pipeline", "REGION": "eu-north", "OUT_DIR": f"imported-{tag}"}
    grid = {"pipeline_parameters": {"city": ["Oslo", "Lima"]}, "step-report": {"n": [1, 2]}}
    runs = [{"pipeline_parameters": {"city": c}, "step-report": {"n": n}}
            for c in ("Oslo", "Lima") for n in (1, 2)]
    inst.add_job(p1, "analytics", pl1, "main.orchest", "Nightly report", schedule="0 3 * * *",
                 status="STARTED", strategy=grid, selected=[runs[0], runs[1], runs[3]],
                 env={**merged, "DB_PASSWORD": "job-db-secret-2", "REPORT_TITLE": "Nightly"},
                 next_time=now + timedelta(hours=5), retained=5, created=1)
    inst.add_job(p1, "analytics", pl1, "main.orchest", "Hourly sync", schedule="0 * * * *",
                 status="PAUSED", strategy={"pipeline_parameters": {"city": ["Oslo"]},
                                            "step-report": {"n": [1]}},
                 selected=[runs[0]], env=dict(merged), next_time=None, created=2)
    inst.add_job(p1, "analytics", pl1, "main.orchest", "Old export", schedule="30 2 * * 1",
                 status="ABORTED", strategy=grid, selected=runs, env=dict(merged), created=3)
    inst.add_job(p1, "analytics", pl1, "main.orchest", "Year end", schedule=None,
                 status="PENDING", strategy=grid, selected=[runs[2]], env=dict(merged),
                 next_time=now + timedelta(days=30), created=4)
    finished = inst.add_job(p1, "analytics", pl1, "main.orchest", "Backfill 2023",
                            schedule=None, status="SUCCESS", strategy=grid, selected=runs,
                            env=dict(merged), created=5)
    # etl: a nested pipeline, a pipeline and a step grid, a variable set only on the job.
    p2 = inst.project("etl", {"WAREHOUSE_TOKEN": "warehouse-token-3"})
    etl = pipeline_doc([step("step-extract", "extract.py", parameters={"batch": 10},
                             title="Extract"),
                        step("step-load", "load.py", incoming=["step-extract"],
                             title="Load")],
                       parameters={"mode": "full"}, uuid=_u(tag, "pipeline/etl"), name="ETL")
    pl2 = inst.pipeline(p2, "etl", "pipelines/etl/etl.orchest", etl, {})
    etl_runs = [{"pipeline_parameters": {"mode": m}, "step-extract": {"batch": b}}
                for m in ("full", "delta") for b in (10, 20, 30)]
    inst.add_job(p2, "etl", pl2, "pipelines/etl/etl.orchest", "ETL daily",
                 schedule="15 4 * * *", status="STARTED",
                 strategy={"pipeline_parameters": {"mode": ["full", "delta"]},
                           "step-extract": {"batch": [10, 20, 30]}},
                 selected=[etl_runs[i] for i in (0, 2, 3, 5)],
                 env={"WAREHOUSE_TOKEN": "warehouse-token-3", "ETL_LEVEL": "debug"},
                 next_time=now + timedelta(hours=2), created=6)
    # ml-lab: no variables, no parameters.
    p3 = inst.project("ml-lab", {})
    train = pipeline_doc([step("step-train", "train.py", title="Train")],
                         uuid=_u(tag, "pipeline/train"), name="Train")
    pl3 = inst.pipeline(p3, "ml-lab", "train.orchest", train, {})
    inst.add_job(p3, "ml-lab", pl3, "train.orchest", "Weekly train", schedule="0 6 * * 0",
                 status="STARTED", strategy={}, selected=[{}], env={},
                 next_time=now + timedelta(days=3), created=7)
    # Webhooks: one global (the UI's "a job run fails" toggle), one per project and job.
    slack, ops = _u(tag, "hook/slack"), _u(tag, "hook/ops")
    inst.subscribers += [
        {"uuid": slack, "type": "webhook", "url": f"{hook_base}/slack?team=data",
         "name": "Slack alerts", "verify_ssl": True, "secret": "whsec-slack-4",
         "content_type": "application/json"},
        {"uuid": ops, "type": "webhook", "url": f"{hook_base}/ops", "name": "Ops form",
         "verify_ssl": False, "secret": "", "content_type":
         "application/x-www-form-urlencoded"}]
    nightly = inst.job("Nightly report")["uuid"]
    for i, (hook, event, kind, project, job) in enumerate([
            (slack, "project:one-off-job:pipeline-run:failed", "globally_scoped_subscription",
             None, None),
            (slack, "project:cron-job:run:pipeline-run:failed", "globally_scoped_subscription",
             None, None),
            (ops, "project:cron-job:run:failed", "project_specific_subscription", p2, None),
            (ops, "project:cron-job:run:pipeline-run:failed",
             "project_job_specific_subscription", p1, nightly),
            (ops, "project:one-off-job:succeeded", "project_job_specific_subscription", p1,
             finished)]):
        inst.subscriptions.append({"uuid": _u(tag, f"sub/{i}"), "subscriber_uuid": hook,
                                   "event_type": event, "type": kind,
                                   "project_uuid": project, "job_uuid": job})
    inst.settings += [
        {"name": "MAX_JOB_RUNS_PARALLELISM", "value": {"value": 3}, "requires_restart": False},
        {"name": "TELEMETRY_DISABLED", "value": {"value": True}, "requires_restart": False}]
    return inst


# -- Orchest's HTTP API over the same installation ---------------------------------------
def _time(value: Any) -> str | None:
    """flask_restx ``fields.String`` on a datetime: ``str()``."""
    return None if value is None else str(value)


def marshal_job(job: dict[str, Any], with_env: bool) -> dict[str, Any]:
    """``schema.job``: every field, times as str(), env_variables only in the detail."""
    out = {k: job[k] for k in (
        "uuid", "project_uuid", "pipeline_uuid", "total_scheduled_executions",
        "total_scheduled_pipeline_runs", "pipeline_definition", "parameters", "schedule",
        "status", "pipeline_name", "name", "strategy_json", "max_retained_pipeline_runs",
        "snapshot_uuid")}
    out["next_scheduled_time"] = _time(job["next_scheduled_time"])
    out["last_scheduled_time"] = _time(job["last_scheduled_time"])
    out["created_time"] = _time(job["created_time"])
    out["pipeline_run_spec"] = job["pipeline_run_spec"]
    out["env_variables"] = job["env_variables"] if with_env else None
    out["pipeline_run_status_counts"] = None
    return out


class OrchestApiServer:
    """Orchest's webserver paths on 127.0.0.1, requiring its login cookie."""

    def __init__(self, inst: Installation):
        routes: dict[str, Any] = {
            "/async/projects?skip_discovery=true": [
                {**p, "pipeline_count": 1, "job_count": 1, "environment_count": 1}
                for p in inst.web_projects],
            "/async/pipelines": {"success": True, "result": [
                {**p, "name": "pipeline"} for p in inst.web_pipelines]},
            "/catch/api-proxy/api/jobs/": {"jobs": [marshal_job(j, False) for j in
                                                    inst.jobs]},
            "/catch/api-proxy/api/ctl/orchest-settings": {
                "MAX_BUILDS_PARALLELISM": 1, "MAX_INTERACTIVE_RUNS_PARALLELISM": 1,
                "AUTH_ENABLED": True, "TELEMETRY_DISABLED": True,
                **{s["name"]: s["value"]["value"] for s in inst.settings}},
        }
        for p in inst.api_projects:
            routes[f"/catch/api-proxy/api/projects/{p['uuid']}"] = {
                "uuid": p["uuid"], "env_variables": p["env_variables"]}
        for p in inst.api_pipelines:
            routes[f"/catch/api-proxy/api/pipelines/{p['project_uuid']}/{p['uuid']}"] = {
                "project_uuid": p["project_uuid"], "uuid": p["uuid"],
                "env_variables": p["env_variables"]}
        for j in inst.jobs:
            routes[f"/catch/api-proxy/api/jobs/{j['uuid']}"] = marshal_job(j, True)
        self.requests: list[str] = []
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self.requests.append(self.path)
                if COOKIE not in (self.headers.get("Cookie") or ""):
                    self._send(401, {"message": "login required"})
                elif self.path not in routes:
                    self._send(404, {"message": "not found"})
                else:
                    self._send(200, routes[self.path])

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OrchestApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
