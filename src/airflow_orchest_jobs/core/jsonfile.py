"""Read a JSON file or say, in one line, why it cannot be read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import OrchestError

#: Lists and objects inside each other, at most. Real documents nest a few levels (a
#: parameter value a few more); every later step (schema checks, copies, Airflow's
#: serialization of the trigger form) recurses per level, and Python's stack is finite.
MAX_DEPTH = 64


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep lists and objects nest in ``value``, level by level (no recursion); stops
    counting past ``limit`` (returns ``limit + 1``)."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        deeper: list[Any] = []
        for node in level:
            deeper += [child for child in (node.values() if type(node) is dict else node)
                       if type(child) is dict or type(child) is list]
        level = deeper
    return depth


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` may nest deeper than ``limit``: False when it does not
    even have that many brackets (the usual case, decided without parsing)."""
    return text.count("[") + text.count("{") > limit


def loads_bounded(text: str, source: str, where: str = "") -> Any:
    """``json.loads`` that refuses documents nested deeper than :data:`MAX_DEPTH`.

    Raises :class:`OrchestError` (malformed or too deep), never ``RecursionError``.
    """
    def deep() -> OrchestError:
        return OrchestError.single(source, where, f"lists and objects are nested more than "
                                   f"{MAX_DEPTH} levels deep; flatten the document")

    try:
        value = json.loads(text)
    except RecursionError:
        raise deep() from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. a number longer than Python converts (4,300 digits)
        raise OrchestError.single(source, where, f"cannot be read as JSON ({exc}); fix "
                                  "the value") from None
    if too_deep(text) and nesting_depth(value) > MAX_DEPTH:
        raise deep()
    return value


def _read_regular(path: Path) -> str:
    """A regular file's text; a fifo or device is refused, never waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OrchestError.single(path, "", "is not a regular file (a fifo, socket or "
                                      "device); replace it with a JSON file")
        return handle.read().decode("utf-8")


def read_json(path: Path, what: str = "file") -> Any:
    try:
        text = _read_regular(path)
    except FileNotFoundError:
        raise OrchestError.single(path, "", f"{what} not found") from None
    except IsADirectoryError:
        raise OrchestError.single(path, "", f"is a folder, expected a {what}") from None
    except PermissionError:
        raise OrchestError.single(path, "", "cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise OrchestError.single(path, "", "is not UTF-8 text; save it as UTF-8 JSON") from None
    except OSError as exc:
        raise OrchestError.single(path, "", f"cannot be read ({exc.strerror or exc}); "
                                  f"make it a readable {what}") from None
    except ValueError:  # a NUL in the path: the system call never happens
        raise OrchestError.single(path, "", "the path contains a NUL character; rename "
                                  "it") from None
    try:
        return loads_bounded(text, str(path))
    except json.JSONDecodeError as exc:
        raise OrchestError.single(
            path, f"line {exc.lineno} column {exc.colno}",
            f"malformed JSON ({exc.msg}); fix the syntax",
        ) from None
