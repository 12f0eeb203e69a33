"""Run Orchest jobs on Apache Airflow 3.

The ``core`` package is pure (no Airflow import) and holds the Orchest model, the
parameter grid, the snapshot store and the run contract; the Airflow layer
(operators, factory, plugin) sits on top of it.

The public names below load on first use (like ``airflow.sdk``): ``import
airflow_orchest_jobs`` imports no Airflow module, so the CLI and the pure core stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from . import _moved

_moved.install()

__all__ = ["OrchestStepOperator", "Settings", "__version__", "build_dags", "load_settings"]

#: Public name -> the module that defines it (imported when the name is first read).
_LAZY: dict[str, str] = {
    "build_dags": ".dag.factory",
    "OrchestStepOperator": ".operators.step",
    "load_settings": ".config",
    "Settings": ".core.settings",
}

if TYPE_CHECKING:
    from .config import load_settings
    from .core.settings import Settings
    from .dag.factory import build_dags
    from .operators.step import OrchestStepOperator
else:  # hidden from type checkers, so that they still flag a name the package lacks
    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # once: later reads skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
