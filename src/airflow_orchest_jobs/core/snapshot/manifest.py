"""A snapshot's manifest: its files in one canonical text form, hashed into its id.

``manifests/<id>.json`` holds JSON lines: line 1 the header (project folder, creation
time, counts), then one line per path in sorted order, ``{"hash", "mode", "path",
"size"}`` for a file or ``{"link", "path"}`` for a symlink (target text verbatim). The id
is the start of the SHA-256 of the whole file, so a damaged manifest is detected on
read, and two snapshots of the same project get different ids (the creation time
differs): deleting one never takes away another's files. ``list`` reads line 1 only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import OrchestError

FORMAT = 1
ID_LENGTH = 20
_ID = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}\Z")
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Snapshot:
    """One stored snapshot, as ``SnapshotStore.create`` and ``list`` return it."""

    id: str
    project_dir: Path
    created: datetime
    file_count: int
    link_count: int
    total_bytes: int


class FileRecord(NamedTuple):
    path: str
    mode: int
    size: int
    digest: str


class LinkRecord(NamedTuple):
    path: str
    target: str


@dataclass(frozen=True)
class Manifest:
    snapshot: Snapshot
    files: tuple[FileRecord, ...]
    links: tuple[LinkRecord, ...]


def is_valid_id(text: str) -> bool:
    return bool(_ID.match(text))


def _dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def encode(
    project_dir: Path, files: Iterable[FileRecord], links: Iterable[LinkRecord]
) -> tuple[Manifest, bytes]:
    """The manifest of a new snapshot taken now, and its canonical bytes."""
    files = tuple(sorted(files, key=lambda item: item.path))
    links = tuple(sorted(links, key=lambda item: item.path))
    created = datetime.now(timezone.utc)
    header = {
        "bytes": sum(item.size for item in files),
        "created": created.isoformat(),
        "files": len(files),
        "format": FORMAT,
        "links": len(links),
        "project_dir": str(project_dir),
    }
    quote = encode_basestring_ascii  # what json.dumps uses; one call per path is cheap
    entries = sorted(
        [
            *((f.path, f'{{"hash":"{f.digest}","mode":{f.mode},"path":{quote(f.path)},'
                       f'"size":{f.size}}}') for f in files),
            *((link.path, f'{{"link":{quote(link.target)},"path":{quote(link.path)}}}')
              for link in links),
        ]
    )
    lines = [_dump(header), *(line for _, line in entries)]
    data = ("\n".join(lines) + "\n").encode("ascii")
    snapshot_id = hashlib.sha256(data).hexdigest()[:ID_LENGTH]
    return Manifest(_snapshot(snapshot_id, header), files, links), data


def _snapshot(snapshot_id: str, header: dict[str, Any]) -> Snapshot:
    return Snapshot(
        id=snapshot_id,
        project_dir=Path(header["project_dir"]),
        created=datetime.fromisoformat(header["created"]),
        file_count=int(header["files"]),
        link_count=int(header["links"]),
        total_bytes=int(header["bytes"]),
    )


def damaged(source: str | Path, where: str, what: str) -> OrchestError:
    return OrchestError.single(
        source, where, f"{what}: the snapshot is damaged; delete it and create a new one"
    )


def parse_header(line: bytes, snapshot_id: str, source: str | Path) -> Snapshot:
    try:
        header = json.loads(line)
        if header.get("format") != FORMAT:
            raise damaged(source, "line 1", f"unknown format {header.get('format')!r}")
        return _snapshot(snapshot_id, header)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise damaged(source, "line 1", f"unreadable header ({exc})") from None


def _check_path(path: object) -> bool:
    """Relative, no empty, "." or ".." part: a checkout never writes outside its folder."""
    if not isinstance(path, str) or not path or "\0" in path:
        return False
    wrapped = f"/{path}/"
    return not ("//" in wrapped or "/./" in wrapped or "/../" in wrapped)


def parse(data: bytes, snapshot_id: str, source: str | Path) -> Manifest:
    """Read a whole manifest, checking it hashes to its id and every path stays inside."""
    if hashlib.sha256(data).hexdigest()[:ID_LENGTH] != snapshot_id:
        raise damaged(source, "", "content does not match its id")
    lines = data.splitlines()
    if not lines:
        raise damaged(source, "", "empty file")
    snapshot = parse_header(lines[0], snapshot_id, source)
    try:  # one JSON document: several times faster than a json.loads per line
        entries = json.loads(b"[" + b",".join(lines[1:]) + b"]")
    except ValueError as exc:
        raise damaged(source, "", f"not JSON lines ({exc})") from None
    files: list[FileRecord] = []
    links: list[LinkRecord] = []
    for number, entry in enumerate(entries, start=2):
        try:
            path = entry["path"]
            if not _check_path(path):
                raise ValueError(f"unsafe path {path!r}")
            if "link" in entry:
                target = entry["link"]
                if not isinstance(target, str) or not target or "\0" in target:
                    raise ValueError(f"bad link target {target!r}")
                links.append(LinkRecord(path, target))
            else:
                mode, size, digest = entry["mode"], entry["size"], entry["hash"]
                if mode not in (0o644, 0o755) or not isinstance(size, int) or size < 0:
                    raise ValueError("bad mode or size")
                if not isinstance(digest, str) or not _DIGEST.match(digest):
                    raise ValueError(f"bad hash {digest!r}")
                files.append(FileRecord(path, mode, size, digest))
        except (ValueError, KeyError, TypeError) as exc:
            raise damaged(source, f"line {number}", str(exc)) from None
    link_paths = {link.path for link in links}
    for record in files:
        parent = record.path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in link_paths:
                raise damaged(source, record.path, "path goes through a symlink")
    return Manifest(snapshot, tuple(files), tuple(links))
