"""Job schedules (a cron string, an Airflow preset, a one-off ISO-8601 datetime, or none),
a cron job's start date, and the durations job files give (time limits, retry delays)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: Airflow's cron presets (and @once); "@continuous" is left out on purpose: a job
#: that restarts the moment it ends is never what an Orchest user meant.
PRESETS = frozenset({"@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly",
                     "@yearly", "@annually"})


@dataclass(frozen=True)
class Schedule:
    """What Airflow needs: ``cron`` (cron text or preset), or ``at`` for a one-off."""

    cron: str | None = None
    at: datetime | None = None

    @property
    def is_trigger_only(self) -> bool:
        return self.cron is None and self.at is None


def parse_schedule(value: str | None) -> Schedule:
    """Parse a job file's ``schedule``; raises ValueError with the reason and the fix."""
    if value is None:
        return Schedule()
    text = value.strip()
    if not text:
        raise ValueError("is empty; use a cron string, a preset such as \"@daily\", an "
                         "ISO-8601 datetime, or null for trigger-only")
    if text.startswith("@"):
        if text not in PRESETS:
            raise ValueError(f"unknown preset {text!r}; use one of {', '.join(sorted(PRESETS))}")
        return Schedule(cron=text)
    if text[:4].isdigit() and len(text) >= 10 and text[4] == "-":
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is not a valid ISO-8601 datetime; write it like "
                             "\"2026-12-01T03:00:00Z\"") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)  # Orchest schedules were UTC
        return Schedule(at=at)
    from croniter import croniter  # a dependency of Airflow itself, and pure Python

    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(f"{text!r} is not a valid cron expression; use five fields such as "
                         "\"0 3 * * *\" (minute hour day month weekday, UTC)")
    return Schedule(cron=text)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(value: Any) -> float:
    """Seconds of a duration: a number of seconds, or text such as ``"90s"``, ``"30m"``,
    ``"2h"``, ``"1h30m"``, ``"1d"``; raises ValueError with the reason and the fix."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number of seconds or a duration such as \"2h\"")
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration; write seconds (7200) or a "
                             "duration such as \"90s\", \"30m\", \"2h\", \"1h30m\", \"1d\"")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        seconds = float(value)
    if not seconds > 0 or seconds > 366 * 86400:
        raise ValueError(f"{value!r} must be more than 0 seconds and at most a year")
    return seconds


def format_duration(seconds: float) -> str:
    """``7200`` -> ``"2h"``, ``5400`` -> ``"1h30m"`` (what a log line shows)."""
    left, out = round(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            out += f"{left // size}{unit}"
            left %= size
    return out or f"{seconds:g}s"


def parse_start_date(value: str) -> datetime:
    """A cron job's ``start_date``: an ISO-8601 date or datetime (UTC when no zone is
    given); raises ValueError with the fix."""
    text = value.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date or datetime; write it like "
                         "\"2026-12-01\" or \"2026-12-01T03:00:00Z\"") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
