"""Materialise a snapshot as a fresh, writable folder for one pipeline run.

Every file is a private copy (reflink where the filesystem can share blocks
copy-on-write, else an in-kernel copy): hard links would let a step's write change the
snapshot and every other run. Files get exactly the stored mode (0o644 or 0o755) and
folders 0o755, whatever the umask, so step containers running as another user can read
them. Symlinks are recreated verbatim and last (so no copied file is ever written
through a link). The tree is built under a temporary name beside ``dest`` and renamed
into place: a failed checkout leaves nothing at ``dest``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import OrchestError
from .fsops import ensure_mode, umask
from .manifest import FileRecord, LinkRecord, damaged
from .remove import remove_tree

#: Files this big are copied by a thread pool (in-kernel copies overlap well); smaller
#: ones one by one, as creating files, which dominates for them, does not go faster in
#: parallel (measured on ext4: slower).
PARALLEL_FROM = 1 << 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def check_destination(dest: Path) -> None:
    """``dest`` must not exist or be an empty folder (never a link)."""
    try:
        info = os.lstat(dest)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise OrchestError.single(dest, "", "exists and is not a folder; choose a new path")
    if os.listdir(dest):
        raise OrchestError.single(dest, "", "is not empty; choose a new or empty folder")


def materialise(
    copy: Callable[[str, int, int], int],
    files: Sequence[FileRecord],
    links: Sequence[LinkRecord],
    dest: Path,
    *,
    workers: int,
    label: str,
) -> None:
    """Build ``dest``; ``copy(digest, size, fd)`` writes a content (see ObjectStore.reader)."""
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".checkout", dir=dest.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it 0o700
        mask = umask()
        base = os.fspath(staging)
        folders = {path.rsplit("/", 1)[0] for path in
                   [*(f.path for f in files), *(link.path for link in links)] if "/" in path}
        for folder in sorted(_with_parents(folders)):
            os.mkdir(f"{base}/{folder}")
            if mask & 0o755:
                os.chmod(f"{base}/{folder}", 0o755)

        def copy_one(record: FileRecord) -> None:
            dst = os.open(f"{base}/{record.path}", _CREATE, record.mode)
            try:
                copied = copy(record.digest, record.size, dst) if record.size else 0
                ensure_mode(dst, record.mode, mask)
            except FileNotFoundError:
                raise damaged(label, record.path, "stored content is missing") from None
            finally:
                os.close(dst)
            if copied != record.size:
                raise damaged(label, record.path,
                               f"stored content has {copied} bytes, not {record.size}")

        large = [record for record in files if record.size >= PARALLEL_FROM]
        with ThreadPoolExecutor(max(1, workers)) as pool:
            futures = [pool.submit(copy_one, record) for record in large]
            try:
                for record in files:
                    if record.size < PARALLEL_FROM:
                        copy_one(record)
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        for link in links:
            os.symlink(link.target, f"{base}/{link.path}")
        try:
            os.rename(staging, dest)
        except OSError:
            check_destination(dest)  # someone wrote into dest meanwhile: say so
            raise
    except OSError as exc:
        remove_tree(staging)
        raise OrchestError.single(dest, "", f"checkout failed: {exc}") from None
    except BaseException:
        remove_tree(staging)
        raise


def _with_parents(folders: set[str]) -> set[str]:
    every = set()
    for folder in folders:
        while folder and folder not in every:
            every.add(folder)
            folder = folder.rpartition("/")[0]
    return every
