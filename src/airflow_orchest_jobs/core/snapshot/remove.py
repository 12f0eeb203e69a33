"""Delete a run folder even when steps left read-only files or folders behind."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..errors import OrchestError


def _make_traversable(path: str) -> None:
    """Give the owner rwx on every folder below ``path`` (never following links)."""
    for current, folders, _files in os.walk(path, followlinks=False):
        for name in folders:
            full = os.path.join(current, name)
            info = os.lstat(full)
            if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o700 != 0o700:
                os.chmod(full, stat.S_IMODE(info.st_mode) | 0o700)


def remove_tree(path: str | Path) -> None:
    """Remove ``path`` and everything in it; a missing path is fine, a link is unlinked.

    Read-only files are no obstacle on POSIX (deleting needs a writable folder), but a
    step may leave folders without write or search permission: those are opened up
    and the removal retried once.
    """
    path = os.fspath(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(path)
            return
        try:
            shutil.rmtree(path)
        except OSError:
            os.chmod(path, stat.S_IMODE(info.st_mode) | 0o700)
            _make_traversable(path)
            shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OrchestError.single(
            path, "", f"cannot be deleted ({exc.strerror}: {exc.filename}); files a step "
            "container wrote as another user may need that user (or root) to delete them"
        ) from None
