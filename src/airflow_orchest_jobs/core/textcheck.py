"""Characters a value cannot carry where it goes: a file path, a container's environment.

Checked when a file is loaded, so the one-line problem names the file and the field,
instead of a ``ValueError: embedded null byte`` from the first system call that meets it.
"""

from __future__ import annotations

import re

#: A path is handed to system calls (no NUL) and shown in logs and the UI, one line.
_PATH_BAD = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
#: An environment variable is a C string (no NUL) in UTF-8 (no lone surrogate).
_ENV_BAD = re.compile(r"[\x00\ud800-\udfff]")


def _describe(char: str, position: int) -> str:
    if char == "\x00":
        name = "a NUL character"
    elif "\ud800" <= char <= "\udfff":
        name = f"a lone surrogate (\\u{ord(char):04x})"
    else:
        name = f"a control character (\\x{ord(char):02x})"
    return f"{name} at position {position}"


def path_problem(text: str, what: str = "a path",
                 fix: str = "rename the file and fix the path") -> str | None:
    """Why ``text`` cannot be a path (or a name used as one), or None."""
    found = _PATH_BAD.search(text)
    if found is None:
        return None
    return (f"contains {_describe(found.group(), found.start())}; {what} cannot hold NUL, "
            f"control characters or invalid Unicode, {fix}")


def env_value_problem(text: str) -> str | None:
    """Why ``text`` cannot be an environment variable's value, or None."""
    found = _ENV_BAD.search(text)
    if found is None:
        return None
    return (f"contains {_describe(found.group(), found.start())}, which a container's "
            "environment cannot carry; remove it from the value")


def shown_text_problem(text: str) -> str | None:
    """Why ``text`` cannot be shown in Airflow (a DAG's name, description, a task's
    title: stored and served as UTF-8 text), or None."""
    found = _ENV_BAD.search(text)
    if found is None:
        return None
    return (f"contains {_describe(found.group(), found.start())}; text shown in Airflow "
            "cannot carry NUL or invalid Unicode, remove it")


def name_problem(path: str) -> str | None:
    """Why a file or folder name cannot become a DAG (it is shown, and must be text)."""
    found = _PATH_BAD.search(path)
    if found is None:
        return None
    char = found.group()
    what = (f"a byte that is not UTF-8 (0x{ord(char) - 0xDC00:02x}) at position "
            f"{found.start()}" if "\udc80" <= char <= "\udcff"
            else _describe(char, found.start()))
    return f"its name contains {what}; rename it to UTF-8 text without control characters"
