"""Per-project stat cache, like git's index: an unchanged file is not read again.

It also remembers which entries of each folder the selection kept (git's "untracked
cache"): a folder whose stat and pattern files are unchanged is not listed again.

``cache/<hash of the project folder>.txt`` maps each path to (size, mtime_ns, ctime_ns,
inode, content hash). A file whose stat fields all match is trusted to have that
content. Any write to a file sets its mtime and ctime to the current time, so a change
is missed only when it lands in the same timestamp tick as the cached values: like
git's "racily clean" rule, an entry is kept only when its mtime or ctime is older than
the snapshot's start by :data:`~.fsops.RACY_NS` (covers coarse kernel clocks and 2-second
filesystems); such a file is simply read again next time. The cache is only a hint:
it is written atomically but never fsynced, and a missing object is re-ingested.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from .fsops import settled, write_atomically
from .selection import FileEntry, Listing

log = logging.getLogger("airflow_orchest_jobs.snapshot")


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t"}
_UNESCAPES = {"n": "\n", "t": "\t"}


def _escape(text: str) -> str:
    for plain, escaped in _ESCAPES.items():
        text = text.replace(plain, escaped)
    return text


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: _UNESCAPES.get(m[1], m[1]), text)


class StatCache:
    """What the last snapshot of a project saw, in a plain text file (parsed several
    times faster than JSON, which matters on every create): line 1 the project folder
    (JSON), then ``size mtime ctime inode hash path`` per file and ``D<TAB>stamp<TAB>
    rules stamp<TAB>folder<TAB>files<TAB>links<TAB>folders`` per folder (names joined
    by "/", which no name holds). Implements :class:`~.selection.FolderMemo`."""

    def __init__(self, cache_dir: Path, project_dir: Path, started_ns: int):
        name = hashlib.sha256(os.fsencode(project_dir)).hexdigest()[:32]
        self.file = cache_dir / f"{name}.txt"
        self.project_dir = project_dir
        self.started_ns = started_ns
        self._old: dict[str, str] = {}  # path -> "size mtime ctime ino hash"
        self._new: dict[str, str] = {}
        self._recorded: set[str] = set()  # paths read this time (others: cache hits)
        self._old_dirs: dict[str, tuple[str, str, Listing]] = {}
        self._new_dirs: dict[str, tuple[str, str, Listing]] = {}
        try:
            header, _, body = self.file.read_bytes().decode(
                "utf-8", "surrogateescape").partition("\n")
            if json.loads(header) == str(project_dir):
                self._parse(body)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.info("ignoring unreadable stat cache %s (%s)", self.file, exc)
            self._old, self._old_dirs = {}, {}

    def _parse(self, body: str) -> None:
        for line in body.split("\n"):
            if line.startswith("D\t"):
                _, folder_stamp, rules_stamp, rel, *names = line.split("\t")
                if len(names) != 3:
                    raise ValueError(f"bad folder line {line[:80]!r}")
                self._old_dirs[_unescape(rel)] = (folder_stamp, rules_stamp, Listing(
                    *(tuple(_unescape(n) for n in part.split("/")) if part else ()
                      for part in names)))
            elif line:
                parts = line.split(" ", 5)
                if len(parts) != 6 or len(parts[4]) != 64:
                    raise ValueError(f"bad line {line[:80]!r}")
                self._old[_unescape(parts[5])] = line[: -len(parts[5]) - 1]

    # -- files ------------------------------------------------------------------------

    def lookup(self, entry: FileEntry) -> str | None:
        """The content hash of ``entry`` when its stat fields are unchanged, else None.

        A hit is kept for next time as is; a miss must be ``record``-ed once ingested.
        """
        cached = self._old.get(entry.path)
        if cached is not None and cached[:-65] == (
            f"{entry.size} {entry.mtime_ns} {entry.ctime_ns} {entry.ino}"
        ):
            self._new[entry.path] = cached
            return cached[-64:]
        return None

    def record(self, entry: FileEntry, digest: str) -> None:
        self._recorded.add(entry.path)
        self._new[entry.path] = (
            f"{entry.size} {entry.mtime_ns} {entry.ctime_ns} {entry.ino} {digest}"
        )

    # -- folders (FolderMemo) ---------------------------------------------------------

    def recall(self, rel: str) -> tuple[str, str, Listing] | None:
        return self._old_dirs.get(rel)

    def remember(self, rel: str, stamp: str, rules_stamp: str, listing: Listing,
                 times: tuple[tuple[int, int], ...]) -> None:
        if all(settled(mtime, ctime, self.started_ns) for mtime, ctime in times):
            self._new_dirs[rel] = (stamp, rules_stamp, listing)

    # -- saving -----------------------------------------------------------------------

    def save(self, tmp_dir: Path) -> None:
        """Keep entries safe to trust next time (see module docstring); drop the rest."""
        if (not self._recorded and len(self._new) == len(self._old)
                and self._new_dirs == self._old_dirs):
            return  # nothing changed: no write

        def trusted(key: str) -> bool:
            _size, mtime, ctime, _rest = key.split(" ", 3)
            return settled(int(mtime), int(ctime), self.started_ns)

        lines = [json.dumps(str(self.project_dir))]
        lines += [f"{key} {_escape(path)}" for path, key in self._new.items()
                  if path not in self._recorded or trusted(key)]
        lines += ["\t".join(["D", folder_stamp, rules_stamp, _escape(rel),
                             *("/".join(_escape(n) for n in names) for names in listing)])
                  for rel, (folder_stamp, rules_stamp, listing) in self._new_dirs.items()]
        self.file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.file, "\n".join(lines).encode("utf-8", "surrogateescape"),
                         tmp_dir, durable=False)
