"""Small filesystem primitives the store relies on for crash safety and exact modes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

#: A file whose mtime or ctime is older than this much is "settled": any later write
#: gives it a new timestamp, whatever the clock tick or filesystem granularity (FAT: 2 s).
RACY_NS = 2_000_000_000


def settled(mtime_ns: int, ctime_ns: int, now_ns: int) -> bool:
    """Whether a change to the file after ``now_ns`` is sure to show in its stat."""
    return min(mtime_ns, ctime_ns) < now_ns - RACY_NS


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (POSIX needs the folder itself synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, tmp_dir: Path, *, durable: bool) -> None:
    """Readers see the old file or the whole new one, never a part (temp file + rename).

    ``durable`` also fsyncs the data and the rename, so it survives a power cut.
    """
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes | bytearray) -> None:
    """os.write may write less than asked (signals, pipes); loop until all is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def umask() -> int:
    """The process umask, read without changing it (Linux); else set and restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def ensure_mode(fd: int, mode: int, mask: int) -> None:
    """Give a file we just created exactly ``mode`` when the umask ``mask`` stripped bits."""
    if mode & mask:
        os.fchmod(fd, mode)
