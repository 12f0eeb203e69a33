"""Read the ``[orchest_jobs]`` section through Airflow's config (env vars, airflow.cfg, secrets)."""

from __future__ import annotations

from .core.settings import OPTIONS, SECTION, Settings


def load_settings() -> Settings:
    from airflow.configuration import conf

    return Settings.from_mapping(
        {key: conf.get(SECTION, key, fallback=None) for key in OPTIONS}
    )
