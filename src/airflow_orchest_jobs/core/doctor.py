"""What ``airflow-orchest-jobs doctor`` reports, and how: check results, never the checks.

A deployment's problems (an unreachable engine, a ``data_dir`` the step user cannot
write, a missing image) otherwise show up one failed task at a time. Each check yields
one :class:`Check`: one line of text (with the fix when it failed) or one JSON object.
The checks themselves touch Docker, Airflow and the file system: see ``deployment_checks``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

#: Settings whose name says they hold a secret: their values are never printed.
_SECRET_NAME = re.compile(r"(password|secret|token|credential|passwd|api_?key)", re.I)
#: ``scheme://user:password@host``: the password part of a URL.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+(?=@)", re.I)
MASK = "***"


class Status(str, Enum):
    OK = "ok"
    FAIL = "fail"
    #: Worth knowing, not wrong (the check could not be made, or a default is in force).
    WARN = "warn"
    #: Not applicable here (no registry set), or it depends on a check that failed.
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One finding: ``name`` says what was checked (``engine``, ``image weather/Python``)."""

    name: str
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value.upper():<4}  {self.name}: {self.message}"
        if self.fix and self.status in (Status.FAIL, Status.WARN):
            text += f" -- fix: {self.fix}"
        return text

    def as_dict(self) -> dict[str, str]:
        found = asdict(self)
        found["status"] = self.status.value
        return found


def ok(name: str, message: str) -> Check:
    return Check(name, Status.OK, message)


def fail(name: str, message: str, fix: str) -> Check:
    return Check(name, Status.FAIL, message, fix)


def skip(name: str, message: str) -> Check:
    return Check(name, Status.SKIP, message)


def warn(name: str, message: str, fix: str = "") -> Check:
    return Check(name, Status.WARN, message, fix)


def mask_value(key: str, value: str) -> str:
    """``value`` as it may be printed: secrets by name, and passwords inside URLs, masked."""
    if _SECRET_NAME.search(key):
        return MASK if value else ""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)


def masked(settings: Mapping[str, str]) -> dict[str, str]:
    return {key: mask_value(key, value) for key, value in settings.items()}


def exit_code(checks: Iterable[Check]) -> int:
    """1 when any check failed (warnings do not fail a deployment), else 0."""
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def render_text(checks: Sequence[Check], settings: Mapping[str, str]) -> str:
    """The effective settings (masked), then one line per check, then the verdict."""
    lines = ["[orchest_jobs] in effect:"]
    lines += [f"    {key} = {value}" for key, value in masked(settings).items()]
    lines += [c.line() for c in checks]
    failed = sum(c.status is Status.FAIL for c in checks)
    lines.append(f"doctor: {failed} check(s) failed" if failed else "doctor: all is well")
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check], settings: Mapping[str, str]) -> str:
    document: dict[str, Any] = {
        "ok": exit_code(checks) == 0,
        "settings": masked(settings),
        "checks": [c.as_dict() for c in checks],
    }
    return json.dumps(document, indent=2) + "\n"
