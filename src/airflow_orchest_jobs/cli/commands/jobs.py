"""``jobs show`` and ``jobs clean``: what each job holds in the store, and cleaning it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...config import load_settings
from ...core.errors import OrchestError
from ...core.jobstate import JobStates
from ...core.layout import StoreLayout, id_of
from ...core.retention import folder_size, pipeline_runs
from ...engine.retire import retire


def register(subparsers) -> None:
    jobs = subparsers.add_parser("jobs", help="show or clean what jobs keep in the store")
    commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    show = commands.add_parser("show", help="frozen jobs, their snapshots, images and runs")
    show.add_argument("dag_ids", nargs="*", metavar="DAG_ID")
    clean = commands.add_parser(
        "clean", help="delete all but the newest N finished pipeline runs of a DAG")
    clean.add_argument("dag_id", metavar="DAG_ID")
    clean.add_argument("--keep", type=int, required=True, metavar="N")
    clean.add_argument("--docker-url", help="Docker engine (to release frozen image tags)")
    for parser in (show, clean):
        parser.add_argument("--store", type=Path, metavar="DIR",
                            help="store folder (default: [orchest_jobs] store_dir)")
    show.set_defaults(func=run_show)
    clean.set_defaults(func=run_clean)


def _store(args: argparse.Namespace) -> Path:
    return args.store or load_settings().store_dir


def run_show(args: argparse.Namespace) -> int:
    store = _store(args)
    dags = sorted({s.extra.get("dag_id", s.job_key.split("/")[0])
                   for s in JobStates(store).all()} |
                  {name for p in StoreLayout(store).runs.glob("*")
                   if p.is_dir() and (name := id_of(p.name)) is not None})
    report = []
    for dag_id in args.dag_ids or dags:
        runs = pipeline_runs(store, dag_id)
        report.append({
            "dag_id": dag_id,
            "jobs": [{"job_key": s.job_key, "snapshot": s.snapshot_id, "images": s.images,
                      "created_at": s.created_at} for s in JobStates(store).all()
                     if s.job_key == dag_id or s.job_key.startswith(dag_id + "/")],
            "pipeline_runs": len(runs),
            "unfinished_runs": sum(r.finished_at is None for r in runs),
            "run_bytes": sum(folder_size(r.path) for r in runs),
        })
    print(json.dumps(report, indent=2))
    return 0


def run_clean(args: argparse.Namespace) -> int:
    if args.keep < 0:
        raise OrchestError.single("--keep", "", "must be 0 or more")
    store = _store(args)
    report = retire(store, args.dag_id, args.keep, args.docker_url or load_settings().docker_url)
    print(f"deleted {report.deleted_runs} pipeline run(s), released "
          f"{len(report.released_jobs)} job(s), freed {report.freed_bytes} bytes")
    return 0
