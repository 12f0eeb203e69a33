"""The Airflow layer's shared setup: one way to point the plugin at temporary folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_orchest_jobs.config import load_settings
from airflow_orchest_jobs.core.settings import Settings


@pytest.fixture
def orchest_settings(tmp_path, monkeypatch, airflow_home) -> Callable[..., Settings]:
    """``orchest_settings(**options)``: [orchest_jobs] for this test, as every part reads it.

    projects_dir and store_dir are made; data_dir is left for the step operator to make
    (it gives it to the unprivileged step user). Other options go in as given
    (``environment_images`` may be a dict).
    """
    def configure(**options) -> Settings:
        values = {"projects_dir": tmp_path / "projects", "store_dir": tmp_path / "store",
                  "data_dir": tmp_path / "data", "network_mode": "none",
                  "environment_images": "{}", **options}
        for key, value in values.items():
            if key in ("projects_dir", "store_dir"):
                Path(value).mkdir(parents=True, exist_ok=True)
            if isinstance(value, dict):
                value = json.dumps(value)
            monkeypatch.setenv(f"AIRFLOW__ORCHEST_JOBS__{key.upper()}", str(value))
        return load_settings()

    return configure
