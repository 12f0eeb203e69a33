"""Run Orchest jobs on Apache Airflow 3.

The ``core`` package is pure (no Airflow import) and holds the Orchest model, the
parameter grid, the snapshot store and the run contract; the Airflow layer
(operators, factory, plugin) sits on top of it.
"""

__version__ = "0.1.0"
