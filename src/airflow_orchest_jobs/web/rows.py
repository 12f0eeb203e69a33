"""The pipeline-run table of one job run: rows, parameter columns, filter, search, sort, page.

Pure: it works on the run index (``runs.json`` entries, see ``core.plan.write_run_index``)
and on task-instance tuples read by the caller in one query, so 10,000 runs are one list
in memory, filtered and sorted here, and only the requested page is rendered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.grid import PIPELINE_KEY
from ..core.naming import GROUP, group_of, position_of  # noqa: F401 - the views' names
from .states import RUN_STATES, TaskState, run_state

#: Task ids of a pipeline run that are not steps.
PREPARE, CLEANUP = "prepare", "cleanup"
SORT_KEYS = ("index", "state", "start", "end", "duration", "label")
#: The job's history (every job run's pipeline runs) also sorts by job run (newest first
#: when descending; runs of one job run stay in grid order).
HISTORY_SORT_KEYS = ("job_run", *SORT_KEYS)
_MISSING = object()


@dataclass(frozen=True)
class Column:
    """One parameter: ``key`` is ``pipeline_parameters`` or a step uuid."""

    id: str
    key: str
    name: str
    title: str
    varying: bool

    def value(self, entry: Mapping[str, Any]) -> Any:
        return (entry.get("parameters") or {}).get(self.key, {}).get(self.name, _MISSING)


def column_id(key: str, name: str) -> str:
    return f"param:{key}:{name}"


def columns(entries: Sequence[Mapping[str, Any]], step_titles: Mapping[str, str]
            ) -> list[Column]:
    """Every parameter of the runs, those that vary across them first (then grid order)."""
    order: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        for key, values in (entry.get("parameters") or {}).items():
            for name, value in values.items():
                order.setdefault((key, name), set()).add(value_text(value))
    found = []
    for (key, name), seen in order.items():
        title = name if key == PIPELINE_KEY else f"{step_titles.get(key, key)}: {name}"
        found.append(Column(column_id(key, name), key, name, title, len(seen) > 1))
    return [c for c in found if c.varying] + [c for c in found if not c.varying]


def value_text(value: Any) -> str:
    """How a parameter value reads in the table and in searches (strings unquoted)."""
    if value is _MISSING:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass
class RunRow:
    """One pipeline run: its run-index entry, its task instances, its derived state."""

    position: int
    entry: Mapping[str, Any]
    tasks: dict[str, TaskState] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)
    state: str = "queued"
    cancelled: bool = False
    #: The DAG run it belongs to, and when that run was due (the job's history).
    job_run: str = ""
    job_run_after: datetime | None = None

    @property
    def index(self) -> int:
        return int(self.entry["index"])

    @property
    def start(self) -> datetime | None:
        starts = [t.start for t in self.tasks.values() if t.start is not None]
        return min(starts) if starts else None

    @property
    def end(self) -> datetime | None:
        if self.state in ("queued", "running"):
            return None
        ends = [t.end for t in self.tasks.values() if t.end is not None]
        return max(ends) if ends else None

    def duration(self, now: datetime) -> float | None:
        start = self.start
        if start is None:
            return None
        return ((self.end or now) - start).total_seconds()


@dataclass(frozen=True)
class TaskRecord:
    """A task-instance row as read from Airflow's database."""

    task_id: str
    map_index: int
    state: str | None
    start: datetime | None = None
    end: datetime | None = None
    try_number: int = 0


def build_rows(entries: Sequence[Mapping[str, Any]], records: Iterable[TaskRecord], *,
               max_map_length: int, dag_cancelled_at: datetime | None = None,
               run_cancelled_at: Mapping[int, datetime] | None = None) -> list[RunRow]:
    """One row per run-index entry with its tasks and state (``cleanup`` not counted)."""
    rows = [RunRow(position, entry) for position, entry in enumerate(entries)]
    for record in records:
        found = position_of(record.task_id, record.map_index, max_map_length)
        if found is None or found[0] >= len(rows):
            continue
        position, task = found
        rows[position].tasks[task] = TaskState(task, record.state, record.start, record.end)
        rows[position].tries[task] = record.try_number
    per_run = run_cancelled_at or {}
    for row in rows:
        counted = [t for name, t in row.tasks.items() if name != CLEANUP]
        times = [t for t in (dag_cancelled_at, per_run.get(row.position)) if t is not None]
        cancelled_at = min(times) if times else None
        row.state = run_state(counted, cancelled_at)
        row.cancelled = row.state == "cancelled"
    return rows


def count_states(rows: Iterable[RunRow]) -> dict[str, int]:
    counts = dict.fromkeys(RUN_STATES, 0)
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def matches(row: RunRow, cols: Sequence[Column], terms: Sequence[str]) -> bool:
    """Every term matches: ``name=value`` (that parameter, exact text) or a substring of
    the label or of any parameter value; case-insensitive."""
    for term in terms:
        name, eq, wanted = term.partition("=")
        if eq and name:
            hit = any((c.name.lower() == name or c.title.lower() == name)
                      and value_text(c.value(row.entry)).lower() == wanted for c in cols)
        else:
            hit = term in str(row.entry.get("label", "")).lower() or any(
                term in value_text(c.value(row.entry)).lower() for c in cols) or (
                term in row.job_run.lower())
        if not hit:
            return False
    return True


def search_terms(query: str | None) -> list[str]:
    return [t for t in (query or "").lower().split() if t]


def _sortable(value: Any) -> tuple:
    """Mixed types sort without errors: missing, numbers, strings, then anything else."""
    if value is _MISSING or value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return (1, value, "")
    if isinstance(value, str):
        return (2, 0, value)
    return (3, 0, value_text(value))


def sort_key(sort: str, cols: Sequence[Column], now: datetime):
    """A key function for ``sort`` (one of :data:`SORT_KEYS` or a column id)."""
    if sort == "state":
        return lambda r: (RUN_STATES.index(r.state) if r.state in RUN_STATES else 99, r.index)
    if sort in ("start", "end"):
        return lambda r: (getattr(r, sort) is None, getattr(r, sort) or now, r.index)
    if sort == "duration":
        return lambda r: (r.duration(now) is None, r.duration(now) or 0.0, r.index)
    if sort == "label":
        return lambda r: (str(r.entry.get("label", "")), r.index)
    if sort == "job_run":
        return lambda r: (r.job_run_after is not None, r.job_run_after or now, r.job_run,
                          -r.index)
    column = next((c for c in cols if c.id == sort), None)
    if column is not None:
        return lambda r: (_sortable(column.value(r.entry)), r.index)
    return lambda r: r.index


def select_rows(rows: Sequence[RunRow], cols: Sequence[Column], *, now: datetime,
                states: Sequence[str] = (), query: str | None = None, sort: str = "index",
                descending: bool = False, offset: int = 0, limit: int = 50
                ) -> tuple[int, list[RunRow]]:
    """(matching count, the requested page) after state filter, search and sort."""
    terms = search_terms(query)
    wanted = set(states)
    found = [r for r in rows if (not wanted or r.state in wanted)
             and (not terms or matches(r, cols, terms))]
    found.sort(key=sort_key(sort, cols, now), reverse=descending)
    return len(found), found[offset:offset + limit]
