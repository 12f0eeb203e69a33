"""``webhooks list`` and ``webhooks test NAME``: the configured webhooks and a ping.

Reads the webhooks as the delivery loop does (Airflow Connections, the Variable
``orchest_jobs_webhooks``, ``[orchest_jobs] webhooks``); shows a URL's scheme and host
only and never a secret.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter

from ...config import load_settings
from ...core.errors import OrchestError
from ...core.notifications.events import SENT_EVENTS, ping_event
from ...core.notifications.outbox import Outbox
from ...core.notifications.webhook import build_request
from ...webhooks.config import in_force_on_server
from ...webhooks.delivery import send


def register(subparsers) -> None:
    hooks = subparsers.add_parser("webhooks", help="Orchest webhook notifications: list, test")
    commands = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="the webhooks in force and their pending "
                                  "deliveries")
    listing.set_defaults(func=run_list)
    test = commands.add_parser("test", help="send a ping to one webhook and print the answer")
    test.add_argument("name", help="the webhook's connection id or name")
    test.set_defaults(func=run_test)


def _in_force():
    settings = load_settings()
    return settings, in_force_on_server(settings.webhooks)


def run_list(args: argparse.Namespace) -> int:
    settings, found = _in_force()
    pending = Outbox(settings.store_dir).all()
    per_conn = Counter(d.conn_id for d in pending)
    if not found.webhooks and not found.problems:
        print("No webhooks in force (list connection ids in the Airflow Variable "
              "orchest_jobs_webhooks or in [orchest_jobs] webhooks).")
    for hook in found.webhooks:
        print(f"{hook.conn_id}: {hook.name!r} -> {hook.domain} ({hook.content_type}, "
              f"verify_ssl={str(hook.verify_ssl).lower()}, "
              f"{'signed' if hook.secret else 'unsigned'}), "
              f"{len(hook.subscriptions)} subscription(s), "
              f"{per_conn.get(hook.conn_id, 0)} pending")
        for sub in hook.subscriptions:
            scope = ("global" if sub.project is None else f"project {sub.project}"
                     + (f", job {sub.job}" if sub.job else ""))
            never = "" if sub.event_type in SENT_EVENTS else "; never sent by this plugin"
            print(f"    {sub.event_type} ({scope}{never})")
    now = time.time()
    if pending:
        print(f"Pending deliveries ({len(pending)}):")
        for d in pending:
            wait = max(0, int(d.scheduled_at - now))
            last = f", last: {d.last_error}" if d.last_error else ""
            print(f"  {d.delivery_id} {d.event_type} to {d.conn_id}: {d.attempts} failed "
                  f"attempt(s), next in {wait}s{last}")
    for problem in found.problems:
        print(f"problem: {problem}")
    return 1 if found.problems else 0


def run_test(args: argparse.Namespace) -> int:
    _, found = _in_force()
    hooks = [h for h in found.webhooks if args.name in (h.conn_id, h.name)]
    if not hooks:
        known = ", ".join(h.conn_id for h in found.webhooks) or "none"
        raise OrchestError.single("webhooks test", args.name, f"no webhook in force has this "
                                  f"connection id or name (in force: {known})")
    hook = hooks[0]
    answer = send(build_request(hook, ping_event(), str(uuid.uuid4())))
    if answer.status is None:
        print(f"{hook.conn_id} ({hook.domain}): no answer: {answer.text}")
        return 1
    print(f"{hook.conn_id} ({hook.domain}): HTTP {answer.status}")
    if answer.text:
        print(answer.text)
    return 0 if answer.ok else 1
