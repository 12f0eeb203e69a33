"""Benchmark DAG parsing: 200 generated ten-step pipelines through dags/orchest_jobs.py
against a hand-written DAG file building the same 200 DAG shapes directly.

Run: ``.venv/bin/python bench/parse.py`` (``--repeat 5``; ``--projects 20 --pipelines 10``
is the default layout, ``--projects 200 --pipelines 1`` the other one; ``--profile``
also profiles one parse of ours with cProfile; ``--no-write`` leaves RESULTS.md alone).

How a parse is measured, and why this way: Airflow's DAG processor parses every file
in a *new process* forked from its manager (``DagFileProcessorProcess.start``). The
manager has Airflow imported, and before forking it imports the ``airflow.*`` modules
the DAG file imports (``[dag_processor] parsing_pre_import_modules``, on by default); the
child builds a ``BundleDagBag`` of the file and calls ``DagSerialization.to_dict`` on
every DAG. So each measurement here is a fresh ``python`` child process that first
imports what the manager has (untimed), then times ``DagBag(dag_folder=<folder with the
one file>, load_op_links=False)`` (the file's execution, including the import of
whatever the manager did not pre-import) and the serialization of every DAG. In-process
reloading would flatter ours: after the first round the plugin's modules and its
per-process caches would stay loaded, which never happens under the processor (every
parse is a new fork).

Modes: ``processor`` applies Airflow's pre-import rule (the manager imports the
``airflow.*`` modules a DAG file names: the docker provider for both files, since
``dags/orchest_jobs.py`` names it for that reason; ``airflow_orchest_jobs`` itself is
imported in every parse), then ``gc.freeze()`` as the manager does before it forks, with
the plugin's store as earlier parses and runs left it: the processor's steady state on
unchanged projects. ``processor, empty store``: the same with a new, empty store per
process (a first parse). ``cold``: nothing pre-imported and nothing frozen, so both files
pay for all their imports. Each child then parses the same file a second time in the
same process (per-process caches warm, as for ``airflow dags list -l``; the processor
never gets that).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ENV_UUID,
    PYTHON,
    REPO,
    airflow_env,
    child_env,
    git_head,
    machine,
    median,
    table,
    write_section,
)

COMMAND = ".venv/bin/python bench/parse.py"
HISTORY = ("History: the first run of this benchmark (2026-11-29 02:00 UTC, before commits "
           "fd129d0, 4c9965c and 86b8c54) measured 19.1 s vs 4.2 s, **4.6x**, in "
           "`processor` mode: the DAG was created "
           "with `params=`, so every task deep-copied the three trigger-form Params and "
           "`DagSerialization` dumped them twice per task, each dump a jsonschema "
           "`validate` + `check_schema` per Param (16,800 for 200 DAGs, about 70% of the "
           "time). Attaching the params after the tasks exist (now in `orchest_dag`) "
           "measured 1.28x in the same run.\n")
SECTION = "DAG parsing"
#: Issue 12: parse + serialize at most this ratio to the hand-written file.
GOAL = 1.2
#: The ten steps: (number, extension, parent numbers): a chain with two fan-out/fan-in.
STEPS = [(1, "py", ()), (2, "py", (1,)), (3, "py", (2,)), (4, "sh", (2,)), (5, "py", (3, 4)),
         (6, "py", (5,)), (7, "py", (6,)), (8, "sh", (6,)), (9, "py", (6,)),
         (10, "sh", (7, 8, 9))]
PY_STEP = 'import orchest\n\nn = orchest.get_step_param("n")\nprint("step", n)\n'
SH_STEP = '#!/bin/bash\nset -eu\necho "step in $ORCHEST_SESSION_UUID"\n'


# --------------------------------------------------------------------------- generation

def step_uuid(project: str, pipeline: str, number: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{project}/{pipeline}/{number}"))


def write_projects(projects_dir: Path, projects: int, pipelines: int) -> list[str]:
    """Generate the projects; returns the DAG ids the factory should make."""
    dag_ids = []
    for p in range(projects):
        name = f"proj_{p:03d}"
        project = projects_dir / name
        env = project / ".orchest" / "environments" / ENV_UUID
        env.mkdir(parents=True)
        (env / "properties.json").write_text(json.dumps({
            "uuid": ENV_UUID, "name": "Python", "language": "python",
            "base_image": "orchest/base-kernel-py:v2022.10.0", "gpu_support": False}))
        (env / "setup_script.sh").write_text("#!/bin/bash\n")
        (project / ".gitignore").write_text("__pycache__/\n*.pyc\n")
        for k in range(pipelines):
            pipe = f"pipe_{k:02d}"
            uuids = {n: step_uuid(name, pipe, n) for n, _, _ in STEPS}
            (project / pipe).mkdir()
            steps = {}
            for n, ext, parents in STEPS:
                rel = f"{pipe}/step_{n}.{ext}"
                (project / rel).write_text(PY_STEP if ext == "py" else SH_STEP)
                steps[uuids[n]] = {
                    "uuid": uuids[n], "title": f"Step {n}", "file_path": rel,
                    "incoming_connections": [uuids[q] for q in parents],
                    "kernel": {"name": "python", "display_name": "Python 3"},
                    "parameters": {"n": n} if n == 1 else {},
                    "environment": ENV_UUID,
                    "meta_data": {"hidden": False, "position": [100 * n, 0]},
                }
            doc = {"name": f"{name} {pipe}", "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                      f"{name}/{pipe}")),
                   "version": "1.2.3", "parameters": {"alpha": 1, "label": "x"},
                   "settings": {"auto_eviction": False, "data_passing_memory_size": "1GB",
                                "max_steps_parallelism": 0},
                   "services": {}, "steps": steps}
            (project / f"{pipe}.orchest").write_text(json.dumps(doc, indent=4))
            (project / f"{pipe}.parameters.json").write_text(json.dumps(
                {"pipeline_parameters": {"alpha": [1, 2]}, uuids[1]: {"n": [1, 2, 3]}}))
            dag_ids.append(f"orchest__{name}__{pipe}")
    return dag_ids


REFERENCE = '''\
"""Hand-written reference DAG file (generated by bench/parse.py): the Orchest DAG shape.

snapshot (a trivial operator) -> plan (@task) -> mapped task group of ten DockerOperators
wired like the generated pipelines -> finalize (a trivial teardown of the snapshot).
"""

from datetime import datetime, timezone

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import DAG, BaseOperator, task, task_group

DAG_IDS = {dag_ids!r}
STEPS = {steps!r}


class SnapshotOperator(BaseOperator):
    def execute(self, context):
        return {{"snapshot_id": "x", "run_root": "/tmp"}}


class FinalizeOperator(BaseOperator):
    def execute(self, context):
        return None


def build(dag_id):
    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
             catchup=False, tags=["orchest"]) as dag:
        snapshot = SnapshotOperator(task_id="snapshot")

        @task(task_id="plan")
        def plan(info):
            return [{{"label": f"run {{i}}", "RUN": str(i)}} for i in range(6)]

        @task_group(group_id="pipeline_run")
        def pipeline_run(run):
            ops = {{}}
            for number, _, parents in STEPS:
                ops[number] = DockerOperator(
                    task_id=f"step_{{number}}", image="busybox",
                    command=["/bin/sh", "-c", "echo $RUN"], environment=run,
                    network_mode="none", auto_remove="force", mount_tmp_dir=False,
                    do_xcom_push=False)
                for parent in parents:
                    ops[parent] >> ops[number]

        group = pipeline_run.expand(run=plan(snapshot.output))
        group >> FinalizeOperator(task_id="finalize").as_teardown(setups=snapshot)
    return dag


for _dag_id in DAG_IDS:
    globals()[_dag_id] = build(_dag_id)
'''


def write_dag_files(root: Path, dag_ids: list[str]) -> dict[str, Path]:
    """One folder per side, each holding one DAG file."""
    files = {"ours": ("orchest_jobs.py", (REPO / "dags" / "orchest_jobs.py").read_text()),
             "handwritten": ("handwritten.py", REFERENCE.format(dag_ids=dag_ids,
                                                                steps=STEPS))}
    folders = {}
    for side, (name, text) in files.items():
        folders[side] = root / f"dags-{side}"
        folders[side].mkdir()
        (folders[side] / name).write_text(text)
    return folders


# --------------------------------------------------------------------------- child side

def child(folder: str, preimport: bool, profile: str | None) -> None:
    """One parse as the DAG processor's forked child does it; prints JSON timings."""
    import gc
    import importlib
    import resource

    start = time.perf_counter()
    import airflow.dag_processing.processor  # noqa: F401 - what the manager has loaded
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.file import iter_airflow_imports

    out = {"core_import": time.perf_counter() - start}
    (file,) = [p for p in Path(folder).iterdir() if p.suffix == ".py"]
    start = time.perf_counter()
    if preimport:  # airflow.dag_processing.processor._pre_import_airflow_modules
        for module in iter_airflow_imports(str(file)):
            importlib.import_module(module)
        # DagFileProcessorManager.before_run: gc.freeze() before forking the parsers, so
        # the collector of a parse never walks what the manager had loaded.
        gc.freeze()
    out["preimport"] = time.perf_counter() - start

    def parse() -> dict:
        start = time.perf_counter()
        bag = DagBag(dag_folder=folder, load_op_links=False)
        parsed = time.perf_counter()
        if bag.import_errors:
            raise SystemExit(f"import errors: {bag.import_errors}")
        tasks = 0
        for dag in bag.dags.values():
            DagSerialization.to_dict(dag)
            tasks += len(dag.task_dict)
        done = time.perf_counter()
        return {"parse": parsed - start, "serialize": done - parsed, "total": done - start,
                "dags": len(bag.dags), "tasks": tasks}

    if profile:
        import cProfile

        profiler = cProfile.Profile()
        out["first"] = profiler.runcall(parse)
        profiler.dump_stats(profile)
    else:
        out["first"] = parse()
    gc.collect()
    out["second"] = parse()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def run_child(folder: Path, env: dict, preimport: bool, profile: Path | None = None,
              fresh_store: bool = False) -> dict:
    if fresh_store:  # the plugin's store (and its validation memo) as on a first parse
        env = {**env, "AIRFLOW__ORCHEST_JOBS__STORE_DIR": tempfile.mkdtemp(
            prefix="store-", dir=Path(env["AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR"]).parent)}
    cmd = [PYTHON, str(Path(__file__).resolve()), "--child", str(folder)]
    if preimport:
        cmd.append("--preimport")
    if profile:
        cmd += ["--profile-out", str(profile)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(line[-1][len("RESULT "):])
    result["process_wall"] = wall
    return result


# --------------------------------------------------------------------------- driver

#: mode: (pre-import the file's airflow.* imports as the manager does, fresh store)
MODES = {"processor": (True, False), "cold": (False, False),
         "processor, empty store": (True, True)}


def measure(folders: dict[str, Path], env: dict, repeat: int) -> dict:
    """{mode: {side: [child results]}}: every repetition runs every mode and side once,
    the order rotating, so slow spells of the shared machine hit all of them alike."""
    results: dict[str, dict[str, list]] = {m: {side: [] for side in folders} for m in MODES}
    for folder in folders.values():  # warm-up: airflow.cfg, .pyc files, page cache
        run_child(folder, env, preimport=True)
    sides = list(folders)
    for i in range(repeat):
        for mode in (list(MODES) if i % 2 == 0 else list(reversed(MODES))):
            order = sides[i % len(sides):] + sides[:i % len(sides)]
            if i % 2:
                order.reverse()
            for side in order:
                preimport, fresh = MODES[mode]
                r = run_child(folders[side], env, preimport=preimport, fresh_store=fresh)
                results[mode][side].append(r)
                print(f"  #{i + 1} {mode:>22} {side:>13}: first {r['first']['total']:.2f} s "
                      f"(parse {r['first']['parse']:.2f} + serialize "
                      f"{r['first']['serialize']:.2f}), second {r['second']['total']:.2f} s,"
                      f" {r['first']['dags']} DAGs / {r['first']['tasks']} tasks",
                      flush=True)
    return results


def _pick(result: dict, keys: tuple) -> float:
    for key in keys:
        result = result[key]
    return result


def paired(results: dict, mode: str, side: str, keys: tuple) -> float:
    """Median over repetitions of side / hand-written (runs of one repetition are close
    in time, so this ratio is steadier than the ratio of the medians)."""
    return median(_pick(a, keys) / _pick(b, keys) for a, b in
                  zip(results[mode][side], results[mode]["handwritten"], strict=True))


def summarize(results: dict) -> tuple[str, dict]:
    rows, figures = [], {}
    for mode, sides in results.items():
        def med(side, keys, sides=sides):
            return median(_pick(r, keys) for r in sides[side])

        for label, keys in (("parse (DagBag)", ("first", "parse")),
                            ("serialize (to_dict, every DAG)", ("first", "serialize")),
                            ("**parse + serialize**", ("first", "total")),
                            ("second parse + serialize, same process", ("second", "total")),
                            ("whole child process (incl. Airflow import)", ("process_wall",)),
                            ("peak RSS of the child (MB)", ("max_rss_mb",))):
            ours, ref = med("ours", keys), med("handwritten", keys)
            unit = "" if "RSS" in label else " s"
            rows.append([mode, label, f"{ours:.2f}{unit}", f"{ref:.2f}{unit}",
                         f"{ours / ref:.2f}x", f"{paired(results, mode, 'ours', keys):.2f}x"])
            figures[(mode, keys)] = (ours, ref, paired(results, mode, "ours", keys))
    text = table(["mode", "what", "ours (median)", "hand-written (median)",
                  "ratio of medians", "**median of paired ratios**"], rows)
    return text, figures


#: (label, file name suffix, function name): where a parse of ours spends its time.
PROFILE_ROWS = [
    ("build_dags (executing dags/orchest_jobs.py)", "airflow_orchest_jobs/dag/factory.py",
     "build_dags"),
    ("  scan_projects: read + validate the projects", "core/scan.py", "scan_projects"),
    ("    load_pipeline (x pipelines)", "core/pipeline.py", "load_pipeline"),
    ("      schema.check (jsonschema_rs; jsonschema for invalid files)", "core/schema.py",
     "check"),
    ("      check_pipeline (file checks, realpath)", "core/pipeline.py", "check_pipeline"),
    ("  JobDefinition.fingerprint (stat every source file)", "core/jobdef.py",
     "fingerprint"),
    ("  orchest_dag (build the Airflow objects)", "airflow_orchest_jobs/dag/factory.py",
     "orchest_dag"),
    ("    step_task (OrchestStepOperator x steps)", "airflow_orchest_jobs/dag/factory.py",
     "step_task"),
    ("    prepare_task (@task in the group)", "airflow_orchest_jobs/dag/factory.py",
     "prepare_task"),
    ("    finalize_task (@task teardown)", "airflow_orchest_jobs/dag/factory.py", "finalize_task"),
    ("    Airflow: _get_parent_defaults (copies DAG params/default_args into each task)",
     "sdk/bases/operator.py", "_get_parent_defaults"),
    ("DagSerialization.to_dict (every DAG)", "serialization/serialized_objects.py", "to_dict"),
    ("  Airflow: Param.resolve (jsonschema validate + check_schema of a param; twice "
     "per task that carries params)", "sdk/definitions/param.py", "resolve"),
]


def profile_summary(stats_file: Path) -> str:
    """Cumulative time of the functions in ``PROFILE_ROWS`` (cProfile, one parse of ours)."""
    import pstats

    stats = pstats.Stats(str(stats_file))
    total = stats.total_tt
    rows = []
    for label, suffix, name in PROFILE_ROWS:
        label = "· " * ((len(label) - len(label.lstrip())) // 2) + label.strip()
        found = [(cc, nc, ct) for (file, _, func), (cc, nc, _, ct, _) in stats.stats.items()
                 if func == name and file.endswith(suffix)]
        if not found:
            rows.append([label, 0, "not called", "0%"])
            continue
        calls = sum(nc for _, nc, _ in found)
        cum = sum(ct for _, _, ct in found)
        rows.append([label, calls, f"{cum:.2f} s", f"{cum / total:.0%}"])
    return (f"Profile of one parse + serialize of ours (cProfile, `--profile`; {total:.1f} s "
            "under the profiler, which inflates Python-heavy code):\n\n"
            + table(["where", "calls", "cumulative", "share"], rows))


def profile_report(stats_file: Path, limit: int = 35) -> str:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=buf)
    stats.sort_stats("cumulative").print_stats(limit)
    buf.write("\n---- plugin functions (cumulative) ----\n")
    stats.print_stats("airflow_orchest_jobs", limit)
    buf.write("\n---- by own time ----\n")
    stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--pipelines", type=int, default=10, help="pipelines per project")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one processor-mode parse of ours (cProfile)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--preimport", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.preimport, args.profile_out)
        return 0

    root = Path(tempfile.mkdtemp(prefix="aoj-bench-parse-"))
    try:
        env = airflow_env(root)
        dag_ids = write_projects(Path(env["AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR"]),
                                 args.projects, args.pipelines)
        folders = write_dag_files(root, dag_ids)
        env = child_env(env)
        layout = (f"{args.projects} projects x {args.pipelines} pipelines = {len(dag_ids)} "
                  "pipelines of 10 steps")
        print(f"{layout}; {root}", flush=True)
        results = measure(folders, env, args.repeat)
        text, figures = summarize(results)
        print(text)
        if args.profile:
            stats = root / "ours.prof"
            run_child(folders["ours"], env, preimport=True, profile=stats)
            (Path(tempfile.gettempdir()) / "aoj-parse-profile.txt").write_text(
                profile_report(stats))
            summary = profile_summary(stats)
            print(summary)
            text += "\n\n" + summary
        (Path(tempfile.gettempdir()) / "aoj-parse-results.json").write_text(
            json.dumps({"layout": layout, "results": results}, indent=1))
        if not args.no_write:
            when = time.strftime("%Y-%m-%d", time.gmtime())
            ours, ref, ratio = figures[("processor", ("first", "total"))]
            empty = figures[("processor, empty store", ("first", "total"))][2]
            verdict = {side: "met" if value <= GOAL else "MISSED"
                       for side, value in (("warm", ratio), ("empty", empty))}
            first = results["processor"]
            per_dag = {side: first[side][0]["first"]["tasks"] // first[side][0]["first"]["dags"]
                       for side in ("ours", "handwritten")}
            options = (f"--repeat {args.repeat} --projects {args.projects} --pipelines "
                       f"{args.pipelines}" + (" --profile" if args.profile else ""))
            head = git_head()
            write_section(SECTION, (
                f"`{COMMAND} {options}` ({when}; plugin working tree at commit {head}; "
                f"{machine()}; {args.repeat} repetitions, "
                "each running every side and mode once in a fresh child process, the order "
                "rotating).\n\n"
                f"{layout}: each with a parameters file (6-run grid), step files (.py/.sh) "
                "and an environment definition. Ours: `dags/orchest_jobs.py`, the real "
                f"factory ({per_dag['ours']} tasks per DAG: snapshot, plan, 10 steps, "
                "finalize); hand-written: one file building the same 200 DAG ids "
                "(snapshot operator -> `@task` plan -> `@task_group` of ten DockerOperators "
                "`.expand`-ed, wired the same way -> a finalize teardown of the snapshot; "
                f"{per_dag['handwritten']} tasks per DAG, no DAG params, no docs).\n\n"
                f"{text}\n\n"
                f"Goal (issue 12) ≤ {GOAL}x for parse + serialize in `processor` mode, on "
                f"both stores (median of paired ratios): **{verdict['warm']}** on a warm "
                f"store ({ratio:.2f}x; {ours:.1f} s vs {ref:.1f} s), **{verdict['empty']}** "
                f"on an empty store ({empty:.2f}x).\n\n"
                "Modes: `processor` = as Airflow's DAG processor: a fresh process with "
                "Airflow imported and the DAG file's `airflow.*` imports pre-imported by "
                "the manager (the docker provider, named by both files; "
                "`airflow_orchest_jobs` is imported by every parse), the plugin's store as "
                "earlier parses left it (unchanged projects); `processor, empty store` = "
                "the same with a new empty store per process (a first parse); `cold` = "
                "nothing "
                "pre-imported. \"Second parse\" re-parses the unchanged file in the same "
                "process (per-process caches warm); the processor forks a new process "
                "for every parse, so it never gets that.\n\n" + HISTORY
            ))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
