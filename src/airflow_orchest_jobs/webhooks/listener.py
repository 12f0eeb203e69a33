"""The delivery loop's host: Airflow's scheduler (and triggerer), through a listener.

Airflow calls ``on_starting`` in every component; in a scheduler or triggerer this starts
one daemon thread that delivers the outbox (``delivery.drain_forever``); the scheduler's
also notices cron jobs paused or unpaused (``pauses``). Task processes,
the DAG processor and the API server are left alone. The outbox is files in the shared
store, so a restarted scheduler (or another one) picks up whatever was pending.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from airflow.listeners import hookimpl

from ..config import load_settings
from .config import webhook_on_server
from .delivery import drain_forever
from .pauses import check_pauses

log = logging.getLogger(__name__)

#: Components whose process runs the delivery loop.
HOSTS = ("SchedulerJob", "TriggererJob")
#: A component's runner sets its job type right after ``on_starting``: wait this long.
JOB_TYPE_WAIT = 60.0
#: Seconds between two looks at the cron jobs' pause state (scheduler only).
PAUSE_INTERVAL = 10.0


class DeliveryListener:
    """Starts (once per process) and stops the delivery loop."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @hookimpl
    def on_starting(self, component: Any) -> None:
        if not hasattr(component, "job_type"):
            return  # a task process (TaskRunnerMarker) or another non-job component
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, args=(component,),
                                            name="orchest-webhooks", daemon=True)
            self._thread.start()

    @hookimpl
    def before_stopping(self, component: Any) -> None:
        self._stop.set()

    def _run(self, component: Any) -> None:
        waited = 0.0
        while getattr(component, "job_type", None) in (None, "", "undefined"):
            if self._stop.wait(0.2) or waited > JOB_TYPE_WAIT:
                return
            waited += 0.2
        if component.job_type not in HOSTS:
            return
        log.info("Orchest webhooks: delivering the outbox from the %s", component.job_type)
        last = [0.0]

        def pauses(store_dir: Any) -> None:
            if component.job_type == "SchedulerJob" and time.monotonic() - last[0] >= \
                    PAUSE_INTERVAL:
                last[0] = time.monotonic()
                check_pauses(store_dir, load_settings().webhooks)

        drain_forever(lambda: load_settings().store_dir, webhook_on_server, self._stop,
                      before=pauses)


listener = DeliveryListener()
