"""``validate`` and ``grid``: check Orchest files and show a job's runs, without Airflow."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ...config import load_settings
from ...core.errors import OrchestError
from ...core.grid import Grid, load_parameters
from ...core.job import DagKind
from ...core.jobdef import job_definitions
from ...core.pipeline import load_pipeline
from ...core.project import JOB_SUFFIX, PIPELINE_SUFFIX, Project, parameters_file_for
from ...core.scan import Scan, scan_project, scan_projects
from ...core.warnings import unhonoured
from ..boundary import contained

log = logging.getLogger("airflow_orchest_jobs.validate")

def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate", help="check pipelines, parameters, environments and job files",
        description="Check PATH (a pipeline or job file, a project folder or a projects "
        "folder). Exit 0 when valid, 1 with one line per problem on stderr; fields the "
        "plugin ignores print as 'FILE: warning: FIELD: ...' lines and keep exit 0.")
    validate.add_argument("paths", nargs="+", metavar="PATH", type=Path)
    validate.set_defaults(func=run_validate)

    grid = subparsers.add_parser(
        "grid", help="print the runs of a pipeline's parameter grid as JSON",
        description="Print a JSON array, one element per run in grid order.")
    grid.add_argument("pipeline", metavar="PIPELINE_FILE", type=Path)
    grid.add_argument("--parameters", type=Path, metavar="FILE",
                      help="parameters file (default: <pipeline>.parameters.json if present)")
    grid.add_argument("--runs", type=_run_list, metavar="0,3,5",
                      help="comma-separated run indices to keep (default: all)")
    grid.set_defaults(func=run_grid)


def _run_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of run "
                                         "indices such as 0,3,5") from None


def project_root(path: Path) -> Path:
    """The project folder of a file: nearest ancestor holding ``.orchest/``, else its folder."""
    path = path.resolve()
    for folder in path.parents:
        if (folder / ".orchest").is_dir():
            return folder
    return path.parent


def _is_project(folder: Path) -> bool:
    return (folder / ".orchest").is_dir() or any(
        p.is_file() for p in folder.glob("*" + PIPELINE_SUFFIX))


def run_validate(args: argparse.Namespace) -> int:
    """Never a traceback: whatever a path's checks raise is that path's one line."""
    return contained(", ".join(map(str, args.paths)), log, lambda: _validate(args))


def _validate(args: argparse.Namespace) -> int:
    settings = load_settings()
    data_dir = settings.data_dir if settings.data_dir.is_dir() else None
    images = settings.environment_images
    scan = Scan()
    for path in args.paths:
        try:
            _scan_path(path, scan, images, data_dir)
        except Exception as exc:  # one path's boundary
            scan.add(path, exc)
    # The DAG processor's own checks (frozen jobs, two files making one DAG id), so that
    # validate passes exactly the files that become DAGs.
    definitions, problems = job_definitions(scan, settings.store_dir, images)
    for problem in (p for found in problems.values() for p in found):
        print(problem, file=sys.stderr)
    for warning in unhonoured_fields(scan):
        print(warning, file=sys.stderr)
    if problems:
        return 1
    jobs = sum(d.kind is DagKind.JOB for d in definitions)
    print(f"valid: {len(definitions) - jobs} pipeline(s), {jobs} job(s)")
    return 0


def _scan_path(path: Path, scan: Scan, images, data_dir: Path | None) -> None:
    """Add what ``path`` (a file, project or projects folder) holds to ``scan``."""
    if not path.exists():
        scan.add(path, OrchestError.single(path, "", "does not exist"))
    elif path.is_dir():
        if _is_project(path):
            scan_project(Project(path.resolve()), images, data_dir, scan)
        else:
            found = scan_projects(path.resolve(), images, data_dir)
            scan.pipelines += found.pipelines
            scan.jobs += found.jobs
            for file, problems in found.problems.items():
                scan.problems.setdefault(file, []).extend(problems)
    elif not path.name.endswith((PIPELINE_SUFFIX, JOB_SUFFIX)):
        scan.add(path, OrchestError.single(path, "", "is neither a .orchest pipeline nor "
                                           "a .job.json file, nor a folder"))
    else:
        # Scan the whole project (a job needs its pipeline), report this file only.
        target = str(path.resolve())
        root = project_root(path)
        single = scan_project(Project(root), images, data_dir)
        # This file's problems, and the project's own (a project that cannot be walked).
        for file in (target, str(root)):
            for problem in single.problems.get(file, []):
                scan.problems.setdefault(file, []).append(problem)
        scan.pipelines += [p for p in single.pipelines if str(p.pipeline.path) == target]
        scan.jobs += [j for j in single.jobs if str(j.spec.path) == target]


def unhonoured_fields(scan: Scan) -> list[str]:
    """Warning lines for the loaded pipelines (a job's too), each line once: they never
    fail validation, they say what will not happen as in Orchest."""
    loaded = [(p.pipeline, p.project) for p in scan.pipelines]
    loaded += [(j.pipeline, j.project) for j in scan.jobs]
    lines = (str(w) for pipeline, project in loaded for w in unhonoured(pipeline, project))
    return list(dict.fromkeys(lines))


def run_grid(args: argparse.Namespace) -> int:
    """Never a traceback either: an unforeseen exception is the pipeline's one line."""
    return contained(args.pipeline, log, lambda: _grid(args))


def _grid(args: argparse.Namespace) -> int:
    pipeline_path = args.pipeline.resolve()
    pipeline = load_pipeline(pipeline_path, project_root(pipeline_path), check_files=False)
    params_file = args.parameters or parameters_file_for(pipeline_path)
    space = {}
    if args.parameters or params_file.is_file():
        space = load_parameters(params_file, pipeline)
    grid = Grid(pipeline, space, source=str(params_file))
    runs = grid.select(args.runs, source="--runs")
    json.dump([grid.run(i) for i in runs], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
