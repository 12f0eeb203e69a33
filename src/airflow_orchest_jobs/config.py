"""The one way every part reads ``[orchest_jobs]``: the CLI, the DAG file and the tasks.

Through Airflow's configuration when Airflow is installed (airflow.cfg, the
``AIRFLOW__ORCHEST_JOBS__*`` environment, ``_cmd``/``_secret`` options, secrets backends),
so ``validate`` and a DAG never disagree about ``environment_images`` or ``data_dir``;
without Airflow (a machine that only validates files) the environment variables alone.
"""

from __future__ import annotations

from .core.settings import OPTIONS, SECTION, Settings


def api_base_url() -> str:
    """``[api] base_url``: where users reach Airflow ('' when unset, or without Airflow)."""
    try:
        from airflow.configuration import conf
    except ImportError:
        return ""
    return conf.get("api", "base_url", fallback="") or ""


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: instances one mapped group may have (the DAG
    factory cuts a grid into groups of it; the views find a run's group with it)."""
    from airflow.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def load_settings() -> Settings:
    try:
        from airflow.configuration import conf
    except ImportError:
        return Settings.from_environment()
    return Settings.from_mapping({key: conf.get(SECTION, key, fallback=None)
                                  for key in OPTIONS})
