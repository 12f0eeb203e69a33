"""Read an Orchest installation from its PostgreSQL: databases ``orchest_api`` and
``orchest_webserver``, each in one read-only, repeatable-read transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..core.errors import OrchestError
from ..core.importer.model import (
    Installation,
    OrchestJob,
    OrchestPipeline,
    OrchestProject,
    OrchestSubscription,
    OrchestWebhook,
)

API_DB, WEBSERVER_DB = "orchest_api", "orchest_webserver"


def _connect(url: str, dbname: str) -> Any:
    import psycopg2
    import psycopg2.extensions

    try:
        conn = psycopg2.connect(url, dbname=dbname, connect_timeout=15)
    except psycopg2.Error as exc:
        message = " ".join(str(exc).split())
        raise OrchestError.single("--db", "", f"cannot connect to database {dbname} "
                                  f"({message}); give Orchest's PostgreSQL as "
                                  "postgresql://USER:PASSWORD@HOST:PORT/") from None
    conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
                     readonly=True)
    return conn


def _rows(conn: Any, sql: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    return json.loads(value) if isinstance(value, str) else value


def read_db(url: str) -> Installation:
    """Everything the import needs; nothing is written (read-only transactions)."""
    import psycopg2

    web = _connect(url, WEBSERVER_DB)
    try:
        web_projects = _rows(web, "SELECT uuid, path, status FROM projects")
        web_pipelines = _rows(web, "SELECT uuid, project_uuid, path FROM pipelines")
        web.rollback()
    except psycopg2.Error as exc:
        raise _schema_error(WEBSERVER_DB, exc) from None
    finally:
        web.close()
    api = _connect(url, API_DB)
    try:
        projects = {r["uuid"]: r for r in _rows(api, "SELECT uuid, name, env_variables "
                                                   "FROM projects")}
        pipelines = {(r["project_uuid"], r["uuid"]): r for r in _rows(
            api, "SELECT project_uuid, uuid, env_variables FROM pipelines")}
        jobs = _rows(api, """
            SELECT uuid, name, project_uuid, pipeline_uuid, pipeline_name, schedule,
                   next_scheduled_time, status, strategy_json, parameters, env_variables,
                   max_retained_pipeline_runs, pipeline_run_spec, created_time
            FROM jobs ORDER BY created_time, uuid""")
        settings = {r["name"]: _json(r["value"], {}).get("value")
                    for r in _rows(api, "SELECT name, value FROM settings")}
        hooks = _rows(api, """
            SELECT uuid::text AS uuid, name, url, secret, verify_ssl, content_type
            FROM subscribers WHERE type = 'webhook' ORDER BY name, uuid""")
        subs = _rows(api, """
            SELECT subscriber_uuid::text AS subscriber_uuid, event_type, project_uuid,
                   job_uuid
            FROM subscriptions ORDER BY event_type, project_uuid, job_uuid""")
        api.rollback()
    except psycopg2.Error as exc:
        raise _schema_error(API_DB, exc) from None
    finally:
        api.close()
    out_projects = []
    for row in web_projects:
        api_row = projects.get(row["uuid"], {})
        out_projects.append(OrchestProject(
            uuid=row["uuid"], folder=row["path"],
            env_variables=_json(api_row.get("env_variables"), {})))
    out_pipelines = [OrchestPipeline(
        uuid=row["uuid"], project_uuid=row["project_uuid"], path=row["path"],
        env_variables=_json(pipelines.get((row["project_uuid"], row["uuid"]), {})
                            .get("env_variables"), {}))
        for row in web_pipelines]
    return Installation(
        source="db",
        projects=out_projects,
        pipelines=out_pipelines,
        jobs=[job_from_row(row) for row in jobs],
        webhooks=[OrchestWebhook(
            uuid=h["uuid"], name=h["name"] or "", url=h["url"] or "",
            secret=h["secret"] or "", verify_ssl=bool(h["verify_ssl"]),
            content_type=h["content_type"] or "application/json",
            subscriptions=tuple(OrchestSubscription(s["event_type"], s["project_uuid"],
                                                    s["job_uuid"])
                                for s in subs if s["subscriber_uuid"] == h["uuid"]))
            for h in hooks],
        settings=settings,
    )


def job_from_row(row: dict[str, Any]) -> OrchestJob:
    """A job as the database or the API (``schema.job``) gives it."""
    spec = _json(row.get("pipeline_run_spec"), {}) or {}
    run_config = spec.get("run_config") or {}
    next_time = row.get("next_scheduled_time")
    if isinstance(next_time, str):  # the API serialises with str(): "2023-06-07 03:00:00+00:00"
        next_time = datetime.fromisoformat(next_time) if next_time.strip() else None
    retained = row.get("max_retained_pipeline_runs")
    return OrchestJob(
        uuid=row["uuid"], name=row.get("name") or "job",
        project_uuid=row["project_uuid"], pipeline_uuid=row["pipeline_uuid"],
        schedule=row.get("schedule") or None, next_scheduled_time=next_time,
        status=row.get("status") or "", strategy_json=_json(row.get("strategy_json"), {}),
        parameters=_json(row.get("parameters"), []),
        env_variables=_json(row.get("env_variables"), {}) or {},
        max_retained_pipeline_runs=-1 if retained is None else int(retained),
        pipeline_name=row.get("pipeline_name") or "",
        pipeline_path=run_config.get("pipeline_path"),
        created_time=str(row.get("created_time") or ""))


def _schema_error(dbname: str, exc: Exception) -> OrchestError:
    message = " ".join(str(exc).split())[:300]
    return OrchestError.single("--db", "", f"database {dbname} does not look like "
                               f"Orchest's ({message}); point --db at Orchest's PostgreSQL")
