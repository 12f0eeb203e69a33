"""A webhook: its configuration, its subscriptions, and the request Orchest sent it.

Configuration is an Airflow Connection of type ``orchest_webhook`` (so secrets backends
apply): ``host`` the receiver URL, ``password`` the HMAC secret, ``extra`` the rest
(see :func:`webhook_from_connection`). The request follows Orchest's
``core/notifications/webhooks.py``: ``{"delivered_for": ..., "event": ...}`` as JSON, or
form-encoded as two JSON fields; Slack and Teams URLs get a ``text`` field and Discord a
``content`` field (JSON only); ``X-Hub-Signature`` is the hex HMAC-SHA256 of the exact
body bytes.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import OrchestError
from .events import PING, derived_id

CONN_TYPE = "orchest_webhook"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = (JSON, FORM)
#: Orchest's request timeout (seconds).
TIMEOUT = 5
#: Discord refuses longer messages.
DISCORD_LIMIT = 2000


@dataclass(frozen=True)
class Subscription:
    """One event type, global or limited to a project (folder name) and a job (DAG id)."""

    event_type: str
    project: str | None = None
    job: str | None = None

    def matches(self, event_type: str, project: str | None, job: str | None) -> bool:
        """Orchest's rule: global subscriptions match everything of their type; a
        project's, that project's events; a job's, that job's (in that project)."""
        if self.event_type != event_type:
            return False
        if self.project is not None and self.project != project:
            return False
        return self.job is None or self.job == job


@dataclass(frozen=True)
class Webhook:
    """A configured webhook (the secret stays in memory, never in a file or a log)."""

    conn_id: str
    url: str
    name: str
    secret: str = ""
    content_type: str = JSON
    verify_ssl: bool = True
    subscriptions: tuple[Subscription, ...] = ()
    uuid: str = ""

    @property
    def webhook_uuid(self) -> str:
        return self.uuid or derived_id("webhook", self.conn_id)

    def subscribed(self, event_type: str, project: str | None, job: str | None) -> bool:
        return any(s.matches(event_type, project, job) for s in self.subscriptions)

    @property
    def is_slack(self) -> bool:
        return self.url.startswith("https://hooks.slack.com/")

    @property
    def is_discord(self) -> bool:
        return self.url.startswith("https://discord.com/api/webhooks/")

    @property
    def is_teams(self) -> bool:
        return "webhook.office.com" in self.url

    @property
    def domain(self) -> str:
        """What may be shown of the URL (Orchest showed scheme and host only: a Slack
        or Discord URL's path is its secret)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"

    def subscription_dicts(self) -> list[dict[str, str]]:
        out = []
        for sub in self.subscriptions:
            entry = {"event_type": sub.event_type}
            if sub.project is not None:
                entry["project"] = sub.project
            if sub.job is not None:
                entry["job"] = sub.job
            out.append(entry)
        return out


def webhook_from_connection(conn_id: str, host: str | None, password: str | None,
                            extra: str | Mapping[str, Any] | None) -> Webhook:
    """Read an ``orchest_webhook`` Connection; a bad field raises one message naming it."""
    where = f"Airflow connection {conn_id!r}"

    def bad(field: str, what: str) -> OrchestError:
        return OrchestError.single(where, field, what)

    url = (host or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad("host", "is not an http(s) URL; put the receiver's whole URL (scheme, "
                  "host, path, query) in the connection's host")
    if isinstance(extra, Mapping):
        data: Any = dict(extra)
    else:
        try:
            data = json.loads(extra) if extra and extra.strip() else {}
        except ValueError as exc:
            raise bad("extra", f"is not valid JSON ({exc}); write an object such as "
                      '{"name": "alerts", "subscriptions": [{"event_type": '
                      '"project:one-off-job:failed"}]}') from None
    if not isinstance(data, dict):
        raise bad("extra", "must be a JSON object")
    name = data.get("name", conn_id)
    if not isinstance(name, str) or not name.strip():
        raise bad("extra.name", "must be a non-empty string (the webhook's name)")
    content_type = data.get("content_type", JSON)
    if content_type not in CONTENT_TYPES:
        raise bad("extra.content_type", f"{content_type!r} is not one of "
                  f"{', '.join(CONTENT_TYPES)}")
    verify_ssl = data.get("verify_ssl", True)
    if not isinstance(verify_ssl, bool):
        raise bad("extra.verify_ssl", "must be true or false")
    raw_uuid = data.get("uuid", "")
    if not isinstance(raw_uuid, str):
        raise bad("extra.uuid", "must be a string (the webhook's uuid in Orchest)")
    subs = data.get("subscriptions", [])
    if not isinstance(subs, list):
        raise bad("extra.subscriptions", "must be a list of {\"event_type\": ..., "
                  "\"project\": ..., \"job\": ...} objects")
    subscriptions = []
    for i, sub in enumerate(subs):
        field = f"extra.subscriptions[{i}]"
        if not isinstance(sub, dict):
            raise bad(field, "must be an object with event_type (and project, job)")
        unknown = set(sub) - {"event_type", "project", "job"}
        if unknown:
            raise bad(field, f"unknown key(s) {', '.join(sorted(unknown))}; use "
                      "event_type, project, job")
        event_type = sub.get("event_type")
        if not isinstance(event_type, str) or not event_type or "*" in event_type:
            raise bad(f"{field}.event_type", f"{event_type!r} is not an event type; write "
                      "one of Orchest's, e.g. project:one-off-job:failed or "
                      "project:cron-job:run:pipeline-run:failed (no wildcards)")
        project, job = sub.get("project"), sub.get("job")
        for key, value in (("project", project), ("job", job)):
            if value is not None and (not isinstance(value, str) or not value):
                raise bad(f"{field}.{key}", "must be a non-empty string or absent")
        if job is not None and project is None:
            raise bad(f"{field}.project", "is required when job is given (Orchest's rule: "
                      "a job subscription names its project too)")
        subscriptions.append(Subscription(event_type, project, job))
    return Webhook(conn_id=conn_id, url=url, name=name, secret=password or "",
                   content_type=content_type, verify_ssl=verify_ssl,
                   subscriptions=tuple(subscriptions), uuid=raw_uuid)


def delivered_for(webhook: Webhook) -> dict[str, Any]:
    """Orchest's marshalled webhook without ``url`` and ``subscriptions``."""
    return {"uuid": webhook.webhook_uuid, "type": "webhook", "name": webhook.name,
            "verify_ssl": webhook.verify_ssl, "content_type": webhook.content_type}


def payload(webhook: Webhook, event: Mapping[str, Any]) -> dict[str, Any]:
    """``{"delivered_for", "event"}`` plus Slack/Teams ``text`` or Discord ``content``
    (Orchest's ``_post_process_payload``)."""
    body: dict[str, Any] = {"delivered_for": delivered_for(webhook),
                            "event": copy.deepcopy(dict(event))}
    if webhook.is_slack or webhook.is_teams:
        body["text"] = json.dumps(body, sort_keys=True, indent=1)
    elif webhook.is_discord:
        body["content"] = json.dumps(body, sort_keys=True, indent=1)
        if len(body["content"]) > DISCORD_LIMIT:
            body["delivered_for"] = {"uuid": body["delivered_for"]["uuid"],
                                     "name": body["delivered_for"]["name"]}
            body["content"] = json.dumps(body, sort_keys=True, indent=1)
            body["content"] = f'{body["content"][:DISCORD_LIMIT - 3]}...'
    return body


def encode(webhook: Webhook, body: Mapping[str, Any]) -> bytes:
    """The exact bytes Orchest's ``requests`` sent: ``json=`` or ``data=`` of two fields."""
    if webhook.content_type == FORM:
        return urlencode([("delivered_for", json.dumps(body["delivered_for"])),
                          ("event", json.dumps(body["event"]))]).encode("utf-8")
    return json.dumps(body, allow_nan=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the body with the secret (no ``sha256=`` prefix, as Orchest)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Request:
    """One POST, ready to send."""

    url: str
    body: bytes
    headers: dict[str, str]
    verify_ssl: bool


def build_request(webhook: Webhook, event: Mapping[str, Any], delivery_id: str) -> Request:
    """The request for one delivery: body, content type and Orchest's headers.

    Without a secret there is no ``X-Hub-Signature`` (Orchest always had one: it made a
    random secret when none was given).
    """
    body = encode(webhook, payload(webhook, event))
    headers = {"Content-Type": webhook.content_type,
               "X-Orchest-Event": str(event.get("type", "")),
               "X-Orchest-Delivery": delivery_id,
               "User-Agent": "Orchest"}
    if webhook.secret:
        headers["X-Hub-Signature"] = signature(webhook.secret, body)
    return Request(webhook.url, body, headers, webhook.verify_ssl)


def ping_request(webhook: Webhook, event: Mapping[str, Any], delivery_id: str) -> Request:
    """The CLI's test delivery (its event has type ``ping``)."""
    assert event.get("type") == PING
    return build_request(webhook, event, delivery_id)


def delivery_id(event_id: str, conn_id: str) -> str:
    """One delivery id per event and webhook, however often the event is emitted."""
    return derived_id("delivery", event_id, conn_id)
