"""A job run's notifications: what its events say, which were sent, and the outbox writes.

The job run's first task (``plan``) saves a small context (the job's facts and the
webhooks in force with their subscriptions; never a URL or a secret) in
``store_dir/notifications/job-runs/<dag>/<run>/``; every later event point reads it
(no Airflow call) and writes one outbox delivery per subscribed webhook. An event is
marked as emitted there too, by its stable id: emitting it twice adds nothing, and a cron
run's status knows whether its ``run:failed`` happened (Orchest's derivation).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import safe_name
from ..snapshot.fsops import write_atomically
from .events import (
    JobFacts,
    PipelineRunFacts,
    job_event,
    job_event_id,
    pipeline_run_event,
    run_event_id,
)
from .outbox import Delivery, Outbox
from .webhook import Subscription, delivery_id

CONTEXT = "context.json"
#: Task outcomes that make a pipeline run failed / cancelled (``cleanup`` never counts).
FAILED_STATES = frozenset({"failed", "upstream_failed"})
GROUP = "pipeline_run"


@dataclass(frozen=True)
class Subscriber:
    """A webhook in force, as events need it: its conn id and subscriptions only."""

    conn_id: str
    subscriptions: tuple[Subscription, ...]

    def wants(self, event_type: str, project: str, job: str) -> bool:
        return any(s.matches(event_type, project, job) for s in self.subscriptions)


class JobRunNotices:
    """The notifications folder of one job run."""

    def __init__(self, store_dir: Path, dag_id: str, run_id: str):
        self.store_dir = Path(store_dir)
        self.jobs_root = self.store_dir / "notifications" / "job-runs"
        self.root = self.jobs_root / safe_name(dag_id) / safe_name(run_id)
        self.outbox = Outbox(self.store_dir)

    def save(self, facts: JobFacts, subscribers: Sequence[Subscriber]) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"facts": facts.to_dict(), "subscribers": [
            {"conn_id": s.conn_id, "subscriptions": [
                {"event_type": x.event_type, "project": x.project, "job": x.job}
                for x in s.subscriptions]} for s in subscribers]}
        write_atomically(self.root / CONTEXT, json.dumps(data).encode(), self.root,
                         durable=True)

    def load(self) -> tuple[JobFacts, list[Subscriber]] | None:
        """The saved context; None when no webhook was in force when the job run began."""
        try:
            data = json.loads((self.root / CONTEXT).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        facts = JobFacts.from_dict(data["facts"])
        subscribers = [Subscriber(str(s["conn_id"]), tuple(
            Subscription(str(x["event_type"]), x.get("project"), x.get("job"))
            for x in s["subscriptions"])) for s in data["subscribers"]]
        return facts, subscribers

    def job_run_number(self) -> int:
        """The job run's number among the job's runs with notifications (0-based)."""
        try:
            return sum(1 for entry in os.scandir(self.root.parent)
                       if entry.is_dir() and entry.path != str(self.root))
        except FileNotFoundError:
            return 0

    def _marker(self, event_id: str) -> Path:
        return self.root / f"event-{event_id}"

    def emitted(self, event_id: str) -> bool:
        return self._marker(event_id).exists()

    def mark(self, event_id: str, extra: str = "") -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            fd = os.open(self._marker(event_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, extra.encode())
            os.close(fd)

    def killed_marker(self, position: int) -> Path:
        return self.root / f"killed-{position}"

    def mark_killed(self, position: int) -> None:
        """A step of this run was stopped by a cancel (its failure is not the run's)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.killed_marker(position).touch()

    def emit(self, facts: JobFacts, subscribers: Iterable[Subscriber],
             event: Mapping[str, Any], *, sync: bool = True) -> list[str]:
        """Write the event's deliveries (once per event and webhook); their ids.

        The deliveries go first, the emitted marker after: a crash in between emits
        again later, and the stable delivery ids make that a no-op.
        """
        event_id, event_type = str(event["uuid"]), str(event["type"])
        if self.emitted(event_id):
            return []
        outbox, now, added = self.outbox, time.time(), []
        for sub in subscribers:
            if not sub.wants(event_type, facts.project, facts.dag_id):
                continue
            did = delivery_id(event_id, sub.conn_id)
            if outbox.add(Delivery(delivery_id=did, event_id=event_id,
                                   event_type=event_type, conn_id=sub.conn_id,
                                   event=event, created_at=now, scheduled_at=now),
                          sync=sync):
                added.append(did)
        self.mark(event_id)
        return added


def run_facts(entry: Mapping[str, Any], failed_steps: Sequence[str] = ()) -> PipelineRunFacts:
    """A pipeline run's facts from its run-index entry (``plan`` wrote it)."""
    parameters = entry.get("parameters") or {}
    return PipelineRunFacts(position=int(entry.get("position", 0)),
                            run_uuid=str(entry.get("run_uuid", "")),
                            parameters={str(k): dict(v) for k, v in parameters.items()
                                        if isinstance(v, Mapping)},
                            failed_steps=tuple(failed_steps))


def batch_status(notices: JobRunNotices, facts: JobFacts) -> str:
    """A cron run's status as Orchest derived it from the run's events so far."""
    if notices.emitted(job_event_id(facts, "succeeded")):
        return "SUCCESS"
    if notices.emitted(job_event_id(facts, "failed")):
        return "FAILURE"
    return "STARTED"


def emit_run_event(notices: JobRunNotices, facts: JobFacts, subscribers: list[Subscriber],
                   run: PipelineRunFacts, outcome: str, *, sync: bool = True) -> list[str]:
    """A pipeline run's event; for a failed run of a cron job, then the batch's
    ``run:failed`` (once: at its first failed pipeline run, as Orchest)."""
    added = []
    if outcome == "failed" and facts.is_cron \
            and not notices.emitted(job_event_id(facts, "failed")):
        # Orchest registered the pipeline-run event, then run:failed in the same
        # transaction; its payloads were built after both, so the run shows FAILURE.
        added += notices.emit(facts, subscribers, pipeline_run_event(
            facts, run, outcome, batch_status="FAILURE"), sync=sync)
        added += notices.emit(facts, subscribers, job_event(facts, "failed"), sync=sync)
        return added
    if notices.emitted(run_event_id(facts, run.position, outcome)):
        return []
    return notices.emit(facts, subscribers, pipeline_run_event(
        facts, run, outcome, batch_status=batch_status(notices, facts)), sync=sync)


def run_outcomes(states: Mapping[str, Any], max_map_length: int
                 ) -> dict[int, tuple[str, list[str]]]:
    """Each pipeline run's outcome (``succeeded``, ``failed``, ``cancelled``) and its
    failed tasks (ids inside the group), from the job run's task states
    (``{task_id_mapindex: state}``, Airflow's task-states answer).

    A run with a failed task failed; one with a skipped or unfinished task (nothing
    failed) was cancelled; otherwise it succeeded. Its ``cleanup`` teardown never counts.
    """
    per_run: dict[int, dict[str, str]] = {}
    for key, state in states.items():
        task_id, _, index = key.rpartition("_")
        if not index.isdigit():
            continue
        group, _, task = task_id.partition(".")
        if not task or task == "cleanup":
            continue
        if group == GROUP:
            lane = 0
        elif group.startswith(GROUP + "_") and group[len(GROUP) + 1:].isdigit():
            lane = int(group[len(GROUP) + 1:]) - 1
        else:
            continue
        per_run.setdefault(lane * max_map_length + int(index), {})[task] = str(state)
    outcomes: dict[int, tuple[str, list[str]]] = {}
    for position, tasks in per_run.items():
        found = {t: s for t, s in tasks.items() if s != "removed"}
        failed = sorted(t for t, s in found.items() if s == "failed")
        if any(s in FAILED_STATES for s in found.values()):
            outcomes[position] = ("failed", failed)
        elif found and all(s == "success" for s in found.values()):
            outcomes[position] = ("succeeded", [])
        else:
            outcomes[position] = ("cancelled", [])
    return outcomes
