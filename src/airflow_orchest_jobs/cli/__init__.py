"""``airflow-orchest-jobs`` command line: each command group lives in its own module.

A module in ``COMMAND_MODULES`` exposes ``register(subparsers)``; the parser it adds sets
``func(args) -> int``. Problems a user can fix print as ``FILE: where: what`` lines on
stderr with exit 1, never as a traceback; bad usage exits 2 (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..core.errors import OrchestError

COMMAND_MODULES = (
    "airflow_orchest_jobs.cli.commands.check",  # validate, grid
    "airflow_orchest_jobs.cli.commands.snapshot",  # snapshot create/checkout/list/delete/gc
    "airflow_orchest_jobs.cli.commands.environments",  # environments build/list
    "airflow_orchest_jobs.cli.commands.jobs",  # jobs show/clean
    "airflow_orchest_jobs.cli.commands.importer",  # import (from an Orchest installation)
    "airflow_orchest_jobs.cli.commands.doctor",  # doctor
    "airflow_orchest_jobs.cli.commands.webhooks",  # webhooks list/test
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-orchest-jobs",
        description="Run Orchest pipelines and jobs on Apache Airflow.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OrchestError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

