"""The core tier runs without Airflow: its CLI tests read ``[orchest_jobs]`` from the
environment, as ``validate`` does on a machine without Airflow (``config.load_settings``'s
fallback), instead of importing Airflow's configuration (seconds per process). The
Airflow branch of the settings path is tested in tests/airflow (test_validate_agrees.py).
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _without_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import airflow...`` raises ImportError inside a core test, as when not installed."""
    for name in ("airflow", "airflow.configuration"):
        monkeypatch.setitem(sys.modules, name, None)
