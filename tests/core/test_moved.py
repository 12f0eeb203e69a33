"""The module paths before the layered layout still import, as the new modules, with a warning."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

from airflow_orchest_jobs._moved import MOVED, PACKAGE


def test_every_new_path_exists():
    missing = [new for new in MOVED.values()
               if importlib.util.find_spec(f"{PACKAGE}.{new}") is None]
    assert missing == []


def test_an_old_path_is_the_new_module_and_warns():
    code = (
        "import warnings, sys\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        "    import airflow_orchest_jobs.views.rows\n"
        "except DeprecationWarning as exc:\n"
        "    print(exc)\n"
        "warnings.simplefilter('ignore')\n"
        "from airflow_orchest_jobs.views.rows import group_of\n"
        "import airflow_orchest_jobs.web.rows as new\n"
        "print(group_of is new.group_of, sys.modules['airflow_orchest_jobs.views.rows'] is new)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith("airflow_orchest_jobs.views is deprecated: import "
                             "airflow_orchest_jobs.web")
    assert out[1] == "True True"


def test_the_old_cli_module_runs():
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c",
                           "from airflow_orchest_jobs.commands.check import register; "
                           "print(register.__module__)"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "airflow_orchest_jobs.cli.commands.check"
    assert importlib.import_module(f"{PACKAGE}.cli").main is not None
