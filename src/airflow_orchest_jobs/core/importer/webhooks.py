"""Orchest's webhooks -> ``orchest_webhook`` Connections (the shared contract of the
notifications work): ``host`` the URL, ``password`` the HMAC secret, ``extra`` the name,
content type, ``verify_ssl`` and the subscriptions by project folder and DAG id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..naming import safe
from .model import OrchestWebhook

CONN_TYPE = "orchest_webhook"
#: The Airflow Variable listing the webhooks in force (a JSON list of conn ids).
WEBHOOKS_VARIABLE = "orchest_jobs_webhooks"
CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class ConnectionSpec:
    conn_id: str
    host: str
    password: str
    extra: dict[str, Any]
    conn_type: str = CONN_TYPE

    def canonical(self) -> str:
        """What is compared and hashed (a second import with the same webhook is a no-op)."""
        return json.dumps({"conn_type": self.conn_type, "host": self.host,
                           "password": self.password, "extra": self.extra}, sort_keys=True)


def map_webhooks(webhooks: list[OrchestWebhook], folders: Mapping[str, str],
                 dag_ids: Mapping[str, tuple[str, str]]
                 ) -> tuple[dict[str, ConnectionSpec], list[str], list[str]]:
    """Connections by conn id, the conn ids in order, and notes on subscriptions that
    name a project or job that was not imported."""
    out: dict[str, ConnectionSpec] = {}
    notes: list[str] = []
    for hook in sorted(webhooks, key=lambda h: (h.name, h.uuid)):
        conn_id = f"orchest_webhook__{safe(hook.name).strip('_') or hook.uuid[:8]}"
        if conn_id in out:
            conn_id = f"{conn_id}_{hook.uuid[:8]}"
        label = f"webhook {hook.name!r}"
        subscriptions: list[dict[str, str]] = []
        for sub in hook.subscriptions:
            entry = {"event_type": sub.event_type}
            if sub.job_uuid:
                if sub.job_uuid not in dag_ids:
                    notes.append(f"{label}: subscription to {sub.event_type} of job "
                                 f"{sub.job_uuid} not carried: the job was not imported")
                    continue
                entry["project"], entry["job"] = dag_ids[sub.job_uuid]
            elif sub.project_uuid:
                if sub.project_uuid not in folders:
                    notes.append(f"{label}: subscription to {sub.event_type} of project "
                                 f"{sub.project_uuid} not carried: no such project")
                    continue
                entry["project"] = folders[sub.project_uuid]
            if entry not in subscriptions:
                subscriptions.append(entry)
        content_type = hook.content_type if hook.content_type in CONTENT_TYPES \
            else CONTENT_TYPES[0]
        if hook.content_type not in CONTENT_TYPES:
            notes.append(f"{label}: content type {hook.content_type!r} unknown; "
                         f"{content_type} used")
        out[conn_id] = ConnectionSpec(
            conn_id=conn_id, host=hook.url, password=hook.secret or "",
            extra={"name": hook.name, "content_type": content_type,
                   "verify_ssl": bool(hook.verify_ssl), "subscriptions": subscriptions})
    return out, list(out), notes
