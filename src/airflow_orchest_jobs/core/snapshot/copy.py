"""Copy file contents with the cheapest method the filesystem offers, never in Python.

Order: reflink (``FICLONE``: O(1), blocks shared copy-on-write, so writing to the copy
never changes the source) on btrfs/XFS/bcachefs; else ``copy_file_range`` (in-kernel,
and server-side on NFS 4.2); else ``sendfile``; else plain read/write. A :class:`Copier`
remembers what failed so later files go straight to what works: use one per
source/destination filesystem pair (one snapshot or one checkout).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable

from .fsops import write_all

FICLONE = 0x40049409
_CHUNK = 1 << 30
_UNSUPPORTED = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}
)


class Copier:
    """Copies one open file into another (both at offset 0, the destination empty)."""

    def __init__(self) -> None:
        self.reflink = True
        self.copy_range = hasattr(os, "copy_file_range")
        self.sendfile = hasattr(os, "sendfile")

    def copy(self, src: int, dst: int, size: int) -> int:
        """Copy all of ``src`` (``size`` is its expected length); return bytes copied."""
        if self.reflink:
            try:
                fcntl.ioctl(dst, FICLONE, src)
                return os.fstat(dst).st_size
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.reflink = False
        copied = 0
        if self.copy_range:
            try:
                copied += self._loop(os.copy_file_range, src, dst, size)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.copy_range = False
                copied = os.lseek(dst, 0, os.SEEK_CUR)  # both offsets moved alike
        if copied < size and self.sendfile:
            try:
                copied += self._loop(_sendfile, src, dst, size - copied)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.sendfile = False
                copied = os.lseek(dst, 0, os.SEEK_CUR)
        if copied < size:
            # Also the safety net for a filesystem whose in-kernel copy stops early.
            while chunk := os.read(src, 1 << 20):
                write_all(dst, chunk)
                copied += len(chunk)
        return copied

    def copy_at(self, src: int, offset: int, dst: int, size: int) -> int:
        """Copy ``size`` bytes from ``offset`` in ``src`` (a pack); thread-safe on ``src``."""
        copied = 0
        if self.copy_range:
            try:
                while copied < size:
                    count = os.copy_file_range(src, dst, size - copied, offset + copied)
                    if count == 0:
                        break
                    copied += count
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.copy_range = False
                copied = os.lseek(dst, 0, os.SEEK_CUR)
        while copied < size and (chunk := os.pread(src, min(size - copied, 1 << 20),
                                                   offset + copied)):
            write_all(dst, chunk)
            copied += len(chunk)
        return copied

    @staticmethod
    def _loop(step: Callable[[int, int, int], int], src: int, dst: int, size: int) -> int:
        """Call ``step`` until ``size`` bytes moved or end of file; fds' offsets advance."""
        copied = 0
        while copied < size:
            count = step(src, dst, min(size - copied, _CHUNK))
            if count == 0:
                break
            copied += count
        return copied


def _sendfile(src: int, dst: int, count: int) -> int:
    return os.sendfile(dst, src, None, count)
