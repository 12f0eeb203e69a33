"""Job schedules: a cron string, an Airflow preset, a one-off ISO-8601 datetime, or none."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

#: Airflow's cron presets (and @once); "@continuous" is left out on purpose: a job
#: that restarts the moment it ends is never what an Orchest user meant.
PRESETS = frozenset({"@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly",
                     "@yearly", "@annually"})
#: The cron text of each repeating preset (Airflow's meaning of them).
PRESET_CRON = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
               "@monthly": "0 0 1 * *", "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *",
               "@annually": "0 0 1 1 *"}


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
