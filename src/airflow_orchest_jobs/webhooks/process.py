"""The delivery loop as a process of its own, started by the scheduler's (and triggerer's)
listener: ``python -m airflow_orchest_jobs.webhooks.process --host SchedulerJob --parent PID``.

Why not a thread in the scheduler: the LocalExecutor forks its workers from the scheduler
while it runs, and a worker forked while a thread held a module's import lock (its first
``import requests``) inherits the lock held forever: every task that worker started then
hung importing the DAG file until Airflow's import timeout ("DagBag import timeout",
"Dag not found during start up"). A separate process shares no lock with the forks.

It ends on SIGTERM (the listener's ``before_stopping``) or when its parent is gone (a
scheduler killed outright: the next scheduler starts its own). Outbox claims are file
locks, so two loops for a moment never send one delivery twice at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..config import load_settings
from .config import webhook_on_server
from .delivery import drain_forever
from .listener import HOSTS
from .pauses import check_pauses

log = logging.getLogger("airflow_orchest_jobs.webhooks")

#: Seconds between two looks at the cron jobs' pause state (scheduler only).
PAUSE_INTERVAL = 10.0


def run(host: str, parent: int, stop: threading.Event) -> None:
    """Deliver until ``stop`` is set or ``parent`` is no longer this process's parent."""
    last = [0.0]

    def before(store_dir: Path) -> None:
        if os.getppid() != parent:
            log.info("Orchest webhooks: the %s (pid %d) is gone; stopping", host, parent)
            stop.set()
            return
        if host == "SchedulerJob" and time.monotonic() - last[0] >= PAUSE_INTERVAL:
            last[0] = time.monotonic()
            check_pauses(store_dir, load_settings().webhooks)

    log.info("Orchest webhooks: delivering the outbox for the %s (pid %d)", host, parent)
    drain_forever(lambda: load_settings().store_dir, webhook_on_server, stop, before=before)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_orchest_jobs.webhooks.process")
    parser.add_argument("--host", choices=HOSTS, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    run(args.host, args.parent, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
