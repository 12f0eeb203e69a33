"""Whole-run limits: slots shared through the store, admitted in grid order."""

from __future__ import annotations

import json

from airflow_orchest_jobs.core.runslots import INSTALLATION, RunSlots, Ticket, job_scope


def _ticket(tmp_path, position: int, run_id: str = "r1", dag_id: str = "d") -> Ticket:
    root = tmp_path / "runs" / dag_id / run_id
    root.mkdir(parents=True, exist_ok=True)
    return Ticket(run_uuid=f"{dag_id}-{run_id}-{position}", dag_id=dag_id, run_id=run_id,
                  position=position, run_root=str(root))


def live(dag_id: str, run_id: str) -> bool:
    return True


def test_one_slot_admits_runs_one_after_another_in_grid_order(tmp_path):
    slots, limits = RunSlots(tmp_path), [(job_scope("d"), 1)]
    first, second, third = (_ticket(tmp_path, i) for i in range(3))
    waiting = slots.try_admit(third, limits, live)
    assert not waiting.admitted and waiting.reason.startswith("2 earlier run(s)")
    assert slots.try_admit(first, limits, live).admitted
    assert slots.try_admit(first, limits, live).admitted  # asking again is idempotent
    busy = slots.try_admit(second, limits, live)
    assert not busy.admitted and "1 of 1 run slot(s) of job d" in busy.reason
    slots.release(first.run_uuid)
    assert slots.try_admit(second, limits, live).admitted
    assert not slots.try_admit(third, limits, live).admitted


def test_every_limited_scope_must_have_room(tmp_path):
    slots = RunSlots(tmp_path)
    other = _ticket(tmp_path, 0, dag_id="other")
    assert slots.try_admit(other, [(INSTALLATION, 1)], live).admitted
    mine = _ticket(tmp_path, 0)
    refused = slots.try_admit(mine, [(job_scope("d"), 5), (INSTALLATION, 1)], live)
    assert not refused.admitted and "max_parallel_pipeline_runs" in refused.reason
    # Nothing half-taken: the job scope holds no lease for the refused run.
    assert not (tmp_path / "run-slots" / job_scope("d") / f"{mine.run_uuid}.json").exists()


def test_a_lease_whose_dag_run_ended_is_dropped(tmp_path):
    slots, limits = RunSlots(tmp_path), [(INSTALLATION, 1)]
    dead = _ticket(tmp_path, 0, run_id="killed")
    assert slots.try_admit(dead, limits, live).admitted
    lease = tmp_path / "run-slots" / INSTALLATION / f"{dead.run_uuid}.json"
    data = json.loads(lease.read_text())
    data["since"] -= 3600  # an old lease
    lease.write_text(json.dumps(data))
    fresh = _ticket(tmp_path, 0, run_id="new")
    assert slots.try_admit(fresh, limits, lambda d, r: r != "killed").admitted
    assert not lease.exists()


def test_a_job_runs_teardown_gives_back_what_it_still_holds(tmp_path):
    slots, limits = RunSlots(tmp_path), [(INSTALLATION, 2)]
    for position in range(2):
        assert slots.try_admit(_ticket(tmp_path, position), limits, live).admitted
    assert slots.release_job_run("d", "r1") == 2
    assert slots.try_admit(_ticket(tmp_path, 0, run_id="r2"), [(INSTALLATION, 1)],
                           live).admitted
