"""A pipeline run's state from its task instances: the rules of views/states.py as a table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_orchest_jobs.web.states import TaskState, run_state, step_state

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CANCEL = T0 + timedelta(minutes=10)


def at(minutes: float | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


def tasks(*specs: tuple[str, str | None, float | None, float | None]) -> list[TaskState]:
    return [TaskState(name, state, at(start), at(end)) for name, state, start, end in specs]


OK = ("prepare", "success", 0, 1)
CASES = [
    # (why, tasks, cancel time, expected run state)
    ("no task instance yet", [], None, "queued"),
    ("only removed instances", tasks(("prepare", "removed", None, None)), None, "queued"),
    ("all waiting", tasks(("prepare", None, None, None), ("a", None, None, None)), None,
     "queued"),
    ("scheduled and queued", tasks(("prepare", "queued", None, None),
                                   ("a", "scheduled", None, None)), None, "queued"),
    ("prepare running", tasks(("prepare", "running", 0, None), ("a", None, None, None)),
     None, "running"),
    ("a step running", tasks(OK, ("a", "running", 1, None), ("b", None, None, None)), None,
     "running"),
    ("prepared, next step waiting", tasks(OK, ("a", "scheduled", None, None)), None,
     "running"),
    ("a step retrying", tasks(OK, ("a", "up_for_retry", 1, 2)), None, "running"),
    ("deferred", tasks(OK, ("a", "deferred", 1, None)), None, "running"),
    ("all success", tasks(OK, ("a", "success", 1, 2), ("b", "success", 2, 3)), None,
     "success"),
    ("a step failed, fail-fast stopped a sibling, downstream not run",
     tasks(OK, ("a", "failed", 1, 2), ("b", "skipped", 1, 2), ("c", "upstream_failed", None, 2)),
     None, "failed"),
    ("failed while a sibling is still being stopped",
     tasks(OK, ("a", "failed", 1, 2), ("b", "running", 1, None)), None, "failed"),
    ("prepare failed", tasks(("prepare", "failed", 0, 1), ("a", "upstream_failed", None, 1)),
     None, "failed"),
    ("DAG run marked failed while a step ran",
     tasks(OK, ("a", "failed", 5, 10), ("b", "skipped", 10, 10)), CANCEL, "cancelled"),
    ("DAG run marked failed before the run started",
     tasks(("prepare", "skipped", 10, 10), ("a", "skipped", 10, 10)), CANCEL, "cancelled"),
    ("skipped without a failure and no cancel known: cancelled",
     tasks(OK, ("a", "skipped", 10, 10)), None, "cancelled"),
    ("run had failed on its own before the cancel",
     tasks(OK, ("a", "failed", 1, 3), ("b", "skipped", 1, 3)), CANCEL, "failed"),
    ("run had succeeded before the cancel",
     tasks(OK, ("a", "success", 1, 3)), CANCEL, "success"),
    ("re-run after the cancel, failed on its own",
     tasks(("prepare", "success", 20, 21), ("a", "failed", 21, 22)), CANCEL, "failed"),
    ("re-run after the cancel, running", tasks(("prepare", "running", 20, None)), CANCEL,
     "running"),
]


@pytest.mark.parametrize(("why", "given", "cancelled_at", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_run_state(why, given, cancelled_at, expected):
    assert run_state(given, cancelled_at) == expected


@pytest.mark.parametrize(("state", "run", "shown"), [
    ("success", "failed", "success"),
    ("failed", "failed", "failed"),
    ("skipped", "failed", "stopped"),          # fail-fast (Orchest's default)
    ("upstream_failed", "failed", "upstream_failed"),
    ("failed", "cancelled", "cancelled"),      # killed by the cancel
    ("skipped", "cancelled", "cancelled"),     # never started: cancelled
    ("success", "cancelled", "success"),
    (None, "running", "queued"),
    ("scheduled", "running", "queued"),
    ("up_for_retry", "running", "retrying"),
    ("running", "running", "running"),
])
def test_step_state(state, run, shown):
    assert step_state(state, run) == shown
