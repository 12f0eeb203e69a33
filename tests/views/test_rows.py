"""The pipeline-run table without Airflow: columns, grouping, filter, search, sort, paging."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow_orchest_jobs.web.rows import (
    TaskRecord,
    build_rows,
    columns,
    count_states,
    group_of,
    position_of,
    select_rows,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
STEP = "s-1"


def entries(n_a: int = 3, n_b: int = 4) -> list[dict]:
    out = []
    for i in range(n_a * n_b):
        a, b = i // n_b + 1, "wxyz"[i % n_b] if n_b <= 4 else f"v{i % n_b}"
        out.append({"index": i, "label": f"run {i} · a={a}, b=\"{b}\"", "run_uuid": f"u{i}",
                    "parameters": {"pipeline_parameters": {"a": a, "fixed": "same"},
                                   STEP: {"b": b}}})
    return out


def test_columns_put_varying_parameters_first():
    cols = columns(entries(), {STEP: "Compute"})
    assert [(c.title, c.varying) for c in cols] == [
        ("a", True), ("Compute: b", True), ("fixed", False)]
    assert cols[1].id == f"param:{STEP}:b"


def test_groups_hold_max_map_length_runs_each():
    assert group_of(0, 1024) == ("pipeline_run", 0)
    assert group_of(1024, 1024) == ("pipeline_run_2", 0)
    assert group_of(2050, 1024) == ("pipeline_run_3", 2)
    assert position_of("pipeline_run_3.compute", 2, 1024) == (2050, "compute")
    assert position_of("pipeline_run.prepare", 5, 1024) == (5, "prepare")
    assert position_of("plan", -1, 1024) is None
    assert position_of("pipeline_runner.x", 1, 1024) is None


def _records(failed: set[int], running: set[int] = frozenset()) -> list[TaskRecord]:
    out = []
    for i in range(12):
        start = NOW - timedelta(minutes=30 - i)
        out.append(TaskRecord("pipeline_run.prepare", i, "success", start,
                              start + timedelta(seconds=5)))
        if i in running:
            out.append(TaskRecord("pipeline_run.compute", i, "running", start, None))
            continue
        state = "failed" if i in failed else "success"
        out.append(TaskRecord("pipeline_run.compute", i, state, start + timedelta(seconds=5),
                              start + timedelta(seconds=5 + i)))
        out.append(TaskRecord("pipeline_run.report", i,
                              "upstream_failed" if i in failed else "success", None, None))
    return out


def test_rows_states_counts_filter_search_sort_page():
    es = entries()
    cols = columns(es, {STEP: "Compute"})
    rows = build_rows(es, _records({5, 6}, {11}), max_map_length=1024)
    assert count_states(rows) == {"success": 9, "failed": 2, "running": 1, "queued": 0,
                                  "cancelled": 0}
    total, page = select_rows(rows, cols, now=NOW, states=["failed"])
    assert total == 2 and [r.index for r in page] == [5, 6]
    total, page = select_rows(rows, cols, now=NOW, query="a=2 b=x")
    assert [r.index for r in page] == [5]
    total, page = select_rows(rows, cols, now=NOW, query="Z")  # substring, any case
    assert [r.index for r in page] == [3, 7, 11]
    total, page = select_rows(rows, cols, now=NOW, query="b=w")  # a step parameter
    assert [r.index for r in page] == [0, 4, 8]
    _, page = select_rows(rows, cols, now=NOW, sort=f"param:{STEP}:b", descending=True,
                          limit=3)
    assert [r.entry["parameters"][STEP]["b"] for r in page] == ["z", "z", "z"]
    _, page = select_rows(rows, cols, now=NOW, sort="duration", descending=True, limit=2)
    assert page[0].index == 11  # still running: its duration grows until now
    total, page = select_rows(rows, cols, now=NOW, offset=10, limit=5)
    assert total == 12 and [r.index for r in page] == [10, 11]
    _, page = select_rows(rows, cols, now=NOW, sort="state")
    assert page[0].state == "running"


def test_run_cancelled_by_its_own_cancel_and_cleanup_does_not_count():
    es = entries(1, 2)
    t = NOW - timedelta(minutes=1)
    records = [TaskRecord("pipeline_run.prepare", 0, "success", t - timedelta(minutes=5), t),
               TaskRecord("pipeline_run.compute", 0, "failed", t - timedelta(minutes=2), NOW),
               TaskRecord("pipeline_run.cleanup", 0, "success", NOW, NOW),
               TaskRecord("pipeline_run.prepare", 1, "success", t, t),
               TaskRecord("pipeline_run.compute", 1, "running", t, None),
               TaskRecord("pipeline_run.cleanup", 1, None, None, None)]
    rows = build_rows(es, records, max_map_length=1024, run_cancelled_at={0: t})
    assert [r.state for r in rows] == ["cancelled", "running"]


def test_ten_thousand_runs_in_memory():
    es = entries(100, 100)
    cols = columns(es, {STEP: "Compute"})
    records = [TaskRecord(f"pipeline_run{'' if i < 1024 else '_' + str(i // 1024 + 1)}."
                          f"{task}", i % 1024, "success", NOW, NOW)
               for i in range(len(es)) for task in ("prepare", "compute", "report")]
    rows = build_rows(es, records, max_map_length=1024)
    total, page = select_rows(rows, cols, now=NOW, query="a=50", sort=cols[1].id,
                              descending=True, offset=0, limit=50)
    assert len(rows) == 10_000 and count_states(rows)["success"] == 10_000
    assert total == 100 and len(page) == 50


def test_the_jobs_history_sorts_newest_job_run_first_runs_in_grid_order():
    """Rows of several job runs in one table: newest job run first, then by run number;
    filters, search (a job run's id too) and paging as for one job run."""
    rows = []
    for day in range(3):
        built = build_rows(entries(1, 3), [TaskRecord(
            "pipeline_run.compute", i, "failed" if (day, i) == (1, 2) else "success",
            NOW, NOW) for i in range(3)], max_map_length=16)
        for row in built:
            row.job_run, row.job_run_after = f"nightly_{day}", NOW + timedelta(days=day)
        rows.extend(built)
    cols = columns([r.entry for r in rows], {})
    total, page = select_rows(rows, cols, now=NOW, sort="job_run", descending=True, limit=4)
    assert total == 9
    assert [(r.job_run, r.index) for r in page] == [
        ("nightly_2", 0), ("nightly_2", 1), ("nightly_2", 2), ("nightly_1", 0)]
    _, rest = select_rows(rows, cols, now=NOW, sort="job_run", descending=True, offset=8)
    assert [(r.job_run, r.index) for r in rest] == [("nightly_0", 2)]
    total, failed = select_rows(rows, cols, now=NOW, states=["failed"], sort="job_run")
    assert total == 1 and (failed[0].job_run, failed[0].index) == ("nightly_1", 2)
    total, _ = select_rows(rows, cols, now=NOW, query="nightly_0")
    assert total == 3
