"""A small Orchest project with .py, .ipynb and .sh steps using the real orchest SDK."""

from __future__ import annotations

import json
from pathlib import Path

from tests.orchest_factory import ENV, pipeline_doc, step, write_environment

PIPELINE_UUID = "0a3d6a5e-7c1f-4f1e-9a55-2b9f0c1d2e3f"
GEN, NB, SH = "11111111-aaaa-4bbb-8ccc-000000000001", "11111111-aaaa-4bbb-8ccc-000000000002", \
    "11111111-aaaa-4bbb-8ccc-000000000003"

GENERATE = """\
import json
import orchest

size = orchest.get_pipeline_param("size")
label = orchest.get_step_param("size")  # same name as the pipeline parameter
if size < 0:
    raise SystemExit(f"size must not be negative, got {size}")
orchest.output({"numbers": list(range(size)), "label": label}, name="data")
print("generated", size, label)
"""

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
         "outputs": [], "source": [
             "import json, orchest\n",
             "inputs = orchest.get_inputs()\n",
             "data = inputs['data']\n",
             "total = sum(data['numbers'])\n",
             "print('total is', total)\n",
             "orchest.output({'total': total, 'label': data['label']}, name='summary')\n"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}

PUBLISH = """\
#!/bin/bash
set -eu
echo "publishing run $ORCHEST_SESSION_UUID title=${REPORT_TITLE:-none}"
mkdir -p /data/reports
python3 - <<'PY'
import json, os, orchest
summary = orchest.get_inputs()["summary"]
run = os.environ["ORCHEST_SESSION_UUID"]
with open(f"/data/reports/{run}.json", "w") as fh:
    json.dump({**summary, "title": os.environ.get("REPORT_TITLE")}, fh)
print("published", summary)
PY
"""


def write_example(root: Path, *, grid: dict | None = None, job: dict | None = None,
                  name: str = "demo") -> Path:
    """Write the project ``root/name``; returns the project folder."""
    project = root / name
    project.mkdir(parents=True)
    doc = pipeline_doc([
        step(GEN, "generate.py", title="Generate", parameters={"size": "small"}),
        step(NB, "analyse.ipynb", title="Analyse", incoming=[GEN]),
        step(SH, "publish.sh", title="Publish", incoming=[NB]),
    ], parameters={"size": 3}, uuid=PIPELINE_UUID, name="demo pipeline")
    (project / "main.orchest").write_text(json.dumps(doc, indent=2))
    (project / "generate.py").write_text(GENERATE)
    (project / "analyse.ipynb").write_text(json.dumps(NOTEBOOK, indent=1))
    (project / "publish.sh").write_text(PUBLISH)
    (project / "publish.sh").chmod(0o755)
    if grid is not None:
        (project / "main.parameters.json").write_text(json.dumps(grid))
    if job is not None:
        (project / "nightly.job.json").write_text(json.dumps(job))
    write_environment(project, ENV)
    return project
