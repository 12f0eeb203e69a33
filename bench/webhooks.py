"""A job run with webhooks configured against the same job run without, on a real scheduler.

Run: ``.venv/bin/python bench/webhooks.py --runs 200`` (``--rounds 2``). Starts Airflow's
api-server, scheduler and dag-processor on 127.0.0.1 (LocalExecutor, as
``bench/scale_scheduler.py``) with the ``scale`` pipeline (one busybox step per run, a
``--runs``-run grid), then triggers it alternately without webhooks and with one webhook
subscribed to every one-off event (so each run writes two deliveries, the job run two
more) whose receiver, a thread of this script on 127.0.0.1, answers 500 to every other
attempt (so the delivery loop retries while the runs go on). Each DAG run is timed from
its start to its end (the metadata DB's dates); the ratio is with / without (the issue's
bound: within 2%). Needs the Docker engine and the local images.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import REPO, git_head, images, machine, table, write_section
from scale import DAG_ID, write_project
from scale_scheduler import bench_deployment, timed
from tests.deployment import stop

SECTION = "Webhooks on a real scheduler"
COMMAND = ".venv/bin/python bench/webhooks.py"
EVENTS = [f"project:one-off-job:{e}" for e in ("started", "succeeded", "failed", "cancelled")]
EVENTS += [f"project:one-off-job:pipeline-run:{e}" for e in ("started", "succeeded",
                                                             "failed", "cancelled")]


def receiver() -> tuple[ThreadingHTTPServer, list[int]]:
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(1)
            self.send_response(500 if len(seen) % 2 else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2,
                        help="pairs of DAG runs (without, with), alternating")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tags = images()
    root = Path(tempfile.mkdtemp(prefix="aoj-bench-hooks-"))
    dags, projects = root / "dags", root / "projects"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "orchest_jobs.py", dags / "orchest_jobs.py")
    write_project(projects, args.runs)
    deployment = bench_deployment(root, tags["busybox"])
    server, seen = receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    times: dict[str, list[float]] = {"without": [], "with": []}
    try:
        deployment.start(migrate_timeout=300, timeout=180)
        deployment.api("POST", "/connections", json={
            "connection_id": "bench_hook", "conn_type": "orchest_webhook", "host": url,
            "password": "bench-secret", "extra": json.dumps({
                "name": "bench", "subscriptions": [{"event_type": t} for t in EVENTS]})
        }).raise_for_status()
        for _ in range(args.rounds):
            for mode in ("without", "with"):
                if mode == "with":
                    deployment.api("POST", "/variables", json={
                        "key": "orchest_jobs_webhooks", "value": '["bench_hook"]'
                    }).raise_for_status()
                else:
                    deployment.api("DELETE", "/variables/orchest_jobs_webhooks")
                seconds = timed(deployment, DAG_ID)
                times[mode].append(seconds)
                print(f"{mode}: {seconds:.1f} s ({len(seen)} requests so far)", flush=True)
    finally:
        stop(list(deployment.processes.values()))
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    without, with_ = (sum(times[m]) / len(times[m]) for m in ("without", "with"))
    # Each "with" against the "without" just before it: the machine's drift cancels out.
    pairs = sorted(w / o for o, w in zip(times["without"], times["with"], strict=True))
    median = pairs[len(pairs) // 2] if len(pairs) % 2 else \
        (pairs[len(pairs) // 2 - 1] + pairs[len(pairs) // 2]) / 2
    rows = [["without webhooks", args.runs, " / ".join(f"{t:.1f}" for t in times["without"]),
             f"{without / args.runs:.3f} s", "1.00x"],
            ["with a webhook (every one-off event; receiver answers 500 to every other "
             "attempt)", args.runs, " / ".join(f"{t:.1f}" for t in times["with"]),
             f"{with_ / args.runs:.3f} s", f"{with_ / without:.3f}x (means); per round "
             + ", ".join(f"{r:.3f}x" for r in pairs) + f"; median {median:.3f}x"]]
    text = table(["job run", "pipeline runs", "DAG run start to end (s, each round)",
                  "per pipeline run (mean)", "ratio"], rows)
    print(text)
    print(f"receiver requests: {len(seen)}")
    if not args.no_write:
        write_section(SECTION, (
            f"`{COMMAND} --runs {args.runs} --rounds {args.rounds}` "
            f"({time.strftime('%Y-%m-%d')}; commit {git_head()}; {machine()}; api-server + "
            "scheduler + dag-processor, LocalExecutor, SQLite). The same DAG, alternately "
            "without and with a webhook in force; the deliveries are written by the tasks "
            "and sent by the scheduler's delivery loop.\n\n" + text + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
