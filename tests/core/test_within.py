"""The one "stays inside" check, and the notebook HTML path the link and the views share."""

from __future__ import annotations

from airflow_orchest_jobs.core.contract import notebook_html
from airflow_orchest_jobs.core.within import inside


def test_inside_is_by_component_not_by_prefix():
    assert inside("/p", "/p") and inside("/p/a/b", "/p") and inside("/p/a", "/p/")
    assert not inside("/project2/a", "/project") and not inside("/", "/p")


def test_notebook_html_next_to_the_notebook_inside_the_project():
    assert notebook_html("main.orchest", "nb.ipynb") == "nb.html"
    assert notebook_html("pipes/main.orchest", "../nbs/a.b.ipynb") == "nbs/a.b.html"
    assert notebook_html("main.orchest", "./x/../nb.ipynb") == "nb.html"
    assert notebook_html("main.orchest", "/data/nb.ipynb") is None  # in the data folder
    assert notebook_html("pipes/main.orchest", "../../nb.ipynb") is None
