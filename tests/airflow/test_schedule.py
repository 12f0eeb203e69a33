"""Cron job schedules as Orchest's: the first run, and the run after resume, is the next tick.

The unit tests ask the scheduler's view of a job DAG (the factory's DAG round-tripped through
Airflow's DAG serialization, as the scheduler reads it) for its next run at a set "now". The
last test parses the repository's DAG file with the ``airflow`` CLI, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pendulum
import pytest

from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag import timetable as timetable_module
from airflow_orchest_jobs.dag.factory import build_dags
from airflow_orchest_jobs.dag.timetable import OrchestCronTimetable
from tests.conftest import REPO
from tests.example_project import write_example

pytestmark = pytest.mark.airflow

DAG_ID = "orchest_job__demo__nightly"
NOON = pendulum.datetime(2026, 3, 10, 12, 0, tz="UTC")
TODAY_3 = pendulum.datetime(2026, 3, 10, 3, 0, tz="UTC")
TOMORROW_3 = pendulum.datetime(2026, 3, 11, 3, 0, tz="UTC")
YESTERDAY_3 = pendulum.datetime(2026, 3, 9, 3, 0, tz="UTC")


def _settings(root: Path) -> Settings:
    return Settings.from_mapping({"projects_dir": str(root / "projects"),
                                  "store_dir": str(root / "store"),
                                  "data_dir": str(root / "data"), "network_mode": "none"})


def _scheduler_dag(tmp_path: Path, schedule: str, catchup: bool = False):
    """The job DAG as the scheduler sees it: serialized to JSON and deserialized."""
    from airflow.serialization.serialized_objects import DagSerialization

    write_example(tmp_path / "projects", job={"pipeline": "main.orchest",
                                              "schedule": schedule, "catchup": catchup})
    dag = build_dags(_settings(tmp_path))[DAG_ID]
    return DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))


def _at(monkeypatch, now: datetime) -> None:
    """Set the clock of our timetable and of Airflow's own (for comparisons)."""
    import airflow.timetables.trigger as trigger

    monkeypatch.setattr(timetable_module, "utcnow", lambda: pendulum.instance(now))
    monkeypatch.setattr(trigger, "utcnow", lambda: pendulum.instance(now))


def _next_run(dag, last_run: datetime | None = None) -> datetime | None:
    from airflow.timetables.base import DagRunInfo

    last = DagRunInfo.exact(last_run) if last_run is not None else None
    info = dag.next_dagrun_info(last_automated_run_info=last)
    return info.run_after if info is not None else None


def test_a_new_job_added_at_noon_first_runs_at_the_next_tick_not_at_once(tmp_path, monkeypatch):
    _at(monkeypatch, NOON)
    dag = _scheduler_dag(tmp_path, "0 3 * * *")
    assert isinstance(dag.timetable, OrchestCronTimetable)
    assert _next_run(dag) == TOMORROW_3


def test_a_resumed_job_skips_the_missed_tick(tmp_path, monkeypatch):
    """Last run yesterday 03:00, paused, resumed at noon: next run 03:00 tomorrow."""
    _at(monkeypatch, NOON)
    dag = _scheduler_dag(tmp_path, "0 3 * * *")
    assert _next_run(dag, last_run=YESTERDAY_3) == TOMORROW_3


def test_a_running_schedule_goes_tick_after_tick(tmp_path, monkeypatch):
    """Just after the scheduler created today's run, the next one is tomorrow's."""
    _at(monkeypatch, TODAY_3 + timedelta(seconds=1))
    dag = _scheduler_dag(tmp_path, "0 3 * * *")
    assert _next_run(dag, last_run=TODAY_3) == TOMORROW_3


def test_a_reparse_just_after_a_tick_keeps_that_tick(tmp_path, monkeypatch):
    """The DAG processor re-computes the next run on every parse: 5 s after 03:00, before
    the scheduler created the 03:00 run, the next run is still 03:00 (within the grace)."""
    _at(monkeypatch, TODAY_3 + timedelta(seconds=5))
    dag = _scheduler_dag(tmp_path, "0 3 * * *")
    assert _next_run(dag, last_run=YESTERDAY_3) == TODAY_3
    assert _next_run(dag) == TODAY_3
    _at(monkeypatch, TODAY_3 + timedelta(seconds=61))  # past the grace: the next tick
    assert _next_run(dag, last_run=YESTERDAY_3) == TOMORROW_3


def test_presets_follow_the_same_rule_and_stay_readable(tmp_path, monkeypatch):
    _at(monkeypatch, NOON)
    dag = _scheduler_dag(tmp_path, "@daily")
    assert _next_run(dag) == pendulum.datetime(2026, 3, 11, 0, 0, tz="UTC")
    assert dag.timetable.summary == "@daily (UTC)"
    assert dag.timetable.description == "At 00:00 (UTC)"


def test_catchup_on_is_airflows_own_rule(tmp_path, monkeypatch):
    from airflow.timetables.base import DagRunInfo, TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    _at(monkeypatch, NOON)
    dag = _scheduler_dag(tmp_path, "0 3 * * *", catchup=True)
    airflow_own = CronTriggerTimetable("0 3 * * *", timezone="UTC")
    restriction = TimeRestriction(dag.start_date, None, catchup=True)
    for last in (None, YESTERDAY_3):
        info = airflow_own.next_dagrun_info_v2(
            last_dagrun_info=DagRunInfo.exact(last) if last else None, restriction=restriction)
        assert _next_run(dag, last_run=last) == info.run_after
    assert _next_run(dag) == pendulum.datetime(2024, 1, 1, 3, 0, tz="UTC")  # back-fills


def test_serialization_round_trip_and_what_the_ui_shows(tmp_path):
    from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG

    write_example(tmp_path / "projects", job={"pipeline": "main.orchest",
                                              "schedule": "0 3 * * *"})
    dag = build_dags(_settings(tmp_path))[DAG_ID]
    data = json.loads(json.dumps(DagSerialization.to_dict(dag)))
    assert data["dag"]["timetable"] == {
        "__type": "airflow_orchest_jobs.dag.timetable.OrchestCronTimetable",
        "__var": {"cron": "0 3 * * *", "grace": 60.0}}
    restored = DagSerialization.from_dict(data).timetable
    assert isinstance(restored, OrchestCronTimetable)
    assert restored.serialize() == dag.timetable.serialize()
    lazy = LazyDeserializedDAG(data=data).timetable  # what the DAG processor writes to the DB
    assert (lazy.summary, lazy.description) == ("0 3 * * * (UTC)", "At 03:00 (UTC)")


def test_a_dag_serialized_before_the_layout_move_still_loads(tmp_path):
    """Until the DAG processor re-serializes it, a DAG's row names the timetable's class by
    its 0.1 path (``airflow_orchest_jobs.timetable``): the scheduler must still read it."""
    from airflow.serialization.serialized_objects import DagSerialization

    write_example(tmp_path / "projects", job={"pipeline": "main.orchest",
                                              "schedule": "0 3 * * *"})
    dag = build_dags(_settings(tmp_path))[DAG_ID]
    data = json.loads(json.dumps(DagSerialization.to_dict(dag)))
    data["dag"]["timetable"]["__type"] = "airflow_orchest_jobs.timetable.OrchestCronTimetable"
    restored = DagSerialization.from_dict(data).timetable
    assert isinstance(restored, OrchestCronTimetable)
    assert (restored.summary, restored.serialize()) == (dag.timetable.summary,
                                                        dag.timetable.serialize())


def test_one_off_and_trigger_only_jobs_keep_airflows_timetables(tmp_path):
    write_example(tmp_path / "projects", job={"pipeline": "main.orchest",
                                              "schedule": "2026-12-01T03:00:00Z"})
    write_example(tmp_path / "projects", name="manual", job={"pipeline": "main.orchest"})
    dags = build_dags(_settings(tmp_path))
    assert type(dags[DAG_ID].timetable).__name__ == "OnceTimetable"
    assert type(dags["orchest_job__manual__nightly"].timetable).__name__ == "NullTimetable"


def test_the_cli_shows_the_next_run_in_the_future(airflow_home, tmp_path):
    """A user's view: parse the DAG file with the CLI, ask for the next execution.

    The cron's tick of the day is 6 hours ago, so Airflow's own timetable would name it
    (and run at once); Orchest's rule names tomorrow's.
    """
    now = datetime.now(timezone.utc)
    tick = (now - timedelta(hours=6)).replace(second=0, microsecond=0)
    projects = tmp_path / "projects"
    write_example(projects, name="schedule-cli", job={
        "pipeline": "main.orchest", "schedule": f"{tick.minute} {tick.hour} * * *"})
    env = {**os.environ,
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR": str(projects),
           "AIRFLOW__ORCHEST_JOBS__STORE_DIR": str(tmp_path / "store"),
           "AIRFLOW__ORCHEST_JOBS__DATA_DIR": str(tmp_path / "data")}

    def airflow(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "airflow", *args], env=env,
                                capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    airflow("dags", "reserialize")
    dag_id = "orchest_job__schedule-cli__nightly"
    out = airflow("dags", "next-execution", dag_id).split()
    next_run = datetime.fromisoformat(out[-1])
    assert next_run > now
    assert next_run == tick + timedelta(days=1)
