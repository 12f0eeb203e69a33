"""Docker-only code: engine functions that are handed a docker-py client and never import
Airflow (the client comes from :mod:`airflow_orchest_jobs.operators.dockerhook`)."""
