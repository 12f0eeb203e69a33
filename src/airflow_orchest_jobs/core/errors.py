"""User-facing problems: one line each, naming the file, the field and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


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
        return f"{self.file}: {kind}{where}{self.message}"


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
