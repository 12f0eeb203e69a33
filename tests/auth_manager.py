"""A per-DAG auth manager for the session deployment (tests/deployment.py).

Airflow's SimpleAuthManager grants by role only; this one also denies ``RESTRICTED``
every DAG whose whole id matches ``DENIED_PATTERN``, as a real per-DAG manager (FAB,
Keycloak) denies exact DAG ids: an id with ``/..`` in it is another id, and allowed.
Loaded by the api-server through ``[core] auth_manager`` (the repository is on its
PYTHONPATH); the run-files tests attack the boundary as that user.
"""

from __future__ import annotations

import re

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

from tests.deployment import DENIED_PATTERN, RESTRICTED


class PerDagAuthManager(SimpleAuthManager):
    """SimpleAuthManager, plus: RESTRICTED may not see the DAGs of DENIED_PATTERN."""

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        dag_id = details.id if details is not None else None
        if user.get_name() == RESTRICTED and dag_id and re.fullmatch(DENIED_PATTERN, dag_id):
            return False
        return super().is_authorized_dag(method=method, user=user,
                                         access_entity=access_entity, details=details)
