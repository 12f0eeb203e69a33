"""Security model and hostile input, run for real: what a step can see and do."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_orchest_jobs.dag.factory import build_dags
from tests.airflow_helpers import run_dag, task_states
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

PROBE = """\
import json, os, orchest
value = orchest.get_pipeline_param("value")
with open(f"/data/probe-{os.environ['ORCHEST_SESSION_UUID']}.json", "w") as fh:
    json.dump({"uid": os.getuid(), "gid": os.getgid(), "value": value,
               "docker_socket": os.path.exists("/var/run/docker.sock"),
               "mounts": sorted(line.split()[4] for line in open("/proc/self/mountinfo")
                                if line.split()[4].startswith(("/project-dir", "/data",
                                                               "/orchest-runner", "/tmp"))),
               "home": os.environ.get("HOME")}, fh)
"""

#: Values a careless runner would mangle: shell syntax, quotes, unicode, nesting, nulls.
EDGE_VALUES = [
    "$(touch /tmp/pwned); `id` && echo '\"' | cat > /dev/null; rm -rf / \n",
    {"nested": [1, {"deep": None}], "quote": "\"'", "unicode": "Grüße 🌍 \u0000"},
    12345678901234567890,
    None,
]


@pytest.fixture
def settings(tmp_path, orchest_settings, images):
    configured = orchest_settings(environment_images={"*": images["python"]})
    doc = pipeline_doc([step("probe", "probe.py", title="probe")], parameters={"value": 0},
                       uuid="security-pipeline")
    write_project(tmp_path / "projects" / "sec", doc, files={"probe.py": PROBE},
                  parameters={"pipeline_parameters": {"value": EDGE_VALUES}})
    return configured


def test_steps_run_unprivileged_without_the_docker_socket(settings):
    dag_run = run_dag(build_dags(settings)["orchest__sec__main"])
    assert str(dag_run.state) == "success", task_states(dag_run)
    probes = [json.loads(p.read_text()) for p in sorted(settings.data_dir.glob("probe-*"))]
    assert len(probes) == len(EDGE_VALUES)
    expected_uid = 65534 if os.geteuid() == 0 else os.geteuid()
    for probe in probes:
        assert probe["uid"] == expected_uid != 0
        assert probe["docker_socket"] is False
        assert probe["mounts"] == ["/data", "/orchest-runner", "/project-dir", "/tmp"]
        assert probe["home"] == "/tmp"
    # every edge-case value arrived exactly as written in the parameters file
    assert sorted(json.dumps(p["value"]) for p in probes) == sorted(
        json.dumps(v) for v in EDGE_VALUES)
    assert not Path("/tmp/pwned").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root worker to make a root-owned /data")
def test_unwritable_data_folder_fails_before_the_step_runs(settings, capfd):
    settings.data_dir.mkdir(mode=0o755)  # root-owned: steps run as nobody
    dag_run = run_dag(build_dags(settings)["orchest__sec__main"])
    out = capfd.readouterr().out
    assert str(dag_run.state) == "failed"
    assert "is not writable by the step user 65534:65534" in out
    assert "[orchest_jobs] step_user" in out
    assert list(settings.data_dir.iterdir()) == []
