"""A pipeline run's state, derived from its task instances (pure: strings and datetimes).

A pipeline run is one map index of the ``pipeline_run`` group: its ``prepare`` task and
its step tasks (the ``cleanup`` teardown does not count). Airflow states map to Orchest's
run states as follows, first rule that applies:

1. no task instance yet (or only ``removed`` ones)               -> ``queued``
2. a cancel applies (the DAG run marked failed, or "cancel run N", at time T): a task
   unfinished at T (started before T, or never) ended failed or skipped at or after T,
   and no task failed before T                                   -> ``cancelled``
3. a task ``failed`` or ``upstream_failed``                      -> ``failed``
4. a task unfinished: all of them only waiting (none, scheduled,
   queued) and none started                                      -> ``queued``
                      otherwise                                  -> ``running``
5. all finished, some ``skipped`` (only a cancel skips a step
   without a failure in the run)                                 -> ``cancelled``
6. all ``success``                                               -> ``success``

Per step, a ``skipped`` task of a failed run was stopped by fail-fast (Orchest's
default): it shows ``stopped``; failed or skipped tasks of a cancelled run show
``cancelled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

RUN_STATES = ("queued", "running", "success", "failed", "cancelled")
WAITING = frozenset({None, "none", "scheduled", "queued"})
ACTIVE = frozenset({"running", "up_for_retry", "up_for_reschedule", "restarting", "deferred",
                    "awaiting_input"})
FAILED = frozenset({"failed", "upstream_failed"})


@dataclass(frozen=True)
class TaskState:
    """One task instance of a pipeline run, as the views need it."""

    task: str
    state: str | None
    start: datetime | None = None
    end: datetime | None = None


def _relevant(tasks: Iterable[TaskState]) -> list[TaskState]:
    return [t for t in tasks if t.state != "removed"]


def cancel_applies(tasks: Iterable[TaskState], cancelled_at: datetime | None) -> bool:
    """Whether a cancel at ``cancelled_at`` stopped this run (it was unfinished then)."""
    if cancelled_at is None:
        return False
    relevant = _relevant(tasks)
    if any(t.state == "failed" and t.end is not None and t.end < cancelled_at
           for t in relevant):
        return False  # the run had failed on its own before the cancel
    return any(t.state in ("failed", "skipped") and (t.end is None or t.end >= cancelled_at)
               and (t.start is None or t.start <= cancelled_at) for t in relevant)


def run_state(tasks: Iterable[TaskState], cancelled_at: datetime | None = None) -> str:
    """The pipeline run's state (one of :data:`RUN_STATES`), by the rules above."""
    relevant = _relevant(tasks)
    if not relevant:
        return "queued"
    if cancel_applies(relevant, cancelled_at):
        return "cancelled"
    states = [t.state for t in relevant]
    if any(s in FAILED for s in states):
        return "failed"
    if any(s in WAITING or s in ACTIVE for s in states):
        started = any(s not in WAITING for s in states) or any(t.start for t in relevant)
        return "running" if started else "queued"
    if any(s == "skipped" for s in states):
        return "cancelled"
    return "success"


def step_state(state: str | None, run: str) -> str:
    """What a step shows in its run's row: Airflow's state in Orchest's words."""
    if run == "cancelled" and state in ("failed", "skipped"):
        return "cancelled"
    if state == "skipped" and run == "failed":
        return "stopped"  # fail-fast: stopped, or never started, because a sibling failed
    if state in WAITING:
        return "queued"
    if state == "up_for_retry":
        return "retrying"
    if state in ACTIVE:
        return "running"
    return str(state)
