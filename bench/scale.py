"""Benchmark a big grid end to end: a one-step shell pipeline over more than 1024 runs
through the real factory and ``dag.test()``, against a plain DockerOperator DAG starting
the same containers.

Run: ``.venv/bin/python bench/scale.py`` (``--runs 1030`` by default; try ``--runs 40
--no-write`` first; ``--max-map-length N`` sets ``[core] max_map_length`` for BOTH DAGs,
e.g. 32 to see two mapped groups with 40 runs). Needs the Docker engine and the local
busybox image (``python scripts/images.py``). Takes about an hour for 1030 runs.

Ours: ``projects/scale/echo.orchest``, one ``.sh`` step (``echo "run
$ORCHEST_SESSION_UUID"``), a parameters file with ``runs`` values for one pipeline
parameter, its environment mapped to the busybox image by ``[orchest_jobs]
environment_images = {"*": ...}``, network mode none. The DAG has
``ceil(runs / max_map_length)`` mapped ``pipeline_run`` groups (the step only: it makes
the run's project copy itself; only the run's key is mapped, the shared part is one XCom).

Reference: a hand-written DAG: ``items`` (@task returning the ``runs`` environments) ->
one ``slice_N`` @task per ``max_map_length`` items -> ``DockerOperator.partial(...)
.expand(environment=...)`` per slice, same image, same shell command
(``/bin/sh -c 'echo "run $ORCHEST_SESSION_UUID"'``), network none, auto-remove. It is
split like ours (Airflow's max_map_length, 1024 by default, limits it too), so both DAGs
run with the same Airflow configuration.

Both DAGs are serialized into a freshly migrated SQLite metadata DB (as the DAG processor
would) and, after a one-task warm-up DAG, run once each with ``dag.test()`` in this
process, which runs every task instance sequentially. Every task instance must end in
``success``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    ENV_UUID,
    airflow_env,
    dump,
    git_head,
    images,
    machine,
    migrate_db,
    table,
    write_section,
)
from tests.orchest_factory import pipeline_doc, step, write_environment
from tests.orchest_factory import write_project as write_orchest_project

COMMAND = ".venv/bin/python bench/scale.py"
SECTION = "Big grids (scale)"
HISTORY = ("Before slim mapping (commit 1142a8e, 2026-11-29, --runs 1030): 0.90 s vs 0.45 s "
           "per pipeline run, 2.0x (a prepare task per run; each mapped instance pulled its "
           "lane's list of full run descriptions).")
DAG_ID = "orchest__scale__echo"
REFERENCE_ID = "reference_docker_echo"
ECHO = 'echo "run $ORCHEST_SESSION_UUID"'
STEP_UUID = "5ca1e000-0000-4000-8000-000000000001"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- setup

def write_project(projects_dir: Path, runs: int, pipeline: str = "echo") -> str:
    """A pipeline of the ``scale`` project: one ``.sh`` step over a ``runs``-run grid (its
    parameters file), busybox. Returns its DAG id."""
    project = projects_dir / "scale"
    doc = pipeline_doc([step(STEP_UUID, "echo.sh", title="Echo", environment=ENV_UUID,
                             kernel={"name": "bash", "display_name": "Bash"})],
                       parameters={"i": 0}, uuid="5ca1e000-0000-4000-8000-00000000000f",
                       name="scale")
    write_orchest_project(project, doc, name=f"{pipeline}.orchest",
                          files={"echo.sh": f"#!/bin/bash\n{ECHO}\n"},
                          parameters={"pipeline_parameters": {"i": list(range(runs))}},
                          environment=False)
    write_environment(project, ENV_UUID, base_image="busybox", language="bash")
    return f"orchest__scale__{pipeline}"


def warmup_dag():
    """One trivial task: the first task run in a process starts dag.test()'s in-process
    execution API (several seconds); neither measured DAG should pay for that."""
    from airflow.sdk import DAG, task

    with DAG("bench_warmup", schedule=None, start_date=START, catchup=False) as dag:
        @task(task_id="noop")
        def noop() -> None:
            return None

        noop()
    return dag


def reference_dag(image: str, runs: int, max_map_length: int, docker_url: str,
                  dag_id: str = REFERENCE_ID, final_teardown: bool = False):
    """The plain DockerOperator DAG: the same containers, nothing of the plugin.

    ``final_teardown``: a last task after every container, a teardown of ``items`` (the
    shape of our ``finalize``), for bench/scheduler_loop.py.
    """
    from airflow.providers.docker.operators.docker import DockerOperator
    from airflow.sdk import DAG, task

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        @task(task_id="items")
        def items() -> list[dict[str, str]]:
            return [{"ORCHEST_SESSION_UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ref:{i}"))}
                    for i in range(runs)]

        listed = items()
        containers = []
        for lane in range(math.ceil(runs / max_map_length)):
            @task(task_id=f"slice_{lane + 1}")
            def slice_(envs: list[dict[str, str]], lane: int = lane) -> list[dict[str, str]]:
                return envs[lane * max_map_length:(lane + 1) * max_map_length]

            containers.append(DockerOperator.partial(
                task_id=f"echo_{lane + 1}", image=image, command=["/bin/sh", "-c", ECHO],
                network_mode="none", auto_remove="force", mount_tmp_dir=False, tty=False,
                do_xcom_push=False, docker_url=docker_url,
            ).expand(environment=slice_(listed)))
        if final_teardown:
            @task(task_id="finalize")
            def finalize() -> None:
                return None

            ended = finalize().as_teardown(setups=listed)
            for mapped in containers:
                mapped >> ended
    return dag


def probe_item(kind: str, i: int) -> dict[str, Any]:
    """One mapped item of the XCom probe, shaped like the real ones."""
    run_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"probe:{i}"))
    if kind == "plain":  # the plain DAG's environment dict
        return {"ORCHEST_SESSION_UUID": run_uuid}
    if kind == "slim":  # what a run needs to carry if the rest were shared once
        return {"index": i, "label": f"run {i} · i={i}", "run_uuid": run_uuid}
    run_dir = (f"/tmp/aoj-bench-scale-aoa8kmy4/store/runs/{DAG_ID}/"
               f"manual__2026-11-29T02_42_00.005726_00_00/run-{i:05d}")
    return {"index": i, "label": f"run {i} · i={i}", "run_uuid": run_uuid,  # core.plan today
            "run_dir": run_dir, "project_dir": f"{run_dir}/project",
            "definition": f"{run_dir}/pipeline.json", "pipeline_rel": "echo.orchest",
            "snapshot_id": "188d306c592e89117e2a",
            "images": {ENV_UUID: "sha256:" + "a4" * 32}, "env": {}, "secret_env": {}}


#: Probe variants: (item kind, description).
PROBE_ITEMS = (("plain", "plain DAG's item: `{ORCHEST_SESSION_UUID}`"),
               ("run", "ours today: `core.plan.plan_runs` run description (11 keys)"),
               ("slim", "suggested: `{index, label, run_uuid}` only"))


def probe_dag(runs: int, kind: str):
    """XCom probe: a mapped task group (like ours) over ``runs`` items of one shape, one
    trivial @task inside; no containers."""
    from airflow.sdk import DAG, task, task_group

    with DAG(f"xcom_probe_{kind}", schedule=None, start_date=START, catchup=False) as dag:
        @task(task_id="items")
        def items() -> list[dict[str, Any]]:
            return [probe_item(kind, i) for i in range(runs)]

        def group(item: dict[str, Any]) -> None:
            @task(task_id="use")
            def use(item: dict[str, Any]) -> None:
                return None

            use(item)

        task_group(group_id="group")(group).expand(item=items())
    return dag


# --------------------------------------------------------------------------- running

def sync_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata DB as the DAG processor would (as tests/airflow_helpers)."""
    from airflow.configuration import conf
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    Path(conf.get("core", "dags_folder")).mkdir(parents=True, exist_ok=True)
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.flush()
        update_dag_parsing_results_in_db("dags-folder", None,
                                         [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
                                         session=session)


def category(task_id: str, ours: bool) -> str:
    if task_id.startswith("group."):
        return "mapped task"
    if ours:
        if task_id.startswith("plan_slice_"):
            return "plan_slice"
        if "." in task_id:
            tail = task_id.split(".", 1)[1]
            return "prepare" if tail == "prepare" else "step"
        return task_id  # snapshot, plan, finalize
    if task_id.startswith("slice_"):
        return "slice"
    return "container" if task_id.startswith("echo_") else task_id


def run_one(dag: Any, ours: bool) -> dict:
    from airflow.utils.session import create_session

    start = time.perf_counter()
    sync_dag(dag)
    synced = time.perf_counter()
    dag_run = dag.test()
    done = time.perf_counter()
    states: dict[str, Counter] = defaultdict(Counter)
    seconds: dict[str, list[float]] = defaultdict(list)
    mapped: dict[str, list[float]] = defaultdict(list)
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            kind = category(ti.task_id, ours)
            states[kind][str(ti.state)] += 1
            if ti.start_date and ti.end_date:
                seconds[kind].append((ti.end_date - ti.start_date).total_seconds())
                if ti.map_index >= 0:
                    mapped[ti.task_id].append(seconds[kind][-1])
    groups = sorted({t.split(".")[0] for t in dag.task_dict if "." in t}) if ours else \
        sorted(t for t in dag.task_dict if t.startswith("echo_"))
    return {"dag_id": dag.dag_id, "state": str(dag_run.state), "sync": synced - start,
            "test": done - synced, "states": {k: dict(v) for k, v in states.items()},
            "ti_seconds": {k: sum(v) for k, v in seconds.items()},
            "ti_median": {k: statistics.median(v) for k, v in seconds.items()},
            "by_task": {k: [len(v), statistics.median(v)] for k, v in mapped.items()},
            "groups": groups}


def check(result: dict, runs: int, per_run: str, expected_groups: int) -> list[str]:
    """Problems with a finished run: any non-success TI, a wrong TI count, wrong groups."""
    problems = []
    if result["state"] != "success":
        problems.append(f"{result['dag_id']}: DAG run {result['state']}")
    for kind, states in result["states"].items():
        bad = {s: n for s, n in states.items() if s != "success"}
        if bad:
            problems.append(f"{result['dag_id']}: {kind} task instances not successful: {bad}")
    got = sum(result["states"].get(per_run, {}).values())
    if got != runs:
        problems.append(f"{result['dag_id']}: {got} {per_run} task instances, wanted {runs}")
    if len(result["groups"]) != expected_groups:
        problems.append(f"{result['dag_id']}: {len(result['groups'])} mapped groups "
                        f"{result['groups']}, wanted {expected_groups}")
    return problems


# --------------------------------------------------------------------------- report

def report(ours: dict, ref: dict, runs: int) -> str:
    per = runs
    rows = [
        ["**dag.test() wall time**", f"{ours['test']:.0f} s", f"{ref['test']:.0f} s",
         f"{ours['test'] / ref['test']:.2f}x"],
        ["**per pipeline run**", f"{ours['test'] / per:.3f} s", f"{ref['test'] / per:.3f} s",
         f"{ours['test'] / ref['test']:.2f}x"],
        ["sync to the DB (serialize, once)", f"{ours['sync']:.1f} s", f"{ref['sync']:.1f} s",
         ""],
    ]
    text = table(["", "ours (factory DAG)", "plain DockerOperator DAG", "ours / plain"], rows)
    lines = []
    for result, label in ((ours, "ours"), (ref, "plain")):
        total_ti = sum(result["ti_seconds"].values())
        for kind in sorted(result["ti_seconds"], key=lambda k: -result["ti_seconds"][k]):
            n = sum(result["states"][kind].values())
            lines.append([label, kind, n, f"{result['ti_seconds'][kind]:.1f} s",
                          f"{result['ti_seconds'][kind] / per:.3f} s",
                          f"{result['ti_seconds'][kind] / n:.3f} s",
                          f"{result['ti_median'][kind]:.3f} s"])
        loop = result["test"] - total_ti
        lines.append([label, "dag.test() loop outside task instances", "",
                      f"{loop:.1f} s", f"{loop / per:.3f} s", "", ""])
    text += "\n\nWhere the time goes (task instance start -> end from the metadata DB; " \
            "the loop line is the rest of dag.test(): scheduling decisions, in-process " \
            "task start-up, XCom, logging):\n\n"
    text += table(["DAG", "task kind", "task instances", "total", "per pipeline run",
                   "mean per task instance", "median per task instance"], lines)
    lanes = [[label, task_id, n, f"{m:.3f} s"] for result, label in ((ours, "ours"),
                                                                      (ref, "plain"))
             for task_id, (n, m) in sorted(result.get("by_task", {}).items())]
    if lanes:
        text += "\n\nMapped task instances by task (a big lane's instances each pull " \
                "the lane's whole XCom list, see the probe below):\n\n"
        text += table(["DAG", "task", "task instances", "median"], lanes)
    return text


def xcom_probe(runs: int, no_write: bool) -> int:
    rows, problems = [], []
    for kind, label in PROBE_ITEMS:
        dag = probe_dag(runs, kind)
        r = run_one(dag, ours=False)
        size = len(json.dumps([probe_item(kind, i) for i in range(runs)]))
        n = sum(r["states"].get("mapped task", {}).values())
        if r["state"] != "success" or n != runs:
            problems.append(f"{dag.dag_id}: {r['state']}, {n} mapped task instances")
        rows.append([label, f"{size / runs:.0f} B", f"{size / 1024:.0f} KB", runs,
                     f"{r['test'] / runs:.3f} s", f"{r['ti_median']['mapped task']:.3f} s"])
        print(rows[-1], flush=True)
    text = table(["item", "item (JSON)", "whole list (one XCom)", "task instances",
                  "dag.test() per task instance", "median task instance"], rows)
    print(text)
    if problems:
        print("PROBLEMS: " + "; ".join(problems))
        return 1
    if not no_write:
        when = time.strftime("%Y-%m-%d", time.gmtime())
        write_section(SECTION, (
            f"`{COMMAND} --xcom-probe --runs {runs}` ({when}; same machine). A mapped task "
            f"group shaped like ours over {runs} items, one trivial @task inside, no "
            "containers, for three item shapes. Every mapped task instance resolves its "
            "group argument by pulling the upstream task's whole XCom list through the "
            "execution API and indexing it (`DictOfListsExpandInput.resolve` -> "
            "`PlainXComArg.resolve` -> `ti.xcom_pull`, task SDK 1.3.2; cProfile of a "
            "128-run lane against a 22-run lane: the difference is all in `xcom_pull` / "
            "`XCom.get_one` and the API thread serving it), so each instance pays for "
            "every run description of its lane.\n\n" + text),
            subsection="XCom probe: why a task instance costs more in a big lane")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1030)
    parser.add_argument("--max-map-length", type=int, default=None,
                        help="[core] max_map_length for both DAGs (default: Airflow's, 1024)")
    parser.add_argument("--first", choices=("ours", "reference"), default="reference",
                        help="which DAG runs first")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--xcom-probe", action="store_true",
                        help="instead: time a mapped task group over --runs (at most "
                             "max_map_length) small vs run-sized items, no containers")
    args = parser.parse_args()

    tags = images()
    root = Path(tempfile.mkdtemp(prefix="aoj-bench-scale-"))
    env = airflow_env(root, environment_images=json.dumps({"*": tags["busybox"]}))
    # Let the plugin create /data's host folder: it gives it to the step user (a fresh
    # install's behaviour; steps do not run as root by default).
    Path(env["AIRFLOW__ORCHEST_JOBS__DATA_DIR"]).rmdir()
    if args.max_map_length:
        env["AIRFLOW__CORE__MAX_MAP_LENGTH"] = str(args.max_map_length)
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        del os.environ[key]
    os.environ.update(env)  # before anything imports Airflow
    print(f"{root}; busybox image {tags['busybox']}", flush=True)
    try:
        migrate_db(env)
        write_project(Path(env["AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR"]), args.runs)

        from airflow.configuration import conf

        from airflow_orchest_jobs.core.settings import Settings
        from airflow_orchest_jobs.dag.factory import build_dags

        max_map_length = conf.getint("core", "max_map_length")
        lanes = math.ceil(args.runs / max_map_length)
        settings = Settings.from_environment()
        dags = build_dags(settings)
        if DAG_ID not in dags:
            raise SystemExit(f"the factory made no {DAG_ID}: {sorted(dags)}")
        ours_dag = dags[DAG_ID]
        ref_dag = reference_dag(tags["busybox"], args.runs, max_map_length,
                                settings.docker_url)
        warm = run_one(warmup_dag(), ours=False)
        print(f"warm-up DAG: {warm['state']} in {warm['test']:.1f} s", flush=True)
        if args.xcom_probe:
            return xcom_probe(min(args.runs, max_map_length), args.no_write)
        results = {}
        order = [("reference", ref_dag), ("ours", ours_dag)]
        if args.first == "ours":
            order.reverse()
        for name, dag in order:
            print(f"running {dag.dag_id} ({args.runs} runs, {lanes} mapped group(s))...",
                  flush=True)
            results[name] = run_one(dag, ours=(name == "ours"))
            r = results[name]
            print(f"  {name}: {r['state']} in {r['test']:.1f} s "
                  f"({r['test'] / args.runs:.3f} s per run); states {r['states']}; "
                  f"groups {r['groups']}", flush=True)
        dump(Path(tempfile.gettempdir()) / f"aoj-scale-{args.runs}.json", results)
        problems = check(results["ours"], args.runs, "step", lanes) + \
            check(results["reference"], args.runs, "container", lanes)
        problems += [f"{DAG_ID}: {n} prepare task instances, wanted none"
                     for n in [sum(results["ours"]["states"].get("prepare", {}).values())]
                     if n]
        text = report(results["ours"], results["reference"], args.runs)
        print(text)
        verified = ("Verified: both DAG runs `success`, every task instance `success`, "
                    f"{args.runs} step and no prepare task instances in ours, "
                    f"{args.runs} containers in the plain DAG, {lanes} mapped groups each "
                    f"(ours: {', '.join(results['ours']['groups'])}).")
        if problems:
            print("PROBLEMS:\n  " + "\n  ".join(problems))
            verified = "NOT verified: " + "; ".join(problems)
        else:
            print(verified)
        if not args.no_write:
            when = time.strftime("%Y-%m-%d", time.gmtime())
            mml = (f"`AIRFLOW__CORE__MAX_MAP_LENGTH={args.max_map_length}` for both DAGs"
                   if args.max_map_length else
                   f"Airflow's default max_map_length {max_map_length} for both DAGs")
            extra = f" --max-map-length {args.max_map_length}" if args.max_map_length else ""
            head = git_head()
            write_section(SECTION, (
                f"`{COMMAND} --runs {args.runs}{extra}` ({when}; plugin working tree at "
                f"commit {head}; {machine()}; one "
                f"`dag.test()` run per DAG, {args.first} first; {mml}).\n\n"
                f"A one-step `.sh` pipeline (`{ECHO}`) over a {args.runs}-run grid from its "
                "parameters file, environment mapped to the local busybox image, network "
                "none, through the real factory; against a plain DockerOperator DAG "
                "(`items` @task -> `slice_N` @task -> `DockerOperator.partial(...)"
                ".expand(environment=...)`, split into "
                f"{lanes} mapped task(s) like ours) running the same image and shell "
                "command. `dag.test()` runs task instances one after another, so the "
                "figures are per-run costs, not throughput of a real deployment.\n\n"
                f"{text}\n\n{verified}\n\n{HISTORY}\n"
            ))
        return 1 if problems else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
