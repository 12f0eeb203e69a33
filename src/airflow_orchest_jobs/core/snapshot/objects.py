"""Content-addressed file contents: each distinct content stored once, found by SHA-256.

Contents over :data:`~.packs.PACK_MAX` are single read-only files (0o444)
``objects/<2 hex>/<62 hex>``; smaller ones live in pack files (see packs.py). Everything
is written under ``tmp/`` first and renamed into place, so a killed writer leaves at
most a stray temp file (garbage collection removes it), never a partial object. Two
writers of the same large content both succeed (renaming over an identical object is
harmless); packs are written under an exclusive lock, after re-reading the other
packs' indexes, so concurrent snapshots never store a small content twice. A large
file is hashed first (a content already stored is not copied again), then copied in
the kernel; unless its stat proves it unchanged since before hashing, the copy is
hashed again and named by itself, so an object always matches its name. Nothing here
is fsynced (see store.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .copy import Copier
from .fsops import settled, write_all
from .packs import PACK_MAX, SUFFIX, Location, PackWriter, read_index

HASH = "sha256"  # SHA-NI makes it the fastest hashlib digest on current x86 and ARM
#: Merge all packs into one at garbage collection when there are more than this many.
MAX_PACKS = 16


def digest_fd(fd: int) -> tuple[str, int]:
    """Hash a whole open file from its start: (hex digest, bytes read).

    Large reads with the GIL released, so a thread pool hashes files in parallel.
    """
    os.lseek(fd, 0, os.SEEK_SET)
    digest = hashlib.new(HASH)
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    total = 0
    while count := os.readv(fd, [buffer]):
        digest.update(view[:count])
        total += count
    return digest.hexdigest(), total


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    while chunk := os.read(fd, max(size, 1 << 16)):
        parts.append(chunk)
    return b"".join(parts)


class ObjectStore:
    """The contents half of a snapshot store (``objects/`` and ``packs/``)."""

    def __init__(self, root: Path):
        self.dir = root / "objects"
        self.packs = root / "packs"
        self.tmp = root / "tmp"
        self.copier = Copier()
        self._packs: dict[str, list[tuple[str, int, int]]] = {}
        self._packed: dict[str, Location] = {}

    # -- lookup -----------------------------------------------------------------------

    def path(self, digest: str) -> str:
        """Where a large (single-file) content lives."""
        return f"{self.dir}/{digest[:2]}/{digest[2:]}"

    def refresh(self) -> None:
        """Load the indexes of packs other processes added since the last look."""
        try:
            names = {n for n in os.listdir(self.packs) if n.endswith(SUFFIX)}
        except FileNotFoundError:
            names = set()
        if set(self._packs) - names:  # garbage collection replaced some: start over
            self._packs, self._packed = {}, {}
        for name in names - set(self._packs):
            self._add_pack(name, read_index(self.packs / name))

    def _add_pack(self, name: str, records: list[tuple[str, int, int]]) -> None:
        self._packs[name] = records
        for digest, offset, size in records:
            self._packed[digest] = Location(name, offset, size)

    def has(self, digest: str, size: int) -> bool:
        """Whether the store holds this content (``size`` says where to look)."""
        if size <= PACK_MAX:
            return digest in self._packed
        return os.path.exists(self.path(digest))

    # -- writing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def packing(self) -> Iterator[PackWriter]:
        """A new pack for this snapshot's small contents, published on exit."""
        self.packs.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.packs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.refresh()  # another process may have stored some of ours meanwhile
            writer = PackWriter(self.tmp)
            try:
                yield writer
            except BaseException:
                writer.abort()
                raise
            name = writer.finish(self.packs)
            if name is not None:
                self._add_pack(name, writer.records)
        finally:
            os.close(lock)

    def ingest(self, src: int, size: int, pack: PackWriter | None = None) -> tuple[str, int]:
        """Store the content of open file ``src`` (``size`` from fstat); digest and size.

        Small contents go to ``pack`` when given, large ones become single files.
        """
        if size <= PACK_MAX:
            data = _read_all(src, size)
            digest = hashlib.new(HASH, data).hexdigest()
            if pack is not None and len(data) <= PACK_MAX:
                if not self.has(digest, len(data)) and digest not in pack:
                    pack.add(digest, data)
            elif not os.path.exists(self.path(digest)):
                # No pack at hand (the file shrank since it was listed as large): a
                # single file. Later snapshots may pack it again; both copies are valid.

                def put(fd: int) -> str:
                    write_all(fd, data)
                    return digest

                self._write(put)
            return digest, len(data)
        # Hash the project file first: a content stored before costs no copy at all.
        started = time.time_ns()
        before = os.fstat(src)
        digest, hashed = digest_fd(src)
        if os.path.exists(self.path(digest)):
            return digest, hashed
        copied = 0

        def fill(fd: int) -> str:
            nonlocal copied
            os.lseek(src, 0, os.SEEK_SET)
            copied = self.copier.copy(src, fd, size)
            after = os.fstat(src)
            stamps = (before.st_mtime_ns, before.st_ctime_ns)
            unchanged = (after.st_mtime_ns, after.st_ctime_ns) == stamps and (
                before.st_size == after.st_size == hashed == copied)
            if unchanged and settled(*stamps, started):
                return digest
            return digest_fd(fd)[0]  # it may have changed under us: name the copy by itself

        return self._write(fill), copied

    def _write(self, fill: Callable[[int], str]) -> str:
        """Fill a temp file, make it read-only and rename it to the digest ``fill`` returns."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            try:
                digest = fill(fd)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            final = self.path(digest)
            try:
                os.replace(tmp, final)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest

    # -- reading ----------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[[str, int, int], int]]:
        """``copy(digest, size, dst_fd) -> bytes copied``, safe to call from threads.

        Raises FileNotFoundError for a content the store does not hold.
        """
        self.refresh()
        copier = Copier()  # learns what the destination's filesystem supports
        fds: dict[str, int] = {}
        guard = threading.Lock()

        def pack_fd(name: str) -> int:
            with guard:
                if name not in fds:
                    fds[name] = os.open(self.packs / name, os.O_RDONLY | os.O_CLOEXEC)
                return fds[name]

        def copy(digest: str, size: int, dst: int) -> int:
            where = self._packed.get(digest)
            if where is not None:
                if where.size != size:
                    return where.size
                return copier.copy_at(pack_fd(where.pack), where.offset, dst, size)
            src = os.open(self.path(digest), os.O_RDONLY | os.O_CLOEXEC)
            try:
                return copier.copy(src, dst, size)
            finally:
                os.close(src)

        try:
            yield copy
        finally:
            for fd in fds.values():
                os.close(fd)

    # -- garbage collection -----------------------------------------------------------

    def _loose(self) -> Iterator[tuple[str, os.stat_result]]:
        try:
            fanout = list(os.scandir(self.dir))
        except FileNotFoundError:
            return
        for folder in fanout:
            if folder.is_dir(follow_symlinks=False):
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        yield folder.name + entry.name, entry.stat(follow_symlinks=False)

    def count(self) -> int:
        """Stored contents (a content in two places would count twice)."""
        self.refresh()
        return sum(1 for _ in self._loose()) + sum(len(r) for r in self._packs.values())

    def collect(self, referenced: set[str]) -> int:
        """Delete every content not in ``referenced``; bytes freed. Caller locks out writers."""
        freed = 0
        for digest, info in self._loose():
            if digest not in referenced:
                os.unlink(self.path(digest))
                freed += info.st_size
        self.refresh()
        dead, rewrite = [], []
        for name, records in self._packs.items():
            live = sum(1 for digest, _, _ in records if digest in referenced)
            if live == 0:
                dead.append(name)
            elif live < len(records) or len(self._packs) > MAX_PACKS:
                rewrite.append(name)
        new = self._repack(rewrite, referenced) if rewrite else None
        for name in dead + rewrite:
            if name != new:
                freed += os.stat(self.packs / name).st_size
                os.unlink(self.packs / name)
        if new is not None:
            freed -= os.stat(self.packs / new).st_size
        self.refresh()
        return freed

    def _repack(self, names: list[str], referenced: set[str]) -> str | None:
        """One new pack with the live contents of packs ``names``."""
        writer = PackWriter(self.tmp)
        try:
            for name in names:
                fd = os.open(self.packs / name, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    for digest, offset, size in self._packs[name]:
                        if digest in referenced and digest not in writer:
                            writer.add(digest, os.pread(fd, size, offset))
                finally:
                    os.close(fd)
        except BaseException:
            writer.abort()
            raise
        return writer.finish(self.packs)
