"""Provider metadata: declares the ``[orchest_jobs]`` config section to Airflow."""

from __future__ import annotations

from . import __version__
from .core.settings import EXAMPLES, OPTIONS, SECTION


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-orchest-jobs",
        "name": "Orchest jobs",
        "description": "Run Orchest pipelines and jobs as Airflow DAGs.",
        "versions": [__version__],
        "plugins": [{"name": "orchest_jobs",
                     "plugin-class": "airflow_orchest_jobs.plugin.OrchestJobsPlugin"}],
        "config": {
            SECTION: {
                "description": "Where Orchest projects live and how their steps run.",
                "options": {
                    key: {
                        "description": description,
                        "version_added": "0.1.0",
                        "type": EXAMPLES[key][0],
                        "example": EXAMPLES[key][1],
                        # Airflow str.format()s provider defaults: keep {AIRFLOW_HOME}.
                        "default": default.replace("{}", "{{}}"),
                    }
                    for key, (description, default) in OPTIONS.items()
                },
            }
        },
    }
