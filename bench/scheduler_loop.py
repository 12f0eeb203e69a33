"""What one scheduler loop costs for one running DAG run: ours against the plain DAG.

Run: ``.venv/bin/python bench/scheduler_loop.py`` (``--sizes 1000,10000`` by default,
``--repeat 7``). Needs PostgreSQL 15's binaries (Debian's ``postgresql``), not the Docker
engine: no task runs.

Why: on a real scheduler the cost per pipeline run of a 10,000-run grid was 1.30x a
1,000-run grid's, and py-spy put 88% of the scheduler's samples in
``DagRun.update_state`` -> ``fetch_task_instances``, which loads every task instance of
the running DAG run on every loop. This measures that work directly, at each size, for
three DAGs in one process against one PostgreSQL of its own: ours from the factory, the
plain DockerOperator DAG of ``bench/scale.py``, and the same plain DAG with one last task
after every container (a teardown, like our ``finalize``). If ours costs what the plain
DAGs cost per loop at the same size, the growth is Airflow's, not the plugin's.

How: the DAGs are serialized into the metadata DB as the DAG processor would, a DAG run
of each is created (``SerializedDAG.create_dagrun``), the tasks that feed the mapped
groups are marked done with their ``TaskMap`` rows (as a finished task writes them), and
one ``update_state`` expands the mapped tasks, as the scheduler's loop does. The mapped
task instances are then set to a run half done: the first half ``success`` (dates,
hostname, pid, and ours its run label as rendered map index, as a real run leaves them),
8 ``running`` (LocalExecutor parallelism 8), the rest ``scheduled``. Then each DAG run is
timed through what the scheduler does for it per loop: a fresh session, the DAG run
loaded, ``update_state(execute_callbacks=False)``, rolled back (nothing changes between
loops); and ``fetch_task_instances`` alone. Each round times every DAG run once, in an
order shifted by one each round, after a ``gc.collect()``; medians over ``--repeat``
rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import airflow_env, git_head, images, machine, migrate_db, table, write_section
from scale import reference_dag, sync_dag, write_project
from scale_scheduler import SECTION, start_postgres

COMMAND = ".venv/bin/python bench/scheduler_loop.py"
SUBSECTION = "One scheduler loop per DAG run: ours against the plain DAG (no tasks run)"
PLAIN, PLAIN_FINAL, OURS = ("plain DockerOperator DAG", "plain DAG + a final teardown",
                             "ours (factory DAG)")
RUNNING = 8  # LocalExecutor parallelism of the real-scheduler bench
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def lanes_of(size: int, max_map_length: int) -> list[int]:
    """How many runs each mapped group holds."""
    from airflow_orchest_jobs.core.plan import lanes_needed

    return [min(max_map_length, size - k * max_map_length)
            for k in range(lanes_needed(size, max_map_length))]


def producers(ours: bool, lanes: list[int]) -> dict[str, int]:
    """The tasks whose output a mapped group expands over -> its length."""
    if ours:
        if len(lanes) == 1:
            return {"plan": lanes[0]}
        return {f"plan_slice_{k + 1}": n for k, n in enumerate(lanes)}
    return {f"slice_{k + 1}": n for k, n in enumerate(lanes)}


def mapped_or_teardown(task: Any) -> bool:
    """A task that runs in or after the mapped groups (not before them)."""
    return (task.is_mapped or task.get_closest_mapped_task_group() is not None
            or task.is_teardown)


def create_run(dag_id: str, ours: bool, lanes: list[int]) -> tuple[str, int]:
    """A DAG run of ``dag_id`` in the middle of its grid; its run id and TI count."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskmap import TaskMap
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select, update

    run_id = f"bench__{dag_id}"
    feeding = producers(ours, lanes)
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        run = dag.create_dagrun(run_id=run_id, run_after=T0, run_type=DagRunType.MANUAL,
                                triggered_by=DagRunTriggeredByType.TEST,
                                state=DagRunState.RUNNING, start_date=T0, session=session)
        # What ran before the groups: done, their mapped outputs' lengths recorded.
        before = [t for t in run.get_task_instances(session=session)
                  if not mapped_or_teardown(dag.get_task(t.task_id))]
        for ti in before:
            ti.state, ti.start_date, ti.end_date = TaskInstanceState.SUCCESS, T0, T0
            ti.try_number = 1
            if ti.task_id in feeding:
                session.add(TaskMap(dag_id=dag_id, task_id=ti.task_id, run_id=run_id,
                                    map_index=-1, length=feeding[ti.task_id], keys=None))
        session.flush()
        run.dag = dag
        run.update_state(session=session, execute_callbacks=False)  # expands the groups
        session.flush()
        mapped = session.scalars(select(TI).where(
            TI.dag_id == dag_id, TI.run_id == run_id, TI.map_index >= 0
        ).order_by(TI.task_id, TI.map_index)).all()
        if len(mapped) != sum(lanes):
            raise SystemExit(f"{dag_id}: {len(mapped)} mapped task instances after "
                             f"expansion, wanted {sum(lanes)}")
        done = len(mapped) // 2
        rows: list[dict[str, Any]] = []
        for n, ti in enumerate(mapped):
            start = T0 + timedelta(seconds=n)
            row: dict[str, Any] = {
                "id": ti.id, "try_number": 1, "hostname": "bench-host", "unixname": "root",
                "pid": 10000 + n, "queued_dttm": start, "scheduled_dttm": start,
            }
            if ours:  # the run label a real step instance renders (map_index_template)
                row["_rendered_map_index"] = f"run {n} · i={n}"
            if n < done:
                row.update(state=TaskInstanceState.SUCCESS, start_date=start,
                           end_date=start + timedelta(seconds=4), duration=4.0)
            elif n < done + RUNNING:
                row.update(state=TaskInstanceState.RUNNING, start_date=start)
            else:
                row.update(state=TaskInstanceState.SCHEDULED, hostname="", pid=None,
                           start_date=None, queued_dttm=None)
                row.pop("_rendered_map_index", None)
            rows.append(row)
        session.execute(update(TI), rows)
        total = len(run.get_task_instances(session=session))
    return run_id, total


def time_loop(dag_id: str, run_id: str) -> tuple[float, float]:
    """Seconds of one scheduler loop's work for this DAG run, and of the fetch alone."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        session.rollback()
        gc.collect()  # each loop starts from the same heap, whichever DAG ran before
        started = time.perf_counter()
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id,
                                                  DagRun.run_id == run_id))
        run.dag = dag
        run.update_state(session=session, execute_callbacks=False)
        looped = time.perf_counter() - started
        session.rollback()
    gc.collect()
    with create_session() as session:
        started = time.perf_counter()
        DagRun.fetch_task_instances(dag_id=dag_id, run_id=run_id, session=session)
        fetched = time.perf_counter() - started
        session.rollback()
    return looped, fetched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    tags = images()
    root = Path(tempfile.mkdtemp(prefix="aoj-bench-loop-"))
    env = airflow_env(root, environment_images=json.dumps({"*": tags["busybox"]}))
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], stop_db = start_postgres(root)
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        del os.environ[key]
    os.environ.update(env)  # before anything imports Airflow
    try:
        migrate_db(env)
        projects = Path(env["AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR"])
        ours_ids = {size: write_project(projects, size, f"echo_{size}") for size in sizes}

        from airflow.configuration import conf

        from airflow_orchest_jobs.core.settings import Settings
        from airflow_orchest_jobs.dag.factory import build_dags

        mml = conf.getint("core", "max_map_length")
        settings = Settings.from_environment()
        built = build_dags(settings)
        cases: list[tuple[str, int, str, bool]] = []
        for size in sizes:
            plain_id = f"reference_docker_echo_{size}"
            for dag_id, final in ((plain_id, False), (f"{plain_id}_final", True)):
                sync_dag(reference_dag(tags["busybox"], size, mml, settings.docker_url,
                                       dag_id=dag_id, final_teardown=final))
            sync_dag(built[ours_ids[size]])
            cases += [(PLAIN, size, plain_id, False),
                      (PLAIN_FINAL, size, f"{plain_id}_final", False),
                      (OURS, size, ours_ids[size], True)]
        runs = {}
        for label, size, dag_id, ours in cases:
            runs[dag_id] = create_run(dag_id, ours, lanes_of(size, mml))
            print(f"{label} at {size}: {runs[dag_id][1]} task instances", flush=True)
        timings: dict[str, list[tuple[float, float]]] = {d: [] for _, _, d, _ in cases}
        for r in range(args.repeat + 1):  # a first, unrecorded round warms caches
            shift = r % len(cases)  # each DAG run is timed in every position of a round
            for _, _, dag_id, _ in cases[shift:] + cases[:shift]:
                timings[dag_id].append(time_loop(dag_id, runs[dag_id][0]))
        for dag_id in timings:
            del timings[dag_id][0]
    finally:
        subprocess.run(stop_db, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    loop = {d: statistics.median(t[0] for t in v) for d, v in timings.items()}
    fetch = {d: statistics.median(t[1] for t in v) for d, v in timings.items()}
    smallest = min(sizes)
    rows = []
    for label, size, dag_id, _ in cases:
        plain_id = next(d for lb, s, d, _ in cases if s == size and lb == PLAIN)
        base_id = next(d for lb, s, d, _ in cases if s == smallest and lb == label)
        tis = runs[dag_id][1]
        rows.append([label, size, tis, f"{loop[dag_id] * 1000:.0f} ms",
                     f"{loop[dag_id] / tis * 1e6:.1f} µs",
                     f"{fetch[dag_id] * 1000:.0f} ms",
                     f"{loop[dag_id] / loop[plain_id]:.2f}x",
                     f"{loop[dag_id] / loop[base_id]:.1f}x"])
    text = table(["DAG", "pipeline runs", "task instances in the DAG run",
                  "one loop (update_state)", "per task instance", "fetch_task_instances",
                  "loop: of the plain DAG's", f"loop: of its {smallest}-run grid's"], rows)
    print(text)
    if not args.no_write:
        head = git_head()
        write_section(SECTION, (
            f"`{COMMAND} --sizes {args.sizes} --repeat {args.repeat}` "
            f"({time.strftime('%Y-%m-%d')}; commit {head}; {machine()}; PostgreSQL 15 of "
            f"its own; medians of {args.repeat} interleaved rounds). A DAG run of each DAG "
            "half done (the first half `success`, 8 `running`, the rest `scheduled`), "
            "timed through what Airflow's scheduler does for a running DAG run on every "
            "loop (a fresh session, the run loaded, `update_state`), and through "
            "`fetch_task_instances` alone. See the script's docstring for how the runs are "
            "made.\n\n" + text), subsection=SUBSECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
