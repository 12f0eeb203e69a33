"""Which webhooks are in force, read where Airflow keeps secrets.

A webhook is an Airflow Connection (``conn_type`` ``orchest_webhook``; secrets backends
apply); the ones in force are listed by the Variable ``orchest_jobs_webhooks`` (a JSON
list of conn ids) and the ``[orchest_jobs] webhooks`` setting. Tasks read through the
Task SDK; the scheduler's delivery loop and the CLI read as server components.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ..core.errors import OrchestError
from ..core.notifications.webhook import Webhook, webhook_from_connection

log = logging.getLogger(__name__)

VARIABLE = "orchest_jobs_webhooks"


def parse_conn_ids(variable: str | None, setting: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The conn ids in force (Variable first, then the setting, no duplicates) and the
    problems of a malformed Variable."""
    problems: list[str] = []
    found: list[str] = []
    if variable not in (None, ""):
        try:
            data = json.loads(str(variable))
        except ValueError as exc:
            data = None
            problems.append(f"Airflow Variable {VARIABLE!r}: not valid JSON ({exc}); write a "
                            'list of connection ids such as ["slack_alerts"]')
        if data is not None:
            if isinstance(data, list) and all(isinstance(x, str) and x for x in data):
                found.extend(data)
            else:
                problems.append(f"Airflow Variable {VARIABLE!r}: must be a JSON list of "
                                'connection ids, such as ["slack_alerts"]')
    for conn_id in setting:
        if conn_id not in found:
            found.append(conn_id)
    return list(dict.fromkeys(found)), problems


@dataclass
class InForce:
    webhooks: list[Webhook] = field(default_factory=list)
    #: One line per unusable webhook or setting (naming it and the fix).
    problems: list[str] = field(default_factory=list)


def _read(getter_variable, getter_connection, setting: tuple[str, ...]) -> InForce:
    result = InForce()
    try:
        variable = getter_variable()
    except Exception as exc:  # an unreachable secrets backend: say so, send nothing
        result.problems.append(f"Airflow Variable {VARIABLE!r} cannot be read: {exc}")
        variable = None
    conn_ids, problems = parse_conn_ids(variable, setting)
    result.problems.extend(problems)
    for conn_id in conn_ids:
        try:
            conn = getter_connection(conn_id)
        except Exception as exc:
            result.problems.append(f"Airflow connection {conn_id!r}: cannot be read ({exc}); "
                                   "create it (type orchest_webhook) or remove it from "
                                   f"{VARIABLE} / [orchest_jobs] webhooks")
            continue
        try:
            result.webhooks.append(webhook_from_connection(
                conn_id, conn.host, conn.password, conn.extra))
        except OrchestError as exc:
            result.problems.extend(str(p) for p in exc.problems)
    return result


def in_force_in_task(setting: tuple[str, ...]) -> InForce:
    """From a task (Task SDK: the worker reads through the API server)."""
    from airflow.sdk import Connection, Variable

    return _read(lambda: Variable.get(VARIABLE, default=None), Connection.get, setting)


def in_force_on_server(setting: tuple[str, ...]) -> InForce:
    """From a server component (scheduler, triggerer, CLI): metastore and backends."""
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable

    return _read(lambda: Variable.get(VARIABLE, default_var=None),
                 Connection.get_connection_from_secrets, setting)


def webhook_on_server(conn_id: str) -> Webhook:
    """One webhook by conn id, for sending (raises OrchestError or Airflow's not-found)."""
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(conn_id)
    return webhook_from_connection(conn_id, conn.host, conn.password, conn.extra)
