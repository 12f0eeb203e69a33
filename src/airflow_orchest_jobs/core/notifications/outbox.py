"""The outbox: one file per delivery in the shared store, kept until a receiver answers 2xx.

Orchest's ``deliveries`` table, as files (the plugin has no database of its own, and the
store is already shared by every worker)::

    store_dir/notifications/
      outbox/<delivery id>.json    pending: the event, the webhook's conn id, attempts
      delivered/<delivery id>      answered 2xx (empty; pruned after KEEP_DELIVERED)
      locks/<delivery id>.lock     held while one process sends it

A delivery is written once, atomically (a temporary file linked into place: a second
emission of the same event finds it, or its ``delivered`` marker, and adds nothing), by
the task that decides the event, before anything is sent. A failed attempt reschedules
it ``min(2**n, 3600)`` seconds later (Orchest's ``Delivery.reschedule``), without end;
``delivery_id`` never changes, so receivers dedupe by ``X-Orchest-Delivery``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

#: Orchest's cap on the retry delay (seconds).
MAX_BACKOFF = 3600
#: How long a ``delivered`` marker keeps a late duplicate emission from sending again.
KEEP_DELIVERED = 7 * 24 * 3600
#: Format of a delivery file (bumped if the fields change incompatibly).
FORMAT = 1


def backoff(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones (Orchest's rule)."""
    return int(min(2 ** attempts, MAX_BACKOFF))


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook, as kept in the outbox."""

    delivery_id: str
    event_id: str
    event_type: str
    #: The webhook's Airflow connection id (URL and secret are read when sending).
    conn_id: str
    #: The event payload (Orchest's ``notification_payload``), built when it happened.
    event: Mapping[str, Any]
    created_at: float
    scheduled_at: float
    attempts: int = 0
    #: SCHEDULED, then RESCHEDULED after a failed attempt (Orchest's statuses).
    status: str = "SCHEDULED"
    last_error: str = ""
    format: int = FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Delivery:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("a delivery must be a JSON object")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def failed(self, error: str, now: float) -> Delivery:
        """The delivery after a failed attempt: rescheduled with Orchest's backoff."""
        attempts = self.attempts + 1
        return replace(self, attempts=attempts, status="RESCHEDULED",
                       scheduled_at=now + backoff(attempts), last_error=error[:500])


class Outbox:
    """The outbox folder of one store."""

    def __init__(self, store_dir: Path):
        self.root = Path(store_dir) / "notifications"
        self.pending = self.root / "outbox"
        self.delivered = self.root / "delivered"
        self.locks = self.root / "locks"
        #: Parsed pending files by name, with the (mtime, size) they were read at: a loop
        #: that keeps this object reads each file once until it changes.
        self._parsed: dict[str, tuple[tuple[int, int], Delivery]] = {}
        #: Added without ``sync``: flushed by :meth:`sync`.
        self._unsynced: list[Path] = []

    def _ensure(self) -> None:
        for folder in (self.pending, self.delivered, self.locks):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, delivery_id: str) -> Path:
        return self.pending / f"{delivery_id}.json"

    def add(self, delivery: Delivery, *, sync: bool = True) -> bool:
        """Write the delivery once; False when it is already pending or delivered.

        ``sync`` fsyncs the file and the folder (a batch may pass False and call
        :meth:`sync` once at its end).
        """
        self._ensure()
        if (self.delivered / delivery.delivery_id).exists():
            return False
        final = self._path(delivery.delivery_id)
        if final.exists():
            return False
        fd, tmp = tempfile.mkstemp(dir=self.pending, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(delivery.to_bytes())
                if sync:
                    handle.flush()
                    os.fsync(handle.fileno())
            try:
                os.link(tmp, final)  # atomic, and refuses to replace: written once
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if (self.delivered / delivery.delivery_id).exists():  # delivered meanwhile
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            return False
        if sync:
            _fsync_dir(self.pending)
        else:
            self._unsynced.append(final)
        return True

    def sync(self) -> None:
        """Flush a batch of unsynced adds to disk: each file, then the folder once."""
        for path in self._unsynced:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if self._unsynced:
            _fsync_dir(self.pending)
        self._unsynced.clear()

    def get(self, delivery_id: str) -> Delivery | None:
        try:
            return Delivery.from_bytes(self._path(delivery_id).read_bytes())
        except FileNotFoundError:
            return None

    def all(self) -> list[Delivery]:
        """Every pending delivery (unreadable files skipped), oldest schedule first."""
        found = []
        seen = set()
        try:
            entries = list(os.scandir(self.pending))
        except FileNotFoundError:
            return []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                stat = entry.stat()
                key = (stat.st_mtime_ns, stat.st_size)
                cached = self._parsed.get(name)
                if cached is None or cached[0] != key:
                    cached = (key, Delivery.from_bytes((self.pending / name).read_bytes()))
                    self._parsed[name] = cached
            except (OSError, ValueError, TypeError):
                continue
            seen.add(name)
            found.append(cached[1])
        for gone in set(self._parsed) - seen:
            del self._parsed[gone]
        return sorted(found, key=lambda d: (d.scheduled_at, d.created_at))

    def due(self, now: float | None = None) -> list[Delivery]:
        moment = time.time() if now is None else now
        return [d for d in self.all() if d.scheduled_at <= moment]

    @contextlib.contextmanager
    def claimed(self, delivery_id: str) -> Iterator[Delivery | None]:
        """The pending delivery, locked against other senders (None: gone or taken)."""
        self._ensure()
        lock = self.locks / f"{delivery_id}.lock"
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield self.get(delivery_id)
        finally:
            os.close(fd)

    def mark_delivered(self, delivery_id: str) -> None:
        """Answered 2xx: a marker first (a late duplicate emission then adds nothing),
        then the pending file and its lock go."""
        self._ensure()
        (self.delivered / delivery_id).touch()
        with contextlib.suppress(FileNotFoundError):
            self._path(delivery_id).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.locks / f"{delivery_id}.lock").unlink()

    def reschedule(self, delivery: Delivery, error: str, now: float | None = None) -> Delivery:
        """Record a failed attempt (atomic replace of the pending file)."""
        moment = time.time() if now is None else now
        updated = delivery.failed(error, moment)
        path = self._path(delivery.delivery_id)
        if not path.exists():  # delivered by another process meanwhile
            return updated
        fd, tmp = tempfile.mkstemp(dir=self.pending, prefix=".upd-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(updated.to_bytes())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return updated

    def is_delivered(self, delivery_id: str) -> bool:
        return (self.delivered / delivery_id).exists()

    def prune(self, now: float | None = None) -> int:
        """Forget ``delivered`` markers older than KEEP_DELIVERED; how many went."""
        moment = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.delivered))
        except FileNotFoundError:
            return 0
        for entry in entries:
            with contextlib.suppress(OSError):
                if moment - entry.stat().st_mtime > KEEP_DELIVERED:
                    os.unlink(entry.path)
                    removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
