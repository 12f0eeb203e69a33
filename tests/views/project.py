"""The project the job-view tests run: a 12-run grid (a: 3 values x b: 4) with a notebook.

``compute`` (a .py step; it sleeps ``SLEEP`` seconds when set) fails for the runs named
in the live environment variable
``BREAK`` (``"2x,2y"`` breaks runs a=2,b=x and a=2,b=y); the job reads it from an Airflow
Variable when each step starts, so changing the Variable makes the failure go away for
a re-run. ``report`` is a notebook whose output carries an image and a script (the
security tests check that the script never runs in Airflow's origin).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.orchest_factory import pipeline_doc, step, write_project

NAME = "jobviews"
COMPUTE, REPORT = "c0ffee00-0000-4000-8000-000000000001", "c0ffee00-0000-4000-8000-000000000002"
VARIABLE = "orchest_jobviews_break"
JOB = "grid"
JOB_DAG = f"orchest_job__{NAME}__{JOB}"
#: A second job of the same pipeline, triggered three times for the job's history view.
HISTORY_JOB = "history"
HISTORY_DAG = f"orchest_job__{NAME}__{HISTORY_JOB}"
PIPELINE_DAG = f"orchest__{NAME}__main"
#: A 1x1 red PNG: the notebook shows it, nbconvert embeds it as a data: URL.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8Dw"
                       "HwAFgwJ/lTh6xQAAAABJRU5ErkJggg==")
SCRIPT_MARK = "nb-script-ran"

COMPUTE_PY = """\
import json, os, time
doc = json.load(open(os.environ["ORCHEST_PIPELINE_PATH"]))
a = doc["parameters"]["a"]
b = doc["steps"][os.environ["ORCHEST_STEP_UUID"]]["parameters"]["b"]
print(f"computing a={a} b={b}")
if f"{a}{b}" in os.environ.get("BREAK", "").split(","):
    raise SystemExit(f"broken on purpose: a={a} b={b}")
time.sleep(float(os.environ.get("SLEEP") or 0))
print("done")
"""


def _notebook() -> str:
    script = (f"<div id='nb-output'>notebook output</div><script>document.body.dataset.mark="
              f"'{SCRIPT_MARK}';document.title='{SCRIPT_MARK} '+document.cookie;"
              "fetch('/api/v2/dags').then(r=>r.text()).then(t=>{document.title+=t})</script>")
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Report"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import base64\n", "from IPython.display import HTML, Image, display\n",
                    f"display(Image(data=base64.b64decode({base64.b64encode(PNG).decode()!r})))\n",
                    f"display(HTML({script!r}))\n", "print('report ready')\n"]},
    ]
    return json.dumps({"cells": cells, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5})


def write(projects_dir: Path) -> Path:
    """Write the project (a pipeline, its parameters file, a job file) under projects_dir."""
    root = projects_dir / NAME
    doc = pipeline_doc([
        step(COMPUTE, "compute.py", title="Compute", parameters={"b": "w"}),
        step(REPORT, "report.ipynb", title="Report", incoming=[COMPUTE]),
    ], parameters={"a": 1}, uuid="c0ffee00-0000-4000-8000-0000000000aa", name="jobviews")
    write_project(root, doc, files={"compute.py": COMPUTE_PY, "report.ipynb": _notebook()},
                  parameters={"pipeline_parameters": {"a": [1, 2, 3]},
                              COMPUTE: {"b": ["w", "x", "y", "z"]}})
    (root / f"{JOB}.job.json").write_text(json.dumps({
        "pipeline": "main.orchest", "description": "Job views: 12-run grid",
        "env_variables": {"BREAK": {"airflow_variable": VARIABLE}},
        "max_retained_pipeline_runs": 50}))
    (root / f"{HISTORY_JOB}.job.json").write_text(json.dumps({
        "pipeline": "main.orchest", "description": "Job views: the job's history",
        "env_variables": {"BREAK": ""}}))
    return root
