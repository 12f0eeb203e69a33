"""Webhook notifications, the Airflow side (the pure parts are in ``core.notifications``).

``config``: the webhooks in force (Airflow Connections, the Variable and the setting);
``emit``: the event points the tasks call (they only write the outbox); ``delivery``:
sending due deliveries with Orchest's request and backoff; ``listener``: the delivery
loop inside Airflow's scheduler (and triggerer), started by the plugin's listener.
"""
