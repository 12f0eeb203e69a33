"""The snapshot store: frozen copies of project folders, each file content kept once.

Layout under ``root`` (the caller passes ``<store_dir>/snapshots``)::

    objects/ab/cdef...   large file contents named by SHA-256, read-only (objects.py)
    packs/<name>.pack    small file contents, many per file (packs.py)
    manifests/<id>.json  one per snapshot (see manifest.py)
    cache/<key>.txt      stat cache per project folder (see statcache.py)
    views/<id>/          read-only checkouts made by ``view`` (for reading, e.g. a frozen
                         job's pipeline at DAG parse time), removed with their snapshot
    tmp/                 files being written; stale ones are removed by gc
    lock                 flock: create/checkout share it, delete/gc take it alone

Crash safety: contents are written to ``tmp/`` and renamed; the manifest is written last,
by an atomic rename, so a killed ``create`` leaves no visible snapshot (only temp files
and unreferenced contents, which ``collect_garbage`` frees). Two processes snapshotting at once both
succeed and share one copy of each content. The lock keeps ``collect_garbage`` from
deleting an object a concurrent ``create`` is about to reference (flock works on local
filesystems and NFSv4).

Durability: the manifest is fsynced (file and folder) before ``create`` returns;
contents (objects and packs) are not fsynced one by one (thousands of fsyncs would cost
more than the copy itself). After a power cut, not a process crash, a snapshot made in
the last seconds may therefore lack content; ``checkout`` then reports it damaged (size
check) rather than producing a wrong tree.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import OrchestError
from ..flock import locked
from .checkout import materialise
from .copy import Copier
from .fsops import write_atomically
from .manifest import (
    FileRecord,
    LinkRecord,
    Manifest,
    Snapshot,
    encode,
    is_valid_id,
    parse,
    parse_header,
)
from .objects import ObjectStore
from .packs import PACK_MAX, PackWriter
from .remove import remove_tree
from .selection import FileEntry, select, unreadable
from .statcache import StatCache

__all__ = ["WARN_BYTES", "DiskUsage", "Snapshot", "SnapshotStore", "SnapshotView",
           "remove_tree"]

log = logging.getLogger("airflow_orchest_jobs.snapshot")

WARN_BYTES = 50_000_000  # Orchest warned above 50 MB
#: Errors of the writing side of a copy into the store (the reading side is the project).
_STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


@dataclass(frozen=True)
class SnapshotView:
    """A snapshot's files in a folder, to read (not write) without a checkout per use."""

    snapshot: Snapshot
    root: Path


@dataclass(frozen=True)
class DiskUsage:
    snapshots: int
    objects: int
    bytes: int  # allocated on disk by everything in the store, as du counts it


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def _workers() -> int:
    return min(8, 2 * (os.cpu_count() or 1))


class SnapshotStore:
    """Create, check out, list, delete and garbage-collect snapshots under ``root``."""

    def __init__(self, root: Path, *, warn_bytes: int = WARN_BYTES, workers: int | None = None):
        self.root = Path(root)
        self.warn_bytes = warn_bytes
        self.workers = workers or _workers()
        self.objects = ObjectStore(self.root)
        self.manifests = self.root / "manifests"
        self.cache_dir = self.root / "cache"
        self.tmp = self.root / "tmp"
        self.views = self.root / "views"

    # -- locking ----------------------------------------------------------------------

    def _store_error(self, exc: OSError) -> OrchestError:
        """A failure to write the store itself (full, read-only), not the project's fault."""
        return OrchestError.single(
            self.root, "", f"cannot write to the snapshot store ({exc.strerror}); free space "
            "or fix its permissions, or point [orchest_jobs] store_dir elsewhere")

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        try:
            for folder in (self.objects.dir, self.objects.packs, self.manifests,
                           self.cache_dir, self.tmp):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._store_error(exc) from None
        with locked(self.root / "lock", shared=not exclusive, mode=0o666,
                    on_error=self._store_error):
            yield

    # -- create -----------------------------------------------------------------------

    def create(self, project_dir: Path) -> Snapshot:
        """Snapshot the files git would track in ``project_dir`` (see selection.py)."""
        project = Path(os.path.abspath(project_dir))
        if not project.is_dir():
            raise OrchestError.single(project, "", "is not a folder; give a project folder")
        started = time.time_ns()
        try:
            return self._create(project, started)
        except OSError as exc:  # reading the project raises OrchestError: this is the store
            raise self._store_error(exc) from None

    def _create(self, project: Path, started: int) -> Snapshot:
        with self._locked(exclusive=False):
            cache = StatCache(self.cache_dir, project, started)
            selection = select(project, cache)
            self.objects.refresh()
            records: list[FileRecord] = []
            todo: list[FileEntry] = []
            for entry in selection.files:
                digest = cache.lookup(entry)
                if digest is not None and self.objects.has(digest, entry.size):
                    records.append(FileRecord(entry.path, entry.mode, entry.size, digest))
                else:
                    todo.append(entry)
            records.extend(self._ingest_all(project, todo, cache))
            links = [LinkRecord(link.path, link.target) for link in selection.links]
            manifest, data = encode(project, records, links)
            write_atomically(self._manifest_path(manifest.snapshot.id), data, self.tmp,
                             durable=True)
            cache.save(self.tmp)
        snapshot = manifest.snapshot
        if snapshot.total_bytes > self.warn_bytes:
            log.warning(
                "snapshot %s of %s holds %.1f MB in %d files (over %.0f MB): list big "
                "files the jobs do not need in .orchestignore or .gitignore",
                snapshot.id, project, snapshot.total_bytes / 1e6, snapshot.file_count,
                self.warn_bytes / 1e6,
            )
        return snapshot

    def _ingest_all(
        self, project: Path, todo: list[FileEntry], cache: StatCache
    ) -> list[FileRecord]:
        """Store the contents of ``todo``: large files in a thread pool (hashing and
        in-kernel copies release the GIL), meanwhile small ones into one pack."""
        base = os.fspath(project)
        self.objects.copier = Copier()  # learns what this project's filesystem supports

        def ingest(entry: FileEntry, pack: PackWriter | None = None) -> FileRecord | None:
            path = f"{base}/{entry.path}"
            try:
                fd = os.open(path, _OPEN)
            except FileNotFoundError:
                log.info("%s vanished while being snapshotted; left out", path)
                return None
            except OSError as exc:
                raise unreadable(path, exc) from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise OrchestError.single(
                        path, "", "changed while being snapshotted; try again")
                digest, size = self.objects.ingest(fd, info.st_size, pack)
            except OSError as exc:
                if exc.errno in _STORE_ERRNOS:
                    raise self._store_error(exc) from None
                raise unreadable(path, exc) from None
            finally:
                os.close(fd)
            cache.record(entry, digest)
            return FileRecord(entry.path, entry.mode, size, digest)

        large = [entry for entry in todo if entry.size > PACK_MAX]
        small = [entry for entry in todo if entry.size <= PACK_MAX]
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(ingest, entry) for entry in large]
            try:
                results = []
                if small:
                    with self.objects.packing() as pack:
                        results = [ingest(entry, pack) for entry in small]
                results += [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [record for record in results if record is not None]

    # -- reading ----------------------------------------------------------------------

    def _manifest_path(self, snapshot_id: str) -> Path:
        return self.manifests / f"{snapshot_id}.json"

    def _unknown(self, snapshot_id: str) -> OrchestError:
        return OrchestError.single(
            self.root, f"snapshot {snapshot_id}",
            "no such snapshot; `airflow-orchest-jobs snapshot list --store "
            f"{self.root}` shows the ids",
        )

    def _manifest(self, snapshot_id: str) -> Manifest:
        path = self._manifest_path(snapshot_id)
        if not is_valid_id(snapshot_id):
            raise self._unknown(snapshot_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._unknown(snapshot_id) from None
        return parse(data, snapshot_id, path)

    def exists(self, snapshot_id: str) -> bool:
        return is_valid_id(snapshot_id) and self._manifest_path(snapshot_id).is_file()

    def get(self, snapshot_id: str) -> Snapshot:
        return self._manifest(snapshot_id).snapshot

    def list(self) -> list[Snapshot]:
        """All snapshots, oldest first (reads only each manifest's first line)."""
        snapshots = []
        for path in self._manifest_files():
            try:
                with path.open("rb") as handle:
                    first = handle.readline()
                snapshots.append(parse_header(first, path.stem, path))
            except FileNotFoundError:
                continue  # deleted meanwhile
            except OrchestError as exc:
                log.warning("%s", exc)
        return sorted(snapshots, key=lambda item: (item.created, item.id))

    def _manifest_files(self) -> builtins.list[Path]:  # list: the method above
        try:
            names = os.listdir(self.manifests)
        except FileNotFoundError:
            return []
        return [self.manifests / name for name in names
                if name.endswith(".json") and is_valid_id(name[:-5])]

    # -- checkout ---------------------------------------------------------------------

    def checkout(self, snapshot_id: str, dest: Path) -> None:
        """Materialise a snapshot into ``dest`` (absent or empty) for one run."""
        with self._locked(exclusive=False):
            manifest = self._manifest(snapshot_id)
            with self.objects.reader() as copy:
                materialise(copy, manifest.files, manifest.links, Path(dest),
                            workers=self.workers, label=f"snapshot {snapshot_id}")

    def view(self, snapshot_id: str) -> SnapshotView:
        """The snapshot's files under ``views/<id>/``, checked out once and then reused."""
        folder = self.views / snapshot_id
        if not folder.is_dir():
            try:
                self.checkout(snapshot_id, folder)
            except OrchestError:
                if not folder.is_dir():  # else another process made it meanwhile
                    raise
        return SnapshotView(self.get(snapshot_id), folder)

    # -- deleting ---------------------------------------------------------------------

    def delete(self, snapshot_id: str) -> None:
        """Forget a snapshot; its contents stay until ``collect_garbage``."""
        if not is_valid_id(snapshot_id):
            raise self._unknown(snapshot_id)
        with self._locked(exclusive=True):
            try:
                self._manifest_path(snapshot_id).unlink()
            except FileNotFoundError:
                raise self._unknown(snapshot_id) from None
            remove_tree(self.views / snapshot_id)

    def collect_garbage(self) -> int:
        """Delete contents no snapshot references and stale temp files; bytes freed."""
        with self._locked(exclusive=True):
            referenced: set[str] = set()
            for path in self._manifest_files():
                manifest = parse(path.read_bytes(), path.stem, path)
                referenced.update(record.digest for record in manifest.files)
            freed = self.objects.collect(referenced)
            for entry in os.scandir(self.tmp):
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
            live = {path.stem for path in self._manifest_files()}
            for entry in _scandir(self.views):
                if entry.name not in live:  # a view whose snapshot was deleted meanwhile
                    remove_tree(entry.path)
        return freed

    def disk_usage(self) -> DiskUsage:
        allocated = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    allocated += os.lstat(os.path.join(folder, name)).st_blocks * 512
        return DiskUsage(
            snapshots=len(self._manifest_files()),
            objects=self.objects.count(),
            bytes=allocated,
        )
