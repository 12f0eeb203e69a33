"""Orchest pipelines and jobs as Airflow DAGs (airflow-orchest-jobs).

Put this file in the DAGs folder; it reads ``[orchest_jobs] projects_dir`` and turns
every ``.orchest`` pipeline and ``.job.json`` job file found there into a DAG.
"""

from airflow_orchest_jobs.factory import build_dags

globals().update(build_dags())
