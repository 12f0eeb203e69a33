"""The core imports nothing from Airflow (nor docker): it must load in any process."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import airflow_orchest_jobs.core as core


def test_core_never_imports_airflow_or_docker():
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]
    assert len(modules) >= 10
    assert heavy_modules_after(
        "import importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from airflow_orchest_jobs.cli import build_parser; build_parser()\n") == ""


def test_the_package_imports_no_airflow():
    """``import airflow_orchest_jobs`` is cheap: its public names load on first use."""
    assert heavy_modules_after(
        "import airflow_orchest_jobs as aoj\n"
        "assert {'build_dags', 'OrchestStepOperator', 'load_settings', 'Settings'}"
        " <= set(aoj.__all__) <= set(dir(aoj))\n"
        "aoj.Settings, aoj.load_settings  # pure: the settings model and its reader\n") == ""


def heavy_modules_after(code: str) -> str:
    """The airflow and docker modules a fresh interpreter has loaded after ``code``."""
    code += ("import sys\n"
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'docker'))\n"
             "print(','.join(bad))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()
