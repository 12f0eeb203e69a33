"""Orchest's webhook notifications, pure: events, payloads, webhooks, the outbox.

``events`` builds an event's payload with the layers and field names of Orchest's
``models/_events.py``; ``webhook`` reads a webhook's configuration, matches its
subscriptions and builds the exact request Orchest sent (body, ``X-Hub-Signature``,
Slack/Teams/Discord shapes, form encoding); ``outbox`` keeps deliveries as files in the
store until a receiver answers 2xx, retried with Orchest's backoff.
"""
