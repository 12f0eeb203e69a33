"""Orchest's job views inside Airflow: the pipeline-run table of a job run, the jobs overview.

Pure parts (states, rows, trigger form) import neither Airflow nor FastAPI: workers and the
DAG processor import this package too. The API and pages (``api.py``, ``pages.py``) are
built only in the api-server, by ``runfiles.create_app``.
"""
