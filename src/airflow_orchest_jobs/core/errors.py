"""User-facing problems: one line each, naming the file, the field and the fix."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Characters a line of text must not carry raw (a problem is always one line).
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}
_CONTROL.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_SURROGATE = re.compile("[\ud800-\udfff]")
#: How much of an unexpected exception's message a problem line keeps.
_UNEXPECTED_CHARS = 300


def one_line(text: str) -> str:
    """``text`` with control characters escaped and lone surrogates replaced."""
    text = text.translate(_CONTROL)
    return text.encode("utf-8", "backslashreplace").decode("utf-8") \
        if _SURROGATE.search(text) else text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, phrased for the person who must fix it."""

    file: str
    where: str
    message: str
    #: A field that loads but is not honoured: the input still runs (``validate`` warns).
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        where = f"{self.where}: " if self.where else ""
        return one_line(f"{self.file}: {kind}{where}{self.message}")


class OrchestError(Exception):
    """Raised with every problem found, so a user fixes them all in one go."""

    def __init__(self, problems: Iterable[Problem] | Problem):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: str | Path, where: str, message: str) -> OrchestError:
        return cls(Problem(str(file), where, message))


def problems_of(file: str | Path, exc: BaseException, log: logging.Logger) -> list[Problem]:
    """What any exception raised while loading ``file`` means for its user.

    The containment boundary: an :class:`OrchestError` keeps its problems; anything else
    (a bug, an input no check foresaw: ``RecursionError``, ``ValueError``, ``OSError``...)
    becomes one line naming the file and the exception, with the traceback only in the
    debug log, so one bad file never takes the others down.
    """
    if isinstance(exc, OrchestError):
        return exc.problems
    log.debug("unexpected error loading %s", file, exc_info=exc)
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > _UNEXPECTED_CHARS:
        text = text[:_UNEXPECTED_CHARS] + "..."
    return [Problem(str(file), "", f"cannot be loaded ({type(exc).__name__}: {text}); "
                    "this input is not handled: fix the file, or report it with this line")]
