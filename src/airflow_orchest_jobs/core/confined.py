"""Open files and folders below a directory descriptor without ever following a link.

A run folder is written by steps while people view it, so a name checked and then
opened again can be swapped for a symlink in between. Here every component is opened
with ``openat`` (``dir_fd``) and ``O_NOFOLLOW`` from the descriptor of its parent, the
final file with ``O_NONBLOCK`` (a FIFO never blocks the caller), and the kind is checked
with ``fstat`` on what was opened: what is checked is what is read. Callers serve from
the descriptor, never from the path again.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

#: Longest path component in bytes (NAME_MAX of Linux file systems).
MAX_COMPONENT = 255
#: Longest relative path (characters) and deepest one (components) a caller may ask for.
MAX_PATH = 4096
MAX_DEPTH = 64
CHUNK = 64 * 1024

_FOLDER_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """Not there, not a plain name, a link, or not the kind asked for (a web 404)."""


@dataclass(frozen=True)
class Entry:
    name: str
    #: ``folder``, ``file`` (regular), ``link`` (symlink, never followed) or ``other``
    #: (FIFO, socket, device).
    kind: str
    size: int


def check_name(name: str) -> str:
    """``name`` if it is one plain path component, else Refused."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise Refused(f"not a plain name: {name[:80]!r}")
    try:
        size = len(os.fsencode(name))
    except (UnicodeError, ValueError):
        raise Refused("a name the file system cannot spell") from None
    if size > MAX_COMPONENT:
        raise Refused(f"a name longer than {MAX_COMPONENT} bytes")
    return name


def components(relative: str, *, folder: bool = False) -> list[str]:
    """The names of a ``/``-separated relative path; Refused for anything but plain names.

    With ``folder``, ``""`` is the top and one trailing ``/`` is allowed. No
    normalisation: ``a//b``, ``./a``, ``a/..`` and ``/a`` are refused, not rewritten.
    """
    if len(relative) > MAX_PATH:
        raise Refused(f"a path longer than {MAX_PATH} characters")
    if folder:
        if relative == "":
            return []
        relative = relative[:-1] if relative.endswith("/") else relative
    names = relative.split("/")
    if len(names) > MAX_DEPTH:
        raise Refused(f"a path deeper than {MAX_DEPTH} folders")
    return [check_name(name) for name in names]


def open_top(path: str | os.PathLike[str]) -> int:
    """A descriptor of the trusted top folder (it may itself be reached through links)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"no folder {os.fspath(path)!r}: {exc.strerror}") from None


def open_folder(top_fd: int, names: Sequence[str]) -> int:
    """A new descriptor of the folder ``names`` below ``top_fd``, no link followed."""
    fd = os.dup(top_fd)
    try:
        for name in names:
            check_name(name)
            try:
                child = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:  # ELOOP: a link; ENOTDIR: a file; ENOENT: gone
                raise Refused(f"no folder {name!r}: {exc.strerror}") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_file(top_fd: int, names: Sequence[str]) -> tuple[int, os.stat_result]:
    """A descriptor and ``fstat`` of the regular file ``names`` below ``top_fd``."""
    if not names:
        raise Refused("no file name")
    name = check_name(names[-1])
    folder = open_folder(top_fd, names[:-1])
    try:
        try:
            # Not even opened when it is plainly not a regular file (a device, a FIFO);
            # the fstat below is the check that counts.
            if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                raise Refused(f"{name!r} is not a regular file")
            fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
        except OSError as exc:
            raise Refused(f"no file {name!r}: {exc.strerror}") from None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{name!r} is not a regular file")
    return fd, info


def read_chunks(fd: int, limit: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """At most ``limit`` bytes of ``fd`` from its start. Takes ``fd`` over: closed when
    read to the end, or when the iterator is dropped unread (a client gone early)."""
    return _chunks(os.fdopen(fd, "rb", buffering=0), limit, chunk)


def _chunks(file: BinaryIO, limit: int, chunk: int) -> Iterator[bytes]:
    with file:
        offset = 0
        while offset < limit:
            data = os.pread(file.fileno(), min(chunk, limit - offset), offset)
            if not data:
                return
            offset += len(data)
            yield data


def list_folder(fd: int, limit: int | None = None) -> list[Entry]:
    """The entries of the open folder ``fd`` (links reported as links, not followed)."""
    entries = []
    with os.scandir(fd) as found:
        for item in found:
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:  # removed while listing
                continue
            mode = info.st_mode
            kind = ("folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
                    else "link" if stat.S_ISLNK(mode) else "other")
            entries.append(Entry(item.name, kind, info.st_size if kind == "file" else 0))
            if limit is not None and len(entries) >= limit:
                break
    return entries
