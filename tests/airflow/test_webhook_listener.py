"""The plugin's listener runs the webhook delivery loop as a child process of a scheduler
or triggerer, and nowhere else. Never a thread in the scheduler: the LocalExecutor forks
its workers from it, and a worker forked while the thread held an import lock hung every
task it started (webhooks/process.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_orchest_jobs.webhooks.listener import DeliveryListener

pytestmark = pytest.mark.airflow


class Job:
    """A job as Airflow's listener sees it: ``job_type`` (a mapped column on the class) is
    set on the instance after ``on_starting``."""

    job_type: str | None = None


def _wait(what: str, probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _started_command(pid: int) -> str:
    """The command line once the kernel has set it up: Popen returns when exec has
    closed its error pipe, a moment before the new program's arguments are readable."""
    return _wait("the process's command line", lambda: _command(pid) or None, timeout=10)


def test_a_scheduler_gets_a_delivery_process_and_no_thread_stays(tmp_path):
    listener, job = DeliveryListener(), Job()
    listener.on_starting(job)
    job.job_type = "SchedulerJob"  # the runner sets it right after
    process = _wait("the delivery process", lambda: listener.process)
    try:
        assert "airflow_orchest_jobs.webhooks.process --host SchedulerJob --parent " \
            f"{os.getpid()}" in _started_command(process.pid)
        _wait("the waiting thread to end", lambda: None if any(
            t.name == "orchest-webhooks" for t in threading.enumerate()) else True)
        time.sleep(1)
        assert process.poll() is None, "the delivery process ended on its own"
    finally:
        listener.before_stopping(job)
    assert process.poll() is not None, "before_stopping left the delivery process running"


@pytest.mark.parametrize("kind", ["DagProcessorJob", "undefined-then-nothing"])
def test_other_components_get_no_delivery_process(kind):
    listener, job = DeliveryListener(), Job()
    listener.on_starting(job)
    if kind == "DagProcessorJob":
        job.job_type = kind
    else:
        listener.before_stopping(job)  # stopped before a job type was ever set
    _wait("the waiting thread to end", lambda: None if any(
        t.name == "orchest-webhooks" for t in threading.enumerate()) else True)
    assert listener.process is None


MIDDLE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "airflow_orchest_jobs.webhooks.process",
                          "--host", "TriggererJob", "--parent", str(__import__("os").getpid())])
print(child.pid, flush=True)
"""


def test_the_delivery_process_ends_when_its_parent_is_killed(tmp_path):
    """A scheduler killed outright (SIGKILL, no before_stopping): its delivery process
    notices it has a new parent and ends; the next scheduler starts its own."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", MIDDLE], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    pid = int(out.split()[0])
    try:
        _wait("the orphaned delivery process to end", lambda: None if Path(
            f"/proc/{pid}").exists() and "webhooks.process" in _command(pid) and
            Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z" else True,
            timeout=60)
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)
