"""How a job run ended, as Orchest reported it: cancel records and the verdicts on them."""

from __future__ import annotations

import json

from airflow_orchest_jobs.core.jobstate import (
    CANCELLED,
    FAILED,
    SUCCESS,
    CancelRecord,
    Cancels,
    cancel_record,
    cancel_record_path,
    forget_cancels,
    job_run_outcome,
    job_run_verdict,
    pipeline_run_outcome,
    read_cancels,
    record_cancel,
)

TASKS = {"snapshot", "plan", "finalize", "pipeline_run.a", "pipeline_run.b",
         "pipeline_run.cleanup", "pipeline_run_2.a", "pipeline_run_2.b"}
IGNORED = {"finalize", "pipeline_run.cleanup"}
SETUP = {"snapshot": "success", "plan": "success"}


def four_runs(**overrides: str) -> dict[str, str]:
    """A 4-run job run (map indexes 0-3), every step a success unless overridden."""
    states = dict(SETUP)
    for i in range(4):
        states[f"pipeline_run.a_{i}"] = states[f"pipeline_run.b_{i}"] = "success"
        states[f"pipeline_run.cleanup_{i}"] = "success"
    states.update(overrides)
    return states


def verdict(states, cancels=None, length=16):
    return job_run_verdict(states, TASKS, IGNORED, max_map_length=length,
                           cancels=cancels or Cancels())


def cancel_of(position: int) -> CancelRecord:
    return CancelRecord.now("alice", "pipeline-run view", position=position, index=position)


def test_every_run_succeeded_is_success():
    found = verdict(four_runs())
    assert found.outcome == SUCCESS and found.message is None
    assert found.runs == {0: SUCCESS, 1: SUCCESS, 2: SUCCESS, 3: SUCCESS}


def test_a_run_cancelled_on_its_own_does_not_fail_the_job_run():
    states = four_runs(**{"pipeline_run.a_2": "failed", "pipeline_run.b_2": "skipped"})
    assert verdict(states).outcome == FAILED  # without its record it is a failure
    found = verdict(states, Cancels(runs={2: cancel_of(2)}))
    assert found.outcome == SUCCESS and found.message is None
    assert found.runs[2] == CANCELLED


def test_a_failed_run_fails_the_job_run_even_beside_a_cancelled_one():
    states = four_runs(**{"pipeline_run.a_1": "failed", "pipeline_run.b_1": "upstream_failed",
                          "pipeline_run.a_2": "failed", "pipeline_run.b_2": "skipped"})
    found = verdict(states, Cancels(runs={2: cancel_of(2)}))
    assert found.outcome == FAILED
    assert found.runs == {0: SUCCESS, 1: FAILED, 2: CANCELLED, 3: SUCCESS}
    assert "pipeline_run.a[1]" in found.message and "pipeline_run.a[2]" not in found.message


def test_a_cancelled_job_run_is_cancelled_whatever_its_runs_did():
    record = CancelRecord.now("bob", "marked failed in Airflow", failed_before=(1,))
    states = four_runs(**{"pipeline_run.a_1": "failed", "pipeline_run.a_3": "failed",
                          "pipeline_run.b_3": "skipped"})
    found = verdict(states, Cancels(job_run=record))
    assert found.outcome == CANCELLED and "cancelled by bob" in found.message
    assert found.runs[1] == FAILED  # it had failed before the cancel
    assert found.runs[3] == CANCELLED and found.runs[0] == SUCCESS
    # Even once every task succeeded (cancelled while finalize was pending): not success.
    assert verdict(four_runs(), Cancels(job_run=record)).outcome == CANCELLED


def test_an_unrecorded_stop_is_never_success():
    """Marked failed with no record (skipped tasks only): not success, called cancelled."""
    early = {"snapshot": "skipped", "plan": "skipped", "pipeline_run.a": "skipped"}
    assert verdict(early).outcome == FAILED  # tasks outside the runs did not succeed
    waiting = four_runs(**{f"pipeline_run.{s}_{i}": "skipped" for s in "ab" for i in (2, 3)})
    found = verdict(waiting)
    assert found.outcome == CANCELLED and found.message and "skipped" in found.message


def test_runs_of_later_groups_are_counted_by_position():
    states = {**SETUP, "pipeline_run.a_0": "success", "pipeline_run_2.a_0": "failed"}
    found = verdict(states, Cancels(runs={4: cancel_of(4)}), length=4)
    assert found.runs == {0: SUCCESS, 4: CANCELLED} and found.outcome == SUCCESS


def test_pipeline_run_outcome_rules():
    assert pipeline_run_outcome(["success", "success"]) == SUCCESS
    assert pipeline_run_outcome(["failed", "skipped"]) == FAILED  # fail-fast
    assert pipeline_run_outcome(["success", "skipped"]) == CANCELLED  # stopped from outside
    assert pipeline_run_outcome(["failed"], cancelled=True) == CANCELLED
    assert pipeline_run_outcome(["failed"], cancelled=True, failed_before_cancel=True) == FAILED


def test_records_are_durable_files_the_first_one_kept(tmp_path):
    assert read_cancels(tmp_path / "missing") == Cancels()
    record_cancel(tmp_path, cancel_of(3))
    record_cancel(tmp_path, CancelRecord.now("mallory", "later", position=3, index=3))
    job = CancelRecord.now("bob", "pipeline-run view", failed_before=(1, 2), clear_number=2)
    record_cancel(tmp_path, job)
    found = read_cancels(tmp_path)
    assert found.runs[3].by == "alice" and found.job_run == job
    assert cancel_record(tmp_path, 3) == found.runs[3]
    assert json.loads(cancel_record_path(tmp_path).read_text())["failed_before"] == [1, 2]
    # A job run cleared since its cancel runs again: the record no longer applies.
    assert read_cancels(tmp_path, clear_number=3).job_run is None
    assert read_cancels(tmp_path, clear_number=2).job_run == job
    cancel_record_path(tmp_path, 5).write_text("{not json")  # never an error
    forget_cancels(tmp_path, [3], job_run=True)
    assert read_cancels(tmp_path) == Cancels()


def test_the_views_never_show_a_cancelled_job_run_as_success():
    assert job_run_outcome("success", cancelled=True) == CANCELLED
    assert job_run_outcome("failed", cancelled=True) == CANCELLED
    assert job_run_outcome("running", cancelled=True) == CANCELLED
    assert job_run_outcome("failed", cancelled=False) == FAILED
    assert job_run_outcome("queued", cancelled=True) == "queued"
    assert job_run_outcome(None, cancelled=False) is None
