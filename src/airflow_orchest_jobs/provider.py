"""Provider metadata: declares the ``[orchest_jobs]`` config section to Airflow."""

from __future__ import annotations

from typing import Any

from . import __version__
from .core.settings import EXAMPLES, OPTIONS, SECTION


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-orchest-jobs",
        "name": "Orchest jobs",
        "description": "Run Orchest pipelines and jobs as Airflow DAGs.",
        "versions": [__version__],
        # No "plugins" key: the plugin registers through its ``airflow.plugins`` entry point,
        # which Airflow always loads; a provider's plugins load only when
        # ``[core] lazy_discover_providers`` is False, and then a second registration of
        # the same name is recorded as a plugin import error ("already registered").
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
