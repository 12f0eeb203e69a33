"""Docker only: images, registry pushes, step hosts, service containers, retention's releases.

Every function here takes a docker-py client (made by the one factory,
:mod:`airflow_orchest_jobs.operators.dockerhook`, on the docker provider's ``DockerHook``)
and imports no Airflow, so the CLI and tests drive the engine without a deployment.
"""
