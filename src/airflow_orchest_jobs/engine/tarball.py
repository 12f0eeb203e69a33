"""Docker build contexts as tar streams: every file owned by root, readable by every user.

Images run their steps as another user than the one who built them; a host's umask must
not decide what that user can read.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    """A file made of ``data``, owned by root."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def root_readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A tar member owned by root and readable by every user, whatever the host's umask."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir() or info.mode & 0o100:
        info.mode = 0o755
    elif not info.issym():
        info.mode = 0o644
    return info


def add_tree(tar: tarfile.TarFile, name: str, folder: Path) -> None:
    """A host folder, owned by root and readable by every user."""
    tar.add(str(folder), arcname=name, filter=root_readable)
