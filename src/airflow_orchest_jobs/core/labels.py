"""The labels this package puts on Docker objects: the one list of their names.

The engine finds a run's, a step's, a job run's or a worker's containers by them (clean
up, fencing, the Celery sweep), and ``docker ps --filter label=...`` finds them for a user.
"""

from __future__ import annotations

#: Every step, service and holder container: the pipeline run (its run uuid).
LABEL_RUN = "orchest-jobs.run-uuid"
#: Every container of a job run (``dag_id/run_id``): ``finalize`` sweeps by it.
LABEL_JOB = "orchest-jobs.job"
#: Step containers: the step, its pipeline and project.
LABEL_STEP = "orchest-jobs.step-uuid"
LABEL_PIPELINE = "orchest-jobs.pipeline-uuid"
#: Step containers, and the environment images built here.
LABEL_PROJECT = "orchest-jobs.project-uuid"
#: Step containers: the worker that started it (the Celery sweep removes its leftovers).
LABEL_WORKER = "orchest-jobs.worker"
#: Service and holder containers: the service's name (``holder`` for the holder).
LABEL_SERVICE = "orchest-jobs.service"
#: Environment images built here: the environment.
LABEL_ENVIRONMENT = "orchest-jobs.environment-uuid"
#: The probe containers and images of ``airflow-orchest-jobs doctor`` (none outlives it).
LABEL_DOCTOR = "orchest-jobs.doctor"
