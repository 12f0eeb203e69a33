"""What a run leaves in the store and on the engine, with real steps (``dag.test()``).

Secrets resolved from Airflow Variables and Connections never reach a file of the run
folder (the worker writes the step's log file, redacted); step containers get the
memory, pids and ``/tmp`` limits of ``[orchest_jobs]``; a store that fills up during the
run makes ``finalize`` fail with a message naming the store, and the DAG run with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.contract import step_log_path
from airflow_orchest_jobs.core.jobstate import job_run_verdict
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.dag.factory import build_dags
from airflow_orchest_jobs.operators.steplog import (
    LineRedactor,
    open_log_file,
    secret_patterns,
)
from tests.airflow_helpers import run_dag, task_states
from tests.orchest_factory import pipeline_doc, step, write_project

TOKEN = "tok-7f3a9-never-in-files"
PASSWORD = "pa$s-91c2-never-in-files"
PEM = "-----BEGIN KEY-----\nline-one-of-the-key\nline-two-of-the-key\n-----END KEY-----"

SPEAK = """\
import os, sys, time
token, password = os.environ["TOKEN"], os.environ["DB_PASSWORD"]
print("visible line before", flush=True)
print("token is", token, flush=True)
# the token split across two writes that reach the worker as two chunks
sys.stdout.write("split " + token[:5]); sys.stdout.flush(); time.sleep(0.5)
sys.stdout.write(token[5:] + " done\\n"); sys.stdout.flush()
print("password", password, "uri", os.environ["DB_URI"], file=sys.stderr, flush=True)
print("key", os.environ["PEM"], flush=True)
print("a long line", "x" * 100_000 + token, flush=True)
print("visible line after")
"""


@pytest.fixture
def settings(orchest_settings, images):
    return orchest_settings(environment_images={"*": images["python"]})


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


@pytest.mark.docker
@pytest.mark.airflow
def test_a_secret_a_step_prints_never_reaches_the_run_folder(settings, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ORCHEST_SEC_TOKEN", TOKEN)
    monkeypatch.setenv("AIRFLOW_VAR_ORCHEST_SEC_PEM", PEM)
    monkeypatch.setenv("AIRFLOW_CONN_ORCHEST_SEC_DB",
                       "postgres://user:pa%24s-91c2-never-in-files@db:5432/x")
    root = settings.projects_dir / "secrets"
    from tests.airflow.test_notebooks import code, notebook

    saved = notebook(code("import os\nprint('nb token', os.environ['TOKEN'])\n"
                          "os.environ['PEM']"))
    write_project(root, pipeline_doc([step("speak", "speak.py", title="speak"),
                                      step("nb", "nb.ipynb", title="nb")],
                                     uuid="sec-pipeline"),
                  files={"speak.py": SPEAK, "nb.ipynb": json.dumps(saved)})
    (root / "job.job.json").write_text(json.dumps({"pipeline": "main.orchest", "env_variables": {
        "TOKEN": {"airflow_variable": "orchest_sec_token"},
        "PEM": {"airflow_variable": "orchest_sec_pem"},
        "DB_PASSWORD": {"airflow_connection": "orchest_sec_db", "field": "password"},
        "DB_URI": {"airflow_connection": "orchest_sec_db"}}}))
    dag_run = run_dag(build_dags(Settings.from_environment())["orchest_job__secrets__job"])
    assert str(dag_run.state) == "success", task_states(dag_run)

    (run_folder,) = list((settings.store_dir / "runs" / "orchest_job__secrets__job").iterdir())
    secrets = [TOKEN, PASSWORD, "pa%24s-91c2-never-in-files", "line-one-of-the-key",
               "line-two-of-the-key"]
    files = _files(run_folder)
    assert files
    for path in files:
        data = path.read_bytes()
        leaked = [s for s in secrets if s.encode() in data]
        assert not leaked, f"{path} holds {leaked}"
    log = next(run_folder.glob("run-*/project")) / step_log_path("sec-pipeline", "speak")
    text = log.read_text()
    assert "visible line before" in text and "visible line after" in text
    assert "token is ***" in text and "split *** done" in text
    assert "key ***\n***\n***\n***\n" in text  # each line of a multi-line value
    assert "x" * 1000 + "***" in text
    html = (log.parents[4] / "nb.html").read_text()
    assert "nb token ***" in html  # the executed notebook's outputs are redacted too


LIMITS = """\
import json, os, shutil
def read(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read().strip()
json.dump({"pids": read("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
           "memory": read("/sys/fs/cgroup/memory.max",
                          "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
           "tmp": shutil.disk_usage("/tmp").total}, open("/data/limits.json", "w"))
"""


@pytest.mark.docker
@pytest.mark.airflow
def test_step_containers_get_the_configured_limits(orchest_settings, images):
    settings = orchest_settings(environment_images={"*": images["python"]},
                                step_memory_limit="256m", step_pids_limit="100",
                                step_tmp_size="64m")
    assert (settings.step_memory_limit, settings.step_pids_limit, settings.step_tmp_size) \
        == (256 << 20, 100, 64 << 20)
    write_project(settings.projects_dir / "limits", pipeline_doc(
        [step("see", "see.py", title="see")], uuid="lim-pipeline"), files={"see.py": LIMITS})
    dag_run = run_dag(build_dags(Settings.from_environment())["orchest__limits__main"])
    assert str(dag_run.state) == "success", task_states(dag_run)
    seen = json.loads((settings.data_dir / "limits.json").read_text())
    assert seen["pids"] == "100"
    assert seen["memory"] == str(256 << 20)
    assert seen["tmp"] == 64 << 20


def test_limit_defaults_and_bad_values():
    defaults = Settings.from_mapping({})
    assert (defaults.step_memory_limit, defaults.step_pids_limit, defaults.step_tmp_size) \
        == (0, 1024, 1 << 30)
    from airflow_orchest_jobs.core.errors import OrchestError

    with pytest.raises(OrchestError, match=r"\[orchest_jobs\] step_tmp_size.*not a size"):
        Settings.from_mapping({"step_tmp_size": "lots"})
    with pytest.raises(OrchestError, match=r"\[orchest_jobs\] step_pids_limit"):
        Settings.from_mapping({"step_pids_limit": "-1"})


FILL = """\
n = 0
try:
    with open("/project-dir/filler", "wb") as fh:
        while True:
            fh.write(b"x" * 65536); fh.flush(); n += 1
except OSError as exc:
    print("store full after", n, "chunks:", exc.strerror)
"""


@pytest.mark.docker
@pytest.mark.airflow
def test_a_store_full_at_the_end_fails_finalize_and_the_run_with_a_clear_message(
        settings, tmp_path, monkeypatch, capfd):
    import subprocess

    store = tmp_path / "tiny-store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(store)], check=True)
    try:
        monkeypatch.setenv("AIRFLOW__ORCHEST_JOBS__STORE_DIR", str(store))
        write_project(settings.projects_dir / "fill", pipeline_doc(
            [step("fill", "fill.py", title="fill")], uuid="fill-pipeline"),
            files={"fill.py": FILL})
        dag_run = run_dag(build_dags(Settings.from_environment())["orchest__fill__main"])
        states = task_states(dag_run)
        assert states["pipeline_run.fill[0]"] == "success", states
        assert states["finalize"] == "failed", states
        assert str(dag_run.state) == "failed"
        out = capfd.readouterr().out
        assert f"Cannot record the end of this job run in the store {store}" in out, out[-3000:]
        assert "No space left on device" in out and "[orchest_jobs] store_dir" in out
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_redaction_finds_values_split_across_chunks_and_lines():
    patterns = secret_patterns(["s3cret-value", "ab", "line-1-of-it\nline-2-of-it"], 5)
    assert b"ab" not in patterns  # shorter than Airflow's minimum, as in the task log
    redactor = LineRedactor(patterns)
    out = redactor.feed(b"one s3cr") + redactor.feed(b"et-value two\npart ") + \
        redactor.feed(b"line-1-of-it\nline-2-of") + redactor.feed(b"-it end") + \
        redactor.finish()
    assert b"".join(out) == b"one *** two\npart ***\n*** end"
    long = LineRedactor(secret_patterns(["s3cret-value"], 5))
    out = long.feed(b"y" * 70_000 + b"s3cret") + long.feed(b"-value\n")
    assert b"".join(out) == b"y" * 70_000 + b"***\n"


def test_the_log_file_is_never_written_through_a_link(tmp_path):
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (project / ".orchest").symlink_to(outside)  # what a step could leave behind
    with pytest.raises(OSError):
        open_log_file(project, ".orchest/pipelines/p/logs/s.log")
    assert list(outside.iterdir()) == []
    (project / ".orchest").unlink()
    logs = project / ".orchest" / "pipelines" / "p" / "logs"
    logs.mkdir(parents=True)
    target = outside / "victim"
    target.write_text("keep")
    (logs / "s.log").symlink_to(target)
    fd = open_log_file(project, ".orchest/pipelines/p/logs/s.log")
    os.write(fd, b"output")
    os.close(fd)
    assert target.read_text() == "keep" and (logs / "s.log").read_text() == "output"


def test_the_verdict_of_a_job_run():
    tasks = {"snapshot", "plan", "finalize", "pipeline_run.a", "pipeline_run.b",
             "pipeline_run.cleanup", "plan_slice_1"}
    ignored = {"finalize", "pipeline_run.cleanup"}
    ok = {"snapshot": "success", "plan": "success", "plan_slice_1": "success",
          "pipeline_run.a_0": "success", "pipeline_run.cleanup_0": "failed",
          "finalize": "running"}
    assert job_run_verdict(ok, tasks, ignored, max_map_length=16).message is None
    cancelled_early = {"snapshot": "skipped", "plan": "skipped", "pipeline_run.a": "skipped"}
    verdict = job_run_verdict(cancelled_early, tasks, ignored, max_map_length=16).message
    assert verdict and "3 task(s) skipped" in verdict and "cancelled" in verdict
    cancelled_in_step = {**ok, "pipeline_run.a_1": "failed", "pipeline_run.b_1": "skipped"}
    verdict = job_run_verdict(cancelled_in_step, tasks, ignored, max_map_length=16).message
    assert verdict and "pipeline_run.a[1]" in verdict and "pipeline_run.b[1]" in verdict
