"""Limits on whole pipeline runs: a run holds a slot from its first task to its last.

Orchest queued job runs (``MAX_JOB_RUNS_PARALLELISM``, installation-wide) and a run, once
started, ran to its end. Airflow limits task instances, not groups of them, so slots are
leases in the shared store: a run's first task takes one in every scope that limits it
(the job, the installation) or waits; its teardown gives them back. Within one job run,
runs are admitted in grid order. A lease whose DAG run has ended without giving it back
(a killed worker) is dropped once the caller's ``is_live`` says so.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .flock import locked_all
from .layout import StoreLayout
from .snapshot.fsops import write_atomically

INSTALLATION = "installation"
#: A lease younger than this is never checked for staleness (its run is just starting).
STALE_AFTER = 30.0
ORDER_FILE = "admit-next"


@dataclass(frozen=True)
class Ticket:
    """One pipeline run asking to start."""

    run_uuid: str
    dag_id: str
    run_id: str
    #: Its place among the job run's selected runs (grid order).
    position: int
    #: The job run's folder, where the grid-order counter lives.
    run_root: str


@dataclass(frozen=True)
class Admission:
    admitted: bool
    #: Why not, for the task log ("3 runs ahead in grid order", "slots of job X busy").
    reason: str = ""
    #: How far back in line: callers poll less often the further back they are.
    distance: int = 0


def job_scope(dag_id: str) -> str:
    return f"job__{dag_id}"


class RunSlots:
    """Slot leases under ``<store_dir>/run-slots/<scope>/<run uuid>.json``."""

    def __init__(self, store_dir: Path):
        self.root = StoreLayout(Path(store_dir)).run_slots

    def try_admit(self, ticket: Ticket, limits: Sequence[tuple[str, int]],
                  is_live: Callable[[str, str], bool]) -> Admission:
        """Take a slot in every limited scope, or none of them."""
        order = Path(ticket.run_root) / ORDER_FILE
        with self._locked([scope for scope, _ in limits]):
            ahead = ticket.position - _read_int(order)
            if ahead > 0:
                return Admission(False, f"{ahead} earlier run(s) of this job run start first",
                                 ahead)
            for scope, limit in limits:
                leases = self._leases(scope)
                if ticket.run_uuid in leases or len(leases) < limit:
                    continue
                leases = self._drop_stale(scope, leases, is_live)
                if len(leases) >= limit:
                    return Admission(False, f"{len(leases)} of {limit} run slot(s) of "
                                     f"{_describe(scope)} in use", 1)
            for scope, _ in limits:
                self._write_lease(scope, ticket)
            if ahead == 0:
                write_atomically(order, str(ticket.position + 1).encode(), order.parent,
                                 durable=False)
        return Admission(True)

    def release(self, run_uuid: str) -> None:
        """Give back the run's slots in every scope (idempotent)."""
        if not self.root.is_dir():
            return
        for scope in self._scopes():
            (scope / f"{run_uuid}.json").unlink(missing_ok=True)

    def release_job_run(self, dag_id: str, run_id: str) -> int:
        """Give back every slot a job run still holds (its teardown's safety net)."""
        freed = 0
        if not self.root.is_dir():
            return 0
        for scope in self._scopes():
            for path in scope.glob("*.json"):
                lease = _read_lease(path)
                if lease and lease.get("dag_id") == dag_id and lease.get("run_id") == run_id:
                    path.unlink(missing_ok=True)
                    freed += 1
        return freed

    def _scopes(self) -> list[Path]:
        return [folder for folder in self.root.iterdir() if folder.is_dir()]

    def _leases(self, scope: str) -> dict[str, dict[str, Any]]:
        folder = self.root / scope
        if not folder.is_dir():
            return {}
        found = {}
        for path in folder.glob("*.json"):
            lease = _read_lease(path)
            if lease is not None:
                found[path.stem] = lease
        return found

    def _drop_stale(self, scope: str, leases: dict[str, dict[str, Any]],
                    is_live: Callable[[str, str], bool]) -> dict[str, dict[str, Any]]:
        now = time.time()
        kept = {}
        for run_uuid, lease in leases.items():
            old = now - float(lease.get("since", now)) > STALE_AFTER
            if old and not is_live(lease["dag_id"], lease["run_id"]):
                (self.root / scope / f"{run_uuid}.json").unlink(missing_ok=True)
                continue
            kept[run_uuid] = lease
        return kept

    def _write_lease(self, scope: str, ticket: Ticket) -> None:
        folder = self.root / scope
        folder.mkdir(parents=True, exist_ok=True)
        data = {**asdict(ticket), "since": time.time()}
        write_atomically(folder / f"{ticket.run_uuid}.json", json.dumps(data).encode(),
                         folder, durable=False)

    @contextlib.contextmanager
    def _locked(self, scopes: Sequence[str]) -> Iterator[None]:
        """Exclusive locks on the scopes, always taken in the same order (no deadlock)."""
        with locked_all([self.root / f"{scope}.lock" for scope in scopes]):
            yield


def _describe(scope: str) -> str:
    if scope == INSTALLATION:
        return "the installation ([orchest_jobs] max_parallel_pipeline_runs)"
    return f"job {scope.removeprefix('job__')} (max_parallel_runs)"


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _read_lease(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None
