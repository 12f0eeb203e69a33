"""A command's containment boundary: never a traceback.

An :class:`OrchestError` goes on to ``cli.main``, which prints its lines; anything else
becomes the lines ``problems_of`` makes of it (logged in full), exit 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ..core.errors import OrchestError, problems_of


def contained(source: str | Path, log: logging.Logger, body: Callable[[], int]) -> int:
    """``body()``, or 1 with ``source``'s problem lines on stderr when it raises."""
    try:
        return body()
    except OrchestError:
        raise  # the CLI prints its lines
    except Exception as exc:  # the command's boundary: contain anything
        for problem in problems_of(source, exc, log):
            print(problem, file=sys.stderr)
        return 1
