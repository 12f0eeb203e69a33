"""``import --db ... --userdir ... --apply`` into the session's real Airflow: exactly the
expected DAGs (paused ones paused), a triggered imported job runs Orchest's selected
pipeline runs with Orchest's parameters and variables, a second import writes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.orchest_db import orchest_db  # noqa: F401 (the session fixture)
from tests.orchest_installation import build

pytestmark = [pytest.mark.airflow, pytest.mark.docker, pytest.mark.slow]


def test_an_imported_installation_runs_as_orchest_ran_it(deployment, orchest_db,  # noqa: F811
                                                         tmp_path):
    tag = uuid.uuid4().hex[:6]
    inst = build(tmp_path / "userdir", tag, "http://127.0.0.1:9/hooks")
    orchest_db.load(inst.rows())
    config = tmp_path / "airflow.cfg"  # not the shared deployment's: the setting lands here
    source = deployment.home / "airflow.cfg"
    if source.is_file():
        shutil.copy(source, config)
    else:
        config.write_text("[core]\n")
    env = {**deployment.env, "AIRFLOW_CONFIG": str(config)}

    def run_import() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow_orchest_jobs.cli", "import", "--db",
             orchest_db.url, "--userdir", str(inst.userdir), "--apply"],
            env=env, capture_output=True, text=True, timeout=300, check=False)

    first = run_import()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "max_parallel_pipeline_runs = 3" in config.read_text()

    analytics, etl, ml = (inst.folders[k] for k in ("analytics", "etl", "ml-lab"))
    expected = {
        f"orchest__{analytics}__main": False, f"orchest__{etl}__pipelines_etl_etl": False,
        f"orchest__{ml}__train": False,
        f"orchest_job__{analytics}__nightly-report": False,
        f"orchest_job__{analytics}__hourly-sync": True,
        f"orchest_job__{analytics}__old-export": True,
        f"orchest_job__{analytics}__year-end": False,
        f"orchest_job__{etl}__etl-daily": False, f"orchest_job__{ml}__weekly-train": False}

    def listed() -> dict[str, bool] | None:
        result = deployment.airflow("dags", "list", "-o", "json")
        assert result.returncode == 0, result.stderr[-2000:]
        text = next(line for line in result.stdout.splitlines()
                    if line.startswith(("[{", "[]")))
        ours = {d["dag_id"]: str(d["is_paused"]).lower() == "true" for d in json.loads(text)
                if tag in d["dag_id"]}
        return ours if set(ours) == set(expected) else None

    assert deployment.wait("the imported DAGs", listed, timeout=240, interval=5) == expected

    dag_id = f"orchest_job__{analytics}__nightly-report"
    run_id = deployment.trigger(dag_id)
    finished = deployment.wait_finished(dag_id, run_id)
    assert finished["state"] == "success", deployment.task_states(dag_id, run_id)
    orchest = inst.job("Nightly report")
    seen = [json.loads(p.read_text())
            for p in sorted((deployment.data_dir / f"imported-{tag}").glob("*.json"))]
    assert sorted((s["city"], s["n"]) for s in seen) == sorted(
        (r["pipeline_parameters"]["city"], r["step-report"]["n"])
        for r in orchest["parameters"])
    for report in seen:  # the variables Orchest's step saw: project < pipeline < job
        assert {k: report["env"].get(k) for k in orchest["env_variables"]} == \
            orchest["env_variables"]

    second = run_import()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "applied: 0 item(s) written" in second.stdout
