"""The delivery loop's host: Airflow's scheduler (and triggerer), through a listener.

Airflow calls ``on_starting`` in every component; in a scheduler or triggerer this starts
the delivery loop as a child process (``webhooks/process.py``: a thread would share the
scheduler's import locks with the LocalExecutor's forks); the scheduler's also notices
cron jobs paused or unpaused. Task processes, the DAG processor and the API server are
left alone. The outbox is files in the shared store, so a restarted scheduler (or
another one) picks up whatever was pending.

The one thread here only waits for the component's job type (set right after
``on_starting``) and starts the process: it imports nothing and reads the job's
attributes without touching the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

from airflow.listeners import hookimpl

#: Components whose process runs the delivery loop (``process.py`` takes them from here:
#: loading the plugin does not import the loop).
HOSTS = ("SchedulerJob", "TriggererJob")
#: A component's runner sets its job type right after ``on_starting``: wait this long.
JOB_TYPE_WAIT = 60.0
#: Seconds the delivery process gets to end after SIGTERM.
STOP_WAIT = 5.0


def job_type(component: Any) -> str | None:
    """The job type once the runner set it, read from the instance's own attributes (an
    ORM attribute access could load from the database, in this thread)."""
    value = vars(component).get("job_type")
    return value if isinstance(value, str) and value not in ("", "undefined") else None


class DeliveryListener:
    """Starts (once per process) and stops the delivery process."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The delivery process this listener started, if any."""
        with self._lock:
            return self._process

    @hookimpl
    def on_starting(self, component: Any) -> None:
        if not hasattr(component, "job_type"):
            return  # a task process (TaskRunnerMarker) or another non-job component
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._start, args=(component,),
                                            name="orchest-webhooks", daemon=True)
            self._thread.start()

    @hookimpl
    def before_stopping(self, component: Any) -> None:
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()

    def _start(self, component: Any) -> None:
        waited = 0.0
        while (kind := job_type(component)) is None:
            if self._stop.wait(0.2) or waited > JOB_TYPE_WAIT:
                return
            waited += 0.2
        if kind not in HOSTS:
            return
        with self._lock:
            if self._stop.is_set():
                return
            self._process = subprocess.Popen(
                [sys.executable, "-m", "airflow_orchest_jobs.webhooks.process",
                 "--host", kind, "--parent", str(os.getpid())],
                stdin=subprocess.DEVNULL, close_fds=True)


listener = DeliveryListener()
