"""Per-run cost on a real scheduler: the factory's DAG against a plain DockerOperator DAG.

Run: ``.venv/bin/python bench/scale_scheduler.py --runs 200`` (``--sizes 100,1000`` also
runs ours at each size, to see whether the cost per run grows with the grid, e.g.
``--sizes 1000,10000``). Starts
Airflow's api-server, scheduler and dag-processor on 127.0.0.1 (LocalExecutor, ``[core]
parallelism`` 8; SQLite, or with ``--postgres`` a PostgreSQL 15 of its own, as
production has: SQLite's single writer lock gives way under a 10,000-run grid), with a
DAGs folder holding ``dags/orchest_jobs.py`` and the plain reference DAG of
``bench/scale.py`` (same busybox image, same shell command, network none). Each DAG is
triggered through the REST API and timed from the DAG run's start to its end (the
metadata DB's dates); both run in the same deployment, one after the other. Needs the
Docker engine and the local images.

While each DAG runs, the resident memory of the scheduler (its main process) and of the
API server (its process tree) is sampled every 2 s: a cost that grows with the grid would
show there as well as in the time per run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import REPO, git_head, images, machine, table, write_section
from scale import DAG_ID, REFERENCE_ID, write_project
from tests.deployment import Deployment, api_seconds, environment, free_port, stop

SECTION = "Big grids on a real scheduler"
COMMAND = ".venv/bin/python bench/scale_scheduler.py"
REFERENCE_FILE = '''\
# An airflow DAG file (the words "airflow" and "dag" let the DAG processor's safe mode read it).
import sys
sys.path.insert(0, {bench!r})
from scale import reference_dag
dag = reference_dag({image!r}, {runs}, {max_map_length}, "unix://var/run/docker.sock")
'''


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def start_postgres(root: Path) -> tuple[str, list[str]]:
    """A PostgreSQL cluster of its own under ``root`` (loopback, trust auth): the metadata
    DB URL, and the command that stops it."""
    data, run_dir = root / "pg" / "data", root / "pg" / "run"
    run_dir.mkdir(parents=True)
    root.chmod(0o711)  # mkdtemp's 0700 would keep the postgres user out
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(root / "pg", "postgres", "postgres")
        shutil.chown(run_dir, "postgres", "postgres")
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                    "-E", "UTF8", "--auth=trust"], check=True, capture_output=True)
    port = free_port()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c max_connections=200 "
               f"-c unix_socket_directories={run_dir} -c synchronous_commit=off")
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                    str(root / "pg" / "log"), "-w", "start"], check=True, capture_output=True)
    subprocess.run([*as_pg, str(PG_BIN / "createdb"), "-h", str(run_dir), "-p", str(port),
                    "-U", "postgres", "airflow"], check=True, capture_output=True)
    return (f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow",
            [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


def bench_deployment(root: Path, image: str, database: str | None = None) -> Deployment:
    """The test deployment's components under ``root`` (DAGs in ``root/dags``, projects in
    ``root/projects``), with SQLite unless ``database`` is given, as before the tests moved
    to PostgreSQL, and Airflow's defaults, not the test deployment's quick re-parse (5 s)
    and heartbeat (2 s): nothing is added while a bench runs, and on 2 cores a parse every
    5 s takes CPU from the runs being measured."""
    port = free_port()
    env = environment(root, port, root / "projects", root / "store", root / "data", image,
                      database or f"sqlite:///{root}/airflow.db")
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(root / "dags")
    env.pop("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", None)
    env.pop("AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC", None)
    return Deployment(home=root, env=env, base_url=f"http://127.0.0.1:{port}",
                      projects_dir=root / "projects", store_dir=root / "store",
                      data_dir=root / "data")


class MemorySampler(threading.Thread):
    """Resident memory (MB) of the deployment's components, sampled until stopped."""

    #: component -> include its child processes (the API server's workers; not the
    #: scheduler's executor workers and task processes, which come and go).
    TREES = {"scheduler": False, "api-server": True}

    def __init__(self, processes: dict[str, subprocess.Popen], interval: float = 2.0):
        super().__init__(daemon=True)
        self.processes, self.interval = processes, interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        #: (label, start, end) of each timed DAG run, on the samples' clock.
        self.windows: list[tuple[str, float, float]] = []
        self.halt = threading.Event()

    def rss(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, tree in self.TREES.items():
            try:
                proc = psutil.Process(self.processes[name].pid)
                procs = [proc, *proc.children(recursive=True)] if tree else [proc]
                out[name] = sum(p.memory_info().rss for p in procs) / 2**20
                out[f"{name} cpu"] = sum(sum(p.cpu_times()[:2]) for p in procs)
            except (KeyError, psutil.Error):
                continue
        return out

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.samples.append((time.monotonic(), self.rss()))

    def window(self, start: float, end: float) -> dict[str, tuple[float, ...]]:
        """{component: (first, at a tenth, peak, last)} MB over samples taken in [start,
        end]. The first tenth is the components' warm-up (their heaps grow to a working
        size); what grows after it is what the grid costs."""
        inside = [(t, s) for t, s in self.samples if start <= t <= end]
        tenth = start + (end - start) / 10
        out = {}
        for name in self.TREES:
            values = [(t, s[name]) for t, s in inside if name in s]
            if values:
                later = [v for t, v in values if t >= tenth] or [values[-1][1]]
                out[name] = (values[0][1], later[0], max(v for _, v in values), values[-1][1])
            cpu = [s[f"{name} cpu"] for _, s in inside if f"{name} cpu" in s]
            if cpu:
                out[f"{name} cpu"] = (cpu[-1] - cpu[0],)
        return out


def timed(deployment: Deployment, dag_id: str, conf: dict | None = None,
          memory: MemorySampler | None = None, memory_out: dict | None = None) -> float:
    deployment.wait_for_dag(dag_id)
    started = time.monotonic()
    run_id = deployment.trigger(dag_id, conf, prefix="bench")
    run = deployment.wait_finished(dag_id, run_id, timeout=14400)
    if run["state"] != "success":
        raise SystemExit(f"{dag_id} {run_id}: {run['state']}\n{deployment.diagnostics()}")
    if memory is not None and memory_out is not None:
        ended = time.monotonic()
        memory.windows.append((run_id, started, ended))
        memory_out.update(memory.window(started, ended))
    return api_seconds(run["start_date"], run["end_date"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200,
                        help="ours against the plain DAG at this size (0: skip)")
    parser.add_argument("--sizes", default="", help="also run ours at these grid sizes")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL as the metadata DB (default SQLite)")
    parser.add_argument("--samples", type=Path,
                        help="also write every memory sample (seconds, MB) to this JSON file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    tags = images()
    root = Path(tempfile.mkdtemp(prefix="aoj-bench-sched-"))
    dags, projects = root / "dags", root / "projects"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "orchest_jobs.py", dags / "orchest_jobs.py")
    (dags / "reference.py").write_text(REFERENCE_FILE.format(
        bench=str(REPO / "bench"), image=tags["busybox"], runs=args.runs,
        max_map_length=1024))
    write_project(projects, args.runs or 1)
    # One pipeline per size, its grid in its parameters file, triggered without a conf: a
    # grid's values in the conf are decoded again by the scheduler for every task
    # instance on every loop (the size's own cost, not the plugin's; see README).
    size_dags = {size: write_project(projects, size, f"echo_{size}") for size in sizes}
    database, stop_db = start_postgres(root) if args.postgres else (None, None)
    deployment = bench_deployment(root, tags["busybox"], database)
    results: dict[str, float] = {}
    memory: dict[str, dict] = {}
    sampler = MemorySampler(deployment.processes)
    try:
        deployment.start(migrate_timeout=300, timeout=180)
        sampler.start()
        if args.runs:
            grid = {"parameters": {"pipeline_parameters": {"i": list(range(args.runs))}}}
            results["plain"] = timed(deployment, REFERENCE_ID, None, sampler,
                                     memory.setdefault("plain", {}))
            results["ours"] = timed(deployment, DAG_ID, grid, sampler,
                                    memory.setdefault("ours", {}))
        for size in sizes:
            results[f"ours@{size}"] = timed(deployment, size_dags[size], None, sampler,
                                            memory.setdefault(f"ours@{size}", {}))
            print(f"ours@{size}: {results[f'ours@{size}']:.0f} s", flush=True)
    finally:
        sampler.halt.set()
        if args.samples:
            start = sampler.samples[0][0] if sampler.samples else 0.0
            args.samples.write_text(json.dumps({
                "windows": [[label, round(a - start, 1), round(b - start, 1)]
                            for label, a, b in sampler.windows],
                "samples": [[round(t - start, 1), rss] for t, rss in sampler.samples]}))
        stop(list(deployment.processes.values()))
        if stop_db:
            subprocess.run(stop_db, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    def mem(key: str, component: str) -> str:
        values = memory.get(key, {}).get(component, (0.0,) * 4)
        return " / ".join(f"{v:.0f}" for v in values)

    def cpu(key: str, runs: int) -> str:
        used = [memory.get(key, {}).get(f"{name} cpu", (float("nan"),))[0]
                for name in MemorySampler.TREES]
        return " / ".join(f"{u / runs:.3f}" for u in used)

    rows = []
    if args.runs:
        rows += [["plain DockerOperator DAG", args.runs, f"{results['plain']:.0f} s",
                  f"{results['plain'] / args.runs:.3f} s", "1.00x", mem("plain", "scheduler"),
                  mem("plain", "api-server"), cpu("plain", args.runs)],
                 ["ours (factory DAG)", args.runs, f"{results['ours']:.0f} s",
                  f"{results['ours'] / args.runs:.3f} s",
                  f"{results['ours'] / results['plain']:.2f}x", mem("ours", "scheduler"),
                  mem("ours", "api-server"), cpu("ours", args.runs)]]
    for size in sizes:
        seconds = results[f"ours@{size}"]
        per_run = seconds / size
        base = min(sizes)  # the ratio is to the smallest grid, whatever the order run
        first = results[f"ours@{base}"] / base
        rows.append([f"ours, {size}-run grid", size, f"{seconds:.0f} s", f"{per_run:.3f} s",
                     f"{per_run / first:.2f}x of the {base}-run grid's",
                     mem(f"ours@{size}", "scheduler"), mem(f"ours@{size}", "api-server"),
                     cpu(f"ours@{size}", size)])
    text = table(["DAG", "pipeline runs", "DAG run (start to end)", "per pipeline run",
                  "ratio", "scheduler RSS MB (start / at 10% / peak / end)",
                  "API server RSS MB (start / at 10% / peak / end)",
                  "CPU s per run (scheduler / API server)"], rows)
    print(text)
    if not args.no_write:
        head = git_head()
        extra = (f" --sizes {args.sizes}" if sizes else "") + (" --postgres" if args.postgres
                                                               else "")
        write_section(SECTION, (
            f"`{COMMAND} --runs {args.runs}{extra}` ({time.strftime('%Y-%m-%d')}; commit "
            f"{head}; {machine()}; api-server + scheduler + dag-processor, LocalExecutor, "
            f"parallelism 8, {'PostgreSQL 15' if args.postgres else 'SQLite'}; one DAG run "
            "each, in the order of the table).\n\n"
            + text), subsection=f"--runs {args.runs}{extra}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
