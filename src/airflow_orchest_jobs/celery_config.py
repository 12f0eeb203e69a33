"""Celery settings for workers that run Orchest steps: Airflow's defaults plus two hooks.

Point ``[celery] celery_config_options`` at ``airflow_orchest_jobs.celery_config.
CELERY_CONFIG`` (``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS``) on the workers:

* when the worker starts (``celeryd_init``, before its pool forks) its Celery node name
  becomes ``ORCHEST_JOBS_WORKER`` for every task it runs: step containers carry it as
  their ``orchest-jobs.worker`` label;
* when it is ready (``worker_ready``), it removes the step containers it left on its
  engine (``[orchest_jobs] docker_url``) when it was killed: those created before it
  started (a task it already took may be starting one).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import celeryd_init, worker_ready

from .config import load_settings
from .engine.hosts import WORKER_VARIABLE, sweep_worker

log = logging.getLogger(__name__)

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)
#: When this worker process started (epoch seconds): containers it made are newer.
_STARTED: list[float] = []


@celeryd_init.connect
def name_worker(sender: Any = None, **_: Any) -> None:
    """This worker's node name, inherited by its pool and task processes."""
    _STARTED.append(time.time())
    if sender:
        os.environ[WORKER_VARIABLE] = str(sender)


@worker_ready.connect
def sweep_on_ready(**_: Any) -> None:
    """Remove what this worker left on its engine before it was killed (never fatal)."""
    name = os.environ.get(WORKER_VARIABLE)
    if not name:
        return
    try:
        docker_url = load_settings().docker_url
        removed = sweep_worker(docker_url, name, _STARTED[0] if _STARTED else None)
    except Exception as exc:
        log.warning("Orchest jobs: could not sweep the containers of %s: %s", name, exc)
        return
    if removed:
        log.warning("Orchest jobs: worker %s removed %d step container(s) it left on %s",
                    name, len(removed), docker_url)
    else:
        log.info("Orchest jobs: worker %s left no step container on %s", name, docker_url)
