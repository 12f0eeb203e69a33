"""Every upstream interface used here that is not (or not plainly) public, with why.

The plugin uses the public interfaces of Airflow (``airflow.sdk``, timetables, plugins,
``airflow.configuration.conf``), the docker provider (``DockerOperator``, ``DockerHook``)
and docker-py. What remains is listed in :data:`UPSTREAM`, one entry per name, and
``tests/test_compat.py`` checks each against the installed versions (the name exists, with
the parameters listed): an upgrade that changes one fails there, not in a user's
api-server. The same test fails when a module of this package imports from an Airflow
module that is neither public nor listed here. The version bounds in ``pyproject.toml``
are the versions these were checked against.

No private member (``obj._name``) of Airflow, the docker provider or docker-py is used.
Two behaviours of public names are relied on and tested there too: ``DockerOperator.cli``
reads the (overridable) ``hook``; docker-py's ``DockerClient`` works on whatever client
its public ``api`` attribute holds (engine/clients.py gives it the hook's).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

#: Airflow modules (or ``module:name``) that are public interfaces: no entry needed.
PUBLIC_AIRFLOW = (
    "airflow.sdk",
    "airflow.configuration",  # ``conf``: the documented way to read [orchest_jobs]
    "airflow.plugins_manager:AirflowPlugin",  # (module:name: that name only)
    "airflow.listeners",  # ``hookimpl``: the documented listener plugin interface
    "airflow.timetables.base",  # the custom timetable interface
    "airflow.timetables.trigger",  # CronTriggerTimetable, subclassed by timetable.py
    "airflow.providers.docker",
    "airflow.providers.celery.executors.default_celery",  # the documented base config
    "airflow.providers.common.compat.sdk",  # the providers' own compatibility layer
)


@dataclass(frozen=True)
class Upstream:
    """One upstream name this package relies on beyond the public interface."""

    module: str
    name: str  #: attribute path inside ``module`` (``Class.method``)
    #: The parameters (in order) the call sites pass; () for a non-callable.
    parameters: tuple[str, ...]
    used_by: str
    why: str

    def resolve(self) -> Any:
        found: Any = importlib.import_module(self.module)
        for part in self.name.split("."):
            found = inspect.getattr_static(found, part) if inspect.isclass(found) else \
                getattr(found, part)
        return found


_VIEWS_ORM = ("Airflow 3 has no public read API inside the api-server for what the pipeline "
              "run views show (runs, task instances, tags, audit log rows of many DAGs at "
              "once, paged); the REST API would need the user's token and one request per DAG")
_VIEWS_AUTH = ("FastAPI plugin apps have no other way to apply Airflow's own access checks "
               "(the core API's routes use exactly these)")

UPSTREAM: tuple[Upstream, ...] = (
    # --- the docker provider: what the step operator overrides --------------------------
    Upstream("airflow.providers.docker.operators.docker", "DockerOperator.hook", (),
             "operators/step.py",
             "overridden (a cached_property) so steps reach the engine through "
             "operators/dockerhook.py like every other access; DockerOperator.cli must "
             "keep reading self.hook.api_client"),
    Upstream("airflow.providers.docker.operators.docker", "DockerOperator.cli", (),
             "operators/step.py", "the step's client (see DockerOperator.hook)"),
    Upstream("airflow.providers.docker.hooks.docker", "DockerHook.__init__",
             ("self", "docker_conn_id", "base_url", "version", "tls", "timeout"),
             "operators/dockerhook.py", "the one client factory"),
    Upstream("airflow.providers.docker.hooks.docker", "DockerHook.construct_tls_config",
             ("ca_cert", "client_cert", "client_key"), "operators/dockerhook.py",
             "the TLS files as the provider builds them"),
    # --- cancel (web/actions.py; re-run goes through the public REST API) --------------
    Upstream("airflow.models.dagbag", "DBDagBag.get_dag_for_run", ("self", "dag_run", "session"),
             "web/actions.py", "the serialized DAG of the run to cancel (as the core API)"),
    Upstream("airflow.models.taskinstance", "TaskInstance.set_state", ("self", "state"),
             "web/actions.py",
             "cancel marks one map index's unfinished tasks failed/skipped; the public "
             "PATCH .../taskInstances/{task_id}/{map_index} then also clears every failed "
             "or upstream_failed instance of the task's downstream tasks in the DAG run, "
             "at every map index (SerializedDAG.set_task_instance_state), so other "
             "pipeline runs' failed steps would run again (measured on 3.3.2: PATCH of "
             "a step at map index 0 re-ran the failed step after it at map index 1)"),
    Upstream("airflow.models.log", "Log.__init__", ("self", "event"),
             "web/actions.py, web/data.py",
             "the audit log row of a cancel (no public API writes a custom audit event)"),
    Upstream("airflow.utils.state", "TaskInstanceState", (), "web/actions.py",
             "state names"),
    # --- the views' reads ---------------------------------------------------------------
    Upstream("airflow.models.dag", "DagModel", (), "web/data.py, web/api.py", _VIEWS_ORM),
    Upstream("airflow.models.dag", "DagTag", (), "web/data.py", _VIEWS_ORM),
    Upstream("airflow.models.dagrun", "DagRun", (), "web/data.py", _VIEWS_ORM),
    Upstream("airflow.models.taskinstance", "TaskInstance", (), "web/data.py", _VIEWS_ORM),
    Upstream("airflow.models.serialized_dag", "SerializedDagModel", (), "web/data.py",
             _VIEWS_ORM),
    # --- airflow-orchest-jobs import (writes the metadata database, as `airflow
    # connections add` / `airflow variables set` do) ---------------------------------------
    Upstream("airflow.models", "Variable", (), "orchest_import/airflow_store.py",
             "the CLI import writes Airflow Variables (Fernet-encrypted) like `airflow "
             "variables set`; the SDK's Variable writes only inside a task"),
    Upstream("airflow.models", "Connection", (), "orchest_import/airflow_store.py",
             "the import writes the webhook Connections like `airflow connections add`"),
    Upstream("airflow.utils.session", "create_session", (), "orchest_import/airflow_store.py",
             "the metadata-database session those writes go through (the Airflow CLI's "
             "own)"),
    # --- webhooks read in the scheduler (no task context there) --------------------------
    Upstream("airflow.models.connection", "Connection.get_connection_from_secrets",
             ("cls", "conn_id"), "webhooks/config.py",
             "the scheduler's delivery loop reads the webhook Connections outside a task, "
             "where the SDK's Connection.get has no supervisor to ask (secrets backends apply)"),
    Upstream("airflow.models.variable", "Variable.get", ("cls", "key"), "webhooks/config.py",
             "the same for the orchest_jobs_webhooks Variable"),
    Upstream("airflow.models.connection", "Connection", (), "webhooks/config.py",
             "see Connection.get_connection_from_secrets"),
    Upstream("airflow.models.variable", "Variable", (), "webhooks/config.py",
             "see Variable.get"),
    # --- airflow-orchest-jobs doctor ---------------------------------------------------
    Upstream("airflow.plugins_manager", "get_plugin_info", ("attrs_to_dump",),
             "cli/deployment_checks.py",
             "what Airflow loaded as plugins, as `airflow plugins` prints it: no public API "
             "lists the loaded plugins (the doctor checks ours loads exactly once)"),
    Upstream("airflow.plugins_manager", "get_import_errors", (), "cli/deployment_checks.py",
             "the plugins that failed to load, as `airflow plugins` reports them"),
    # --- the api-server apps' access checks ---------------------------------------------
    Upstream("airflow.api_fastapi.app", "get_auth_manager", (), "web/api.py", _VIEWS_AUTH),
    Upstream("airflow.api_fastapi.auth.managers.models.resource_details", "DagAccessEntity",
             (), "web/", _VIEWS_AUTH),
    Upstream("airflow.api_fastapi.auth.managers.models.resource_details", "DagDetails", (),
             "web/api.py", _VIEWS_AUTH),
    Upstream("airflow.api_fastapi.common.db.common", "SessionDep", (), "web/",
             _VIEWS_AUTH),
    Upstream("airflow.api_fastapi.core_api.security", "requires_access_dag",
             ("method", "access_entity"), "web/", _VIEWS_AUTH),
    Upstream("airflow.api_fastapi.core_api.security", "GetUserDep", (), "web/", _VIEWS_AUTH),
    Upstream("airflow.api_fastapi.auth.managers.base_auth_manager", "COOKIE_NAME_JWT_TOKEN",
             (), "web/airflowapi.py",
             "the cookie the UI's JWT travels in: re-run forwards it to the public REST "
             "API (as Airflow's get_user reads it)"),
)


def parameters_of(obj: Any) -> tuple[str, ...]:
    """The parameter names of a callable (a staticmethod or function as found)."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return tuple(inspect.signature(obj).parameters)
