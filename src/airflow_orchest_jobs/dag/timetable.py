"""Cron schedules as Orchest ran them: the first run, and the run after resume, is the next tick.

Orchest computed a cron job's next run as ``croniter(now).get_next()``, never a tick in the
past. Airflow's ``CronTriggerTimetable`` (catchup off) also considers the latest tick before
now, so a ``0 3 * * *`` job added at noon, or resumed after a pause, would run at once.
This timetable drops that candidate. A short grace keeps a tick that passed a moment ago:
the DAG processor re-computes the next run on every parse, and a parse a second after a tick,
before the scheduler created that tick's run, must not skip it.

Registered by the plugin (``OrchestJobsPlugin.timetables``): the scheduler can only
deserialize a custom timetable that a plugin registers.
"""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

#: How old a tick may be and still run (a DAG processor re-parse just after a tick).
GRACE = datetime.timedelta(seconds=60)


def utcnow() -> pendulum.DateTime:
    """The clock (one name, so tests can set it)."""
    return pendulum.now("UTC")


class OrchestCronTimetable(CronTriggerTimetable):
    """A UTC cron (or cron preset) schedule whose next run is never an old tick."""

    def __init__(self, cron: str, *, grace: datetime.timedelta = GRACE) -> None:
        super().__init__(cron, timezone="UTC")  # Orchest schedules were UTC
        self._cron = cron  # as written (a preset stays readable in the UI)
        self._grace = grace
        if self.description:
            self.description = f"{self.description} (UTC)"

    @property
    def expression(self) -> str:
        """The cron text (a preset mapped to it), as the SDK's cron timetables expose it."""
        return self._expression

    @property
    def summary(self) -> str:
        return f"{self._cron} (UTC)"

    def serialize(self) -> dict[str, Any]:
        return {"cron": self._cron, "grace": self._grace.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> OrchestCronTimetable:
        return cls(data["cron"], grace=datetime.timedelta(seconds=data["grace"]))

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        """Catchup on: Airflow's rule. Off: the tick after the last run, or else the next one."""
        if restriction.catchup:
            return super().next_dagrun_info(
                last_automated_data_interval=last_automated_data_interval,
                restriction=restriction)
        candidates = [self._align_to_next(utcnow() - self._grace)]
        if last_automated_data_interval is not None:
            candidates.append(self._get_next(last_automated_data_interval.end))
        if restriction.earliest is not None:
            candidates.append(self._align_to_next(restriction.earliest))
        start = max(candidates)
        if restriction.latest is not None and restriction.latest < start:
            return None
        return DagRunInfo.exact(start)  # zero-length interval: CronTriggerTimetable's default


class MovedOrchestCronTimetable(OrchestCronTimetable):
    """Reads DAGs serialized before 0.2, when the class lived in ``airflow_orchest_jobs.timetable``.

    The scheduler finds a custom timetable by the class path stored with the serialized DAG;
    until the DAG processor re-serializes a DAG its row names the old path. Goes away with
    the old module paths (:mod:`airflow_orchest_jobs._moved`).
    """


MovedOrchestCronTimetable.__module__ = "airflow_orchest_jobs.timetable"
MovedOrchestCronTimetable.__name__ = MovedOrchestCronTimetable.__qualname__ = "OrchestCronTimetable"
