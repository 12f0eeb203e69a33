"""The api-server only: Orchest's job views (the pipeline-run table of a job run, the jobs
overview) and the run files (logs, notebooks) a user opens from the UI.

Built only in the api-server, by ``app.create_app`` (the plugin's app is lazy); the
scheduler, workers and the DAG processor never import this package. ``states`` and ``rows``
are pure (unit-tested without Airflow or FastAPI).
"""
