"""``doctor``: is this Airflow deployment able to run Orchest jobs? (read-only)"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from ...core.doctor import exit_code, render_json, render_text
from ..deployment_checks import run_checks


def register(subparsers) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="check this deployment: config, plugin, engine, folders, images, "
        "registry, projects",
        description="Check what running jobs needs, the way a task would: Airflow's config "
        "and [orchest_jobs], the plugin, the Docker engine, data_dir and the store for the "
        "step user, locks on the store, every environment's image, the registry, the "
        "projects. One line per check, with the fix when it fails; exit 1 when one fails. "
        "Nothing is changed (probe files, containers and images are removed again).")
    doctor.add_argument("--json", action="store_true", help="one JSON document instead")
    doctor.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    with _stdout_to_stderr():  # Airflow logs to stdout (loading plugins): not in our report
        checks, settings = run_checks()
    render = render_json if args.json else render_text
    sys.stdout.write(render(checks, settings))
    return exit_code(checks)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 goes to stderr meanwhile (loggers hold their own stdout object)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
