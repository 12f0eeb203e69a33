"""The re-run's request to Airflow's REST API: whose token, which task instances."""

from __future__ import annotations

from airflow_orchest_jobs.web.actions import clear_markers
from airflow_orchest_jobs.web.airflowapi import request_token
from airflow_orchest_jobs.web.rows import RunRow
from airflow_orchest_jobs.web.states import TaskState


def test_the_token_of_the_request_is_forwarded_a_bearer_header_first() -> None:
    assert request_token("Bearer abc.def", "cookie.jwt") == "abc.def"
    assert request_token("bearer  abc ", None) == "abc"
    assert request_token(None, "cookie.jwt") == "cookie.jwt"
    assert request_token("Basic dXNlcjpwdw==", "cookie.jwt") == "cookie.jwt"
    assert request_token("Bearer ", None) == ""


def row(position: int, *tasks: str) -> RunRow:
    run = RunRow(position, {"index": position})
    run.tasks = {t: TaskState(t, "failed") for t in tasks}
    return run


def test_the_clear_names_each_runs_task_instances_by_map_index_and_finalize() -> None:
    """Runs 1 and 5 with groups of 4: map index 1 of the first group, 1 of the second;
    a run chosen twice is cleared once."""
    rows = [row(5, "prepare", "compute"), row(1, "compute", "cleanup", "prepare"),
            row(1, "compute", "cleanup", "prepare")]
    assert clear_markers(rows, 4) == [
        ["pipeline_run.cleanup", 1], ["pipeline_run.compute", 1], ["pipeline_run.prepare", 1],
        ["pipeline_run_2.compute", 1], ["pipeline_run_2.prepare", 1], "finalize"]
