"""The one way this package holds a lock file: ``flock`` on a file of the shared store.

Processes on one host, and workers sharing the store (flock works on local file systems
and on NFS with its lock manager), serialize on it. The file is created with its folder;
it is opened read-only, so a user who may only read a shared lock file still locks it.
Closing the descriptor releases the lock, also when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False, blocking: bool = True, mode: int = 0o644,
           on_error: Callable[[OSError], Exception] | None = None) -> Iterator[bool]:
    """Hold ``path``'s lock (exclusive, or ``shared``) for the block; yields True.

    Not ``blocking``: yields False at once, holding nothing, when another holds it.
    ``on_error``: the exception to raise, instead of the ``OSError``, when the lock file
    cannot be created (a read-only or full store); errors of the block pass unchanged.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError as exc:
        if on_error is None:
            raise
        raise on_error(exc) from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                        | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_all(paths: list[Path]) -> Iterator[None]:
    """Hold every lock of ``paths``, always taken in the same (sorted) order: two callers
    wanting overlapping sets never deadlock."""
    with contextlib.ExitStack() as stack:
        for path in sorted(set(paths)):
            stack.enter_context(locked(path))
        yield
