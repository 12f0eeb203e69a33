"""``import``: move an Orchest installation's jobs, variables, webhooks and settings over.

A dry run (the default) prints the table of what would be written and every problem;
``--apply`` writes it. Reading is here; the mapping is ``core.importer``, the writing
``orchest_import.writer``.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone
from pathlib import Path

from ...config import load_settings
from ...core.errors import OrchestError
from ...core.importer.model import OrchestJob, OrchestProject
from ...core.importer.plan import Sources, plan_import
from ...orchest_import.airflow_store import AirflowStore
from ...orchest_import.api import read_api
from ...orchest_import.db import read_db
from ...orchest_import.images import missing_image_notes
from ...orchest_import.manifest import Manifest
from ...orchest_import.writer import Importer
from ..boundary import contained

log = logging.getLogger("airflow_orchest_jobs.import")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="move Orchest's jobs, variables, webhooks and settings over",
        description="Read an Orchest installation (its PostgreSQL with --db, or its HTTP API "
        "with --api) and write its projects, one <name>.job.json per job, project, pipeline "
        "and job variables as Airflow Variables, webhooks as Connections and "
        "MAX_JOB_RUNS_PARALLELISM as [orchest_jobs] max_parallel_pipeline_runs. A dry run "
        "(default) prints what would be written and every problem; --apply writes, all or "
        "nothing per project. Running it twice changes nothing; files, Variables and "
        "Connections edited since the last import are kept.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", metavar="URL", help="Orchest's PostgreSQL, e.g. "
                        "postgresql://postgres@HOST:5432/ (both databases are read; the "
                        "password may come from PGPASSWORD)")
    source.add_argument("--api", metavar="URL", help="Orchest's web address (webhooks "
                        "cannot be imported this way)")
    parser.add_argument("--cookie", action="append", default=[], metavar="NAME=VALUE",
                        help="a cookie sent to --api (Orchest's login cookie); repeatable")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a header sent to --api; repeatable")
    parser.add_argument("--userdir", type=Path, metavar="PATH",
                        help="Orchest's /userdir (mounted or copied): project folders are "
                        "copied from its projects/ into projects_dir")
    parser.add_argument("--projects-dir", type=Path, metavar="PATH",
                        help="where projects go (default: [orchest_jobs] projects_dir)")
    parser.add_argument("--projects", nargs="+", default=[], metavar="NAME",
                        help="only these projects (folder names or uuids)")
    parser.add_argument("--jobs", nargs="+", default=[], metavar="NAME",
                        help="only these jobs (names, file names or uuids)")
    parser.add_argument("--from-job-snapshots", action="store_true",
                        help="each job runs its frozen Orchest snapshot (userdir/jobs/...): "
                        "copied as a project folder of its own, <project>--<job>")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="apply", action="store_false",
                      help="print what would be written (the default)")
    mode.add_argument("--apply", dest="apply", action="store_true", help="write it")
    parser.set_defaults(func=run_import, apply=False)


def _headers(args: argparse.Namespace) -> dict[str, str]:
    headers: dict[str, str] = {}
    for text in args.header:
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise OrchestError.single("--header", "", f"{text!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    if args.cookie:
        headers["Cookie"] = "; ".join(args.cookie)
    return headers


def run_import(args: argparse.Namespace) -> int:
    return contained("import", log, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    projects_dir = (args.projects_dir or settings.projects_dir).absolute()
    if args.apply:
        projects_dir.mkdir(parents=True, exist_ok=True)
    userdir = args.userdir.absolute() if args.userdir else None
    if userdir is not None and not (userdir / "projects").is_dir():
        raise OrchestError.single(str(userdir), "", "has no projects/ folder; give Orchest's "
                                  "/userdir (the folder holding projects/ and jobs/)")
    if args.from_job_snapshots and userdir is None:
        raise OrchestError.single("--from-job-snapshots", "", "needs --userdir (the "
                                  "snapshots are in its jobs/ folder)")
    installation = read_db(args.db) if args.db else read_api(args.api, _headers(args))

    def project_dir(project: OrchestProject) -> Path | None:
        if userdir is None:
            return None
        folder = userdir / "projects" / project.folder
        return folder if folder.is_dir() else None

    def snapshot_dir(job: OrchestJob) -> Path | None:
        assert userdir is not None
        folder = userdir / "jobs" / job.project_uuid / job.pipeline_uuid / job.uuid / "snapshot"
        return folder if folder.is_dir() else None

    def existing_dir(folder: str) -> Path | None:
        path = projects_dir / folder
        return path if path.is_dir() else None

    store = AirflowStore()
    manifest = Manifest.load(projects_dir, None)
    plan = plan_import(
        installation,
        Sources(project_dir, snapshot_dir if args.from_job_snapshots else None, existing_dir),
        datetime.now(timezone.utc), projects=args.projects, jobs=args.jobs,
        known_files=manifest.jobs)
    plan.notes += missing_image_notes(plan, settings)
    return Importer(plan, projects_dir, store).run(args.apply)
