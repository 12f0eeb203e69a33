"""Orchest pipelines and jobs as Airflow DAGs (airflow-orchest-jobs).

Put this file in the DAGs folder; it reads ``[orchest_jobs] projects_dir`` and turns
every ``.orchest`` pipeline and ``.job.json`` job file found there into a DAG.
"""

# Named here so that the DAG processor imports them once, before it forks a process per
# parse ([dag_processor] parsing_pre_import_modules); the factory needs them anyway.
import airflow.providers.docker.operators.docker
import airflow.sdk  # noqa: F401

from airflow_orchest_jobs.dag.factory import build_dags

globals().update(build_dags())
