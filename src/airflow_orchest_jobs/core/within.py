"""Whether a path stays inside a folder: the one check of "never outside the project".

Job files name a pipeline and a parameters file, pipelines name step files: each must be
inside its project both as written (normalised) and once links are resolved. Callers
normalise or resolve (``realpath``, maybe cached); this compares.
"""

from __future__ import annotations

import os


def inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it (both absolute and normalised, or both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
