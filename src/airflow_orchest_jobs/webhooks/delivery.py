"""Send due deliveries: Orchest's request, a 2xx removes it, anything else backs off.

Runs in the scheduler's (and triggerer's) delivery loop (``listener``) and in the CLI;
never in a task, so a receiver that is down, slow or answers 500 never holds up a step or
a job run. A webhook that timed out is skipped for the rest of that round, so one slow
receiver does not hold the others' deliveries. URLs are never logged (a Slack or Discord
URL's path is its secret): the webhook's name and domain are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.notifications.outbox import Outbox
from ..core.notifications.webhook import TIMEOUT, Request, Webhook, build_request

log = logging.getLogger(__name__)

#: Seconds between two looks at the outbox.
POLL_INTERVAL = 2.0


@dataclass(frozen=True)
class Answer:
    ok: bool
    status: int | None
    text: str
    timed_out: bool = False


def send(request: Request, timeout: float = TIMEOUT) -> Answer:
    """POST the request (Orchest: ``verify_ssl``, 5 s timeout, redirects followed)."""
    import requests

    try:
        response = requests.post(request.url, data=request.body, headers=request.headers,
                                 verify=request.verify_ssl, timeout=timeout)
    except requests.Timeout as exc:
        return Answer(False, None, f"timed out ({type(exc).__name__})", timed_out=True)
    except requests.RequestException as exc:
        return Answer(False, None, f"{type(exc).__name__}: {_short(exc)}")
    ok = 200 <= response.status_code <= 299
    return Answer(ok, response.status_code, response.text[:500])


def _short(exc: Exception) -> str:
    """An exception's text without the URL requests puts in it (it may hold a token)."""
    text = str(exc)
    return text.split(" with url:")[0][:200] if " with url:" in text else text[:200]


@dataclass
class Round:
    delivered: int = 0
    failed: int = 0


#: Seconds a webhook read from its connection is reused by the loop (fewer metastore reads).
WEBHOOK_TTL = 30.0


def deliver_due(store_dir: Path | Outbox, resolve: Callable[[str], Webhook],
                now: float | None = None,
                cache: dict[str, tuple[float, Webhook | str]] | None = None) -> Round:
    """One pass over the outbox: try every due delivery once.

    ``cache`` (kept by the loop) reuses each webhook's connection for WEBHOOK_TTL s.
    """
    outbox = store_dir if isinstance(store_dir, Outbox) else Outbox(store_dir)
    result = Round()
    cached = cache if cache is not None else {}
    moment = time.monotonic()
    hooks: dict[str, Webhook | str] = {k: v for k, (t, v) in cached.items()
                                       if moment - t < WEBHOOK_TTL}
    slow: set[str] = set()
    for pending in outbox.due(now):
        if pending.conn_id in slow:
            continue
        with outbox.claimed(pending.delivery_id) as delivery:
            if delivery is None or delivery.scheduled_at > (now or time.time()):
                continue  # another process has it, or it was just rescheduled
            if delivery.conn_id not in hooks:
                try:
                    hooks[delivery.conn_id] = resolve(delivery.conn_id)
                except Exception as exc:
                    hooks[delivery.conn_id] = f"the webhook cannot be read: {exc}"
                cached[delivery.conn_id] = (moment, hooks[delivery.conn_id])
            hook = hooks[delivery.conn_id]
            if isinstance(hook, str):
                outbox.reschedule(delivery, f"connection {delivery.conn_id!r}: {hook}")
                result.failed += 1
                continue
            answer = send(build_request(hook, delivery.event, delivery.delivery_id))
            if answer.ok:
                outbox.mark_delivered(delivery.delivery_id)
                result.delivered += 1
                continue
            error = f"HTTP {answer.status}" if answer.status is not None else answer.text
            updated = outbox.reschedule(delivery, error)
            result.failed += 1
            log.warning("Webhook %r (%s): delivery %s of %s failed (%s); try %d in %ds",
                        hook.name, hook.domain, delivery.delivery_id, delivery.event_type,
                        error, updated.attempts + 1,
                        int(updated.scheduled_at - (now or time.time())))
            if answer.timed_out:
                slow.add(delivery.conn_id)
    return result


def drain_forever(store_dir: Callable[[], Path], resolve: Callable[[str], Webhook],
                  stop: threading.Event, interval: float = POLL_INTERVAL,
                  before: Callable[[Path], object] | None = None) -> None:
    """Deliver what is due every ``interval`` seconds until ``stop`` is set; ``before``
    runs first in each round (the pause check)."""
    last_prune = 0.0
    outboxes: dict[Path, Outbox] = {}  # kept: each pending file is parsed once
    webhooks: dict[str, tuple[float, Webhook | str]] = {}
    while not stop.is_set():
        try:
            root = store_dir()
            if before is not None:
                try:
                    before(root)
                except Exception:
                    log.exception("Webhook notifications: the pause check failed")
            deliver_due(outboxes.setdefault(root, Outbox(root)), resolve, cache=webhooks)
            if time.time() - last_prune > 3600:
                Outbox(root).prune()
                last_prune = time.time()
        except Exception:  # never let one bad round end the loop
            log.exception("Webhook delivery round failed; trying again")
        stop.wait(interval)
