"""Which cron jobs were paused or unpaused since the last look (Airflow tells no one).

Airflow 3 has no listener or callback for a DAG's pause, so the scheduler's delivery loop
compares ``is_paused`` of the cron-job DAGs with what it saw last, kept in
``store_dir/notifications/paused.json`` (so a change made while the scheduler was down
is still seen once it is back). A DAG seen for the first time is only recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ..snapshot.fsops import write_atomically


def changes(previous: Mapping[str, Mapping[str, object]], current: Mapping[str, bool]
            ) -> tuple[dict[str, dict[str, object]], list[tuple[str, bool, int]]]:
    """The new record and the changes ``(dag_id, paused, serial)``; ``serial`` counts a
    DAG's changes (part of the event's id, so each change is one event)."""
    record: dict[str, dict[str, object]] = {}
    found = []
    for dag_id, paused in current.items():
        before = previous.get(dag_id)
        serial = int(str(before.get("serial", 0))) if before else 0
        if before is not None and bool(before.get("paused")) != paused:
            serial += 1
            found.append((dag_id, paused, serial))
        record[dag_id] = {"paused": paused, "serial": serial}
    return record, found


class PauseRecord:
    def __init__(self, store_dir: Path):
        self.path = Path(store_dir) / "notifications" / "paused.json"

    def load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, record: Mapping[str, Mapping[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.path, json.dumps(record, sort_keys=True).encode(),
                         self.path.parent, durable=True)
