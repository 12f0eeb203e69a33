"""A grid bigger than one mapped group holds, on the session's real scheduler.

Airflow maps at most ``[core] max_map_length`` instances per task. The session's
deployment sets it to 4, so a 9-run grid becomes three mapped ``pipeline_run`` groups
(4 + 4 + 1): the same path a 2,100-run grid takes at Airflow's default of 1024
(``bench/scale_scheduler.py`` runs grids of that size and 10,000). Triggered through the
REST API, every run's step must run exactly once: each appends one line to a file named
after its run uuid in /data, and all 9 task instances end ``success``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.deployment import MAX_MAP_LENGTH, Deployment
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

RUNS = 2 * MAX_MAP_LENGTH + 1
DAG_ID = "orchest__biggrid__main"
STEP = """\
#!/bin/sh
set -eu
mkdir -p /data/biggrid
echo "$ORCHEST_SESSION_UUID" >> "/data/biggrid/$ORCHEST_SESSION_UUID"
"""


def test_a_grid_over_two_groups_completes_in_three_groups(deployment: Deployment):
    doc = pipeline_doc([step("touch", "touch.sh", title="touch")], parameters={"i": 0},
                       uuid="biggrid-pipeline")
    write_project(deployment.projects_dir / "biggrid", doc, files={"touch.sh": STEP},
                  parameters={"pipeline_parameters": {"i": list(range(RUNS))}})
    deployment.wait_for_dag(DAG_ID)
    run_id = deployment.trigger(DAG_ID, prefix="big")
    run = deployment.wait_finished(DAG_ID, run_id, timeout=3600)
    states = deployment.task_states(DAG_ID, run_id)
    assert run["state"] == "success", Counter(states.values())

    groups = Counter(key.split("[")[0] for key in states if key.startswith("pipeline_run"))
    assert groups == {"pipeline_run.touch": MAX_MAP_LENGTH,
                      "pipeline_run_2.touch": MAX_MAP_LENGTH,
                      "pipeline_run_3.touch": RUNS - 2 * MAX_MAP_LENGTH}
    assert set(states.values()) == {"success"}

    marks = list((deployment.data_dir / "biggrid").iterdir())
    assert len(marks) == RUNS  # every run ran ...
    assert all(m.read_text().splitlines() == [m.name] for m in marks)  # ... exactly once
