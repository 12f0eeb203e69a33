"""Docker only: images, registry pushes, step hosts, service containers, retention's releases.

Every function here takes a docker-py client (or an engine URL) and imports no Airflow, so
the CLI and tests drive the engine without a deployment.
"""
