"""Which files of a project go into a snapshot: exactly what git would track, plus two knobs.

Git's rules, from every ``.gitignore`` in the tree (nested files, ``!`` negation,
anchoring, directory patterns, ``**``): a directory git excludes is not entered, so
nothing below it can be re-included by ``.gitignore`` patterns. A ``.gitignore`` that is
a symlink is not read (git does not follow it either); parent folders of the project,
``.git/info/exclude`` and the user's global excludes are not consulted.

Always left out, whatever the patterns say: ``.git`` (at any depth), ``.ipynb_checkpoints/``
(at any depth), ``.orchest/pipelines/*/data/``, ``.orchest/pipelines/*/logs/`` and
``.orchest/plasma.sock`` (Orchest's runtime files).

Two optional files at the project root, both in gitignore syntax with paths relative to
the root:

``.orchestinclude``
    Files (or folders: everything inside) added even though git ignores them, e.g. a
    credentials file kept out of git that a job needs. A ``!`` line withdraws a match.
    Anchor patterns (``/config/credentials.json``): one without a slash can match at
    any depth, so every git-ignored folder (``node_modules/``...) must be looked into.
``.orchestignore``
    More files or folders left out, even when git tracks them or ``.orchestinclude``
    names them (it wins over both). A ``!`` line withdraws a match.

Never follows a symlink: a link is kept as a link with its target text verbatim.
Sockets, fifos and devices are skipped. Empty folders are not kept (git keeps none).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from ..errors import OrchestError
from .patterns import Rules

log = logging.getLogger("airflow_orchest_jobs.snapshot")

INCLUDE_FILE = ".orchestinclude"
IGNORE_FILE = ".orchestignore"
ALWAYS_LEFT_OUT = (
    ".git",
    ".ipynb_checkpoints/",
    "/.orchest/pipelines/*/data/",
    "/.orchest/pipelines/*/logs/",
    "/.orchest/plasma.sock",
)
_LEFT_OUT = Rules(ALWAYS_LEFT_OUT, "<always left out>")
#: Only entries with these names can be left out by ALWAYS_LEFT_OUT (a cheap pre-check;
#: it holds because no pattern there ends in a wildcard).
_LEFT_OUT_NAMES = frozenset(p.rstrip("/").rsplit("/", 1)[-1] for p in ALWAYS_LEFT_OUT)


class FileEntry(NamedTuple):
    """A regular file, with the stat fields the stat cache compares (a tuple: cheap)."""

    path: str  # relative to the project, "/"-separated
    mode: int  # 0o755 or 0o644, as git records it
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


class LinkEntry(NamedTuple):
    path: str
    target: str  # verbatim, never resolved


@dataclass
class Selection:
    files: list[FileEntry] = field(default_factory=list)
    links: list[LinkEntry] = field(default_factory=list)


def git_mode(st_mode: int) -> int:
    """Git keeps only "executable or not"; so do snapshots."""
    return 0o755 if st_mode & stat.S_IXUSR else 0o644


def unreadable(path: str | Path, exc: OSError) -> OrchestError:
    return OrchestError.single(
        path,
        "",
        f"cannot be read ({exc.strerror or exc}); make it readable by this user "
        f"or list it in {IGNORE_FILE}",
    )


def read_text(path: str) -> str:
    """A small pattern file, without following a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise unreadable(path, exc) from None
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise unreadable(path, exc) from None


def _pattern_file(path: str) -> tuple[str | None, os.stat_result | None]:
    """The text of a pattern file (None if absent or not a regular file) and its stat."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    return (read_text(path) if stat.S_ISREG(info.st_mode) else None), info


def _stamps(infos: list[os.stat_result | None]) -> tuple[str, tuple[tuple[int, int], ...]]:
    present = [info for info in infos if info is not None]
    return (" ".join(stamp(info) if info else "-" for info in infos) if present else "",
            tuple((info.st_mtime_ns, info.st_ctime_ns) for info in present))


@dataclass(frozen=True)
class Folder:
    """A folder the selection enters, with what applies to the entries inside it."""

    rel: str  # "" for the project root
    levels: tuple[tuple[str, Rules], ...]  # (folder, its .gitignore), root first
    git_ignored: bool  # git ignores it: entered only for .orchestinclude
    forced: bool  # .orchestinclude names it (or a parent): everything inside goes in
    rules_stamp: str = ""  # stat of the pattern files read here ("" when none)
    rules_times: tuple[tuple[int, int], ...] = ()  # their (mtime, ctime)


class Listing(NamedTuple):
    """A folder's entries that the selection keeps (files, links) or enters (folders)."""

    files: tuple[str, ...]
    links: tuple[str, ...]
    folders: tuple[str, ...]


class FolderMemo(Protocol):
    """Remembers each folder's :class:`Listing`, as git's untracked cache does: while a
    folder's own stat and its pattern files are unchanged, its entries are not listed
    or matched again, only stat-ed."""

    def recall(self, rel: str) -> tuple[str, str, Listing] | None:
        """(folder stamp, rules stamp, listing) saved last time."""

    def remember(self, rel: str, stamp: str, rules_stamp: str, listing: Listing,
                 times: tuple[tuple[int, int], ...]) -> None:
        """Save for next time, if all ``times`` (mtime, ctime) are settled."""


def stamp(info: os.stat_result) -> str:
    """What changes whenever a file or folder changes (git compares the same fields)."""
    return f"{info.st_mtime_ns}.{info.st_ctime_ns}.{info.st_ino}.{info.st_size}"


class ProjectRules:
    """The selection rules of one project, asked entry by entry (see module docstring)."""

    def __init__(self, project_dir: str | Path):
        self.root = os.fspath(project_dir)
        include, include_info = _pattern_file(os.path.join(self.root, INCLUDE_FILE))
        ignore, ignore_info = _pattern_file(os.path.join(self.root, IGNORE_FILE))
        self.include = Rules.from_text(include or "", INCLUDE_FILE)
        self.ignore = Rules.from_text(ignore or "", IGNORE_FILE)
        self.top = self._folder("", (), git_ignored=False, forced=False,
                                extra=[include_info, ignore_info])
        self._entered: dict[str, Folder | None] = {"": self.top}

    def _folder(self, rel: str, levels: tuple[tuple[str, Rules], ...], *,
                git_ignored: bool, forced: bool,
                extra: list[os.stat_result | None] | None = None) -> Folder:
        infos = list(extra or [])
        if not git_ignored:
            gitignore = os.path.join(self.root, rel, ".gitignore")
            text, info = _pattern_file(gitignore)
            infos.append(info)
            if text is not None:
                levels = (*levels, (rel, Rules.from_text(text, gitignore)))
        rules_stamp, rules_times = _stamps(infos)
        return Folder(rel, levels, git_ignored, forced, rules_stamp, rules_times)

    def _verdict(self, parent: Folder, name: str, rel: str,
                 is_dir: bool) -> tuple[bool, bool] | None:
        """(git ignores it, .orchestinclude forces it), or None when it is left out."""
        if (name in _LEFT_OUT_NAMES and _LEFT_OUT.match(rel, is_dir)) or (
            self.ignore and self.ignore.match(rel, is_dir)
        ):
            return None
        include = self.include.match(rel, is_dir) if self.include else None
        forced = parent.forced if include is None else include
        return parent.git_ignored or _git_verdict(parent.levels, rel, is_dir), forced

    def enter(self, parent: Folder, name: str) -> Folder | None:
        """The sub-folder ``name`` of ``parent`` if the selection looks inside it."""
        rel = f"{parent.rel}/{name}" if parent.rel else name
        verdict = self._verdict(parent, name, rel, is_dir=True)
        if verdict is None:
            return None
        ignored, forced = verdict
        if ignored and not forced and not self.include.could_match_under(rel):
            return None
        return self._folder(rel, parent.levels, git_ignored=ignored, forced=forced)

    def keeps(self, parent: Folder, name: str, rel: str | None = None) -> bool:
        """Whether file or symlink ``name`` in ``parent`` (at ``rel``) goes in."""
        if rel is None:
            rel = f"{parent.rel}/{name}" if parent.rel else name
        verdict = self._verdict(parent, name, rel, is_dir=False)
        return verdict is not None and (verdict[1] or not verdict[0])

    def is_ignored(self, rel_path: str) -> bool:
        """For a walk of one's own: is ``rel_path`` (``"a/b/"`` for a folder) left out?"""
        *parents, name = rel_path.rstrip("/").split("/")
        folder = self.top
        for part in parents:
            inner = self._lookup(folder, part)
            if inner is None:
                return True
            folder = inner
        if rel_path.endswith("/"):
            return self._lookup(folder, name) is None
        return not self.keeps(folder, name)

    def _lookup(self, parent: Folder, name: str) -> Folder | None:
        rel = f"{parent.rel}/{name}" if parent.rel else name
        if rel not in self._entered:
            self._entered[rel] = self.enter(parent, name)
        return self._entered[rel]


def ignore_rules(project_dir: str | Path) -> ProjectRules:
    """The selection rules, for code that walks a project itself (pipeline discovery)."""
    return ProjectRules(project_dir)


def _git_verdict(levels: tuple[tuple[str, Rules], ...], rel: str, is_dir: bool) -> bool:
    """Whether git ignores ``rel``: the deepest .gitignore with a matching pattern decides."""
    for base, rules in reversed(levels):
        verdict = rules.match(rel[len(base) + 1 :] if base else rel, is_dir)
        if verdict is not None:
            return verdict
    return False


def select(project_dir: Path, memo: FolderMemo | None = None) -> Selection:
    """Walk ``project_dir`` (never following links) and return what a snapshot holds."""
    rules = ProjectRules(project_dir)
    selection = Selection()
    try:
        top = os.lstat(rules.root)
    except OSError as exc:
        raise unreadable(rules.root, exc) from None
    # (folder, its stat, whether rules above it changed since the memo was written)
    stack: list[tuple[Folder, os.stat_result, bool]] = [(rules.top, top, False)]
    while stack:
        folder, info, tainted = stack.pop()
        folder_stamp = stamp(info)
        old = memo.recall(folder.rel) if memo is not None else None
        tainted = tainted or old is None or old[1] != folder.rules_stamp
        found = None
        if not tainted and old is not None and old[0] == folder_stamp:
            found = _replay(rules, folder, old[2])
        if found is None:
            found = _scan(rules, folder)
        listing, files, links, children = found
        selection.files += files
        selection.links += links
        stack += [(child, child_info, tainted) for child, child_info in children]
        if memo is not None:
            memo.remember(folder.rel, folder_stamp, folder.rules_stamp, listing,
                          ((info.st_mtime_ns, info.st_ctime_ns), *folder.rules_times))
    selection.files.sort(key=lambda item: item.path)
    selection.links.sort(key=lambda item: item.path)
    return selection


_Found = tuple[Listing, list[FileEntry], list[LinkEntry], list[tuple[Folder, os.stat_result]]]


def _file_entry(rel: str, info: os.stat_result) -> FileEntry:
    return FileEntry(rel, git_mode(info.st_mode), info.st_size, info.st_mtime_ns,
                     info.st_ctime_ns, info.st_ino)


def _scan(rules: ProjectRules, folder: Folder) -> _Found:
    """List ``folder`` and ask the rules about every entry."""
    path = os.path.join(rules.root, folder.rel)
    try:
        with os.scandir(path) as entries:
            listing = list(entries)
    except OSError as exc:
        raise unreadable(path, exc) from None
    prefix = folder.rel + "/" if folder.rel else ""
    files: list[FileEntry] = []
    links: list[LinkEntry] = []
    children: list[tuple[Folder, os.stat_result]] = []
    for entry in listing:
        name = entry.name
        try:  # d_type answers these without a system call on most filesystems
            if entry.is_dir(follow_symlinks=False):
                child = rules.enter(folder, name)
                if child is not None:
                    children.append((child, entry.stat(follow_symlinks=False)))
            elif entry.is_symlink():
                if rules.keeps(folder, name, prefix + name):
                    links.append(LinkEntry(prefix + name, os.readlink(entry.path)))
            elif not entry.is_file(follow_symlinks=False):
                log.debug("skipping %s: not a file, folder or symlink", entry.path)
            elif rules.keeps(folder, name, prefix + name):
                files.append(_file_entry(prefix + name, entry.stat(follow_symlinks=False)))
        except FileNotFoundError:
            continue  # removed while we walk
        except OSError as exc:
            raise unreadable(entry.path, exc) from None
    names = Listing(tuple(f.path[len(prefix):] for f in files),
                    tuple(link.path[len(prefix):] for link in links),
                    tuple(child.rel[len(prefix):] for child, _ in children))
    return names, files, links, children


def _replay(rules: ProjectRules, folder: Folder, listing: Listing) -> _Found | None:
    """Stat the entries kept last time; None if one is not what it was (list again)."""
    base = os.path.join(rules.root, folder.rel, "")
    prefix = folder.rel + "/" if folder.rel else ""
    try:
        files = []
        for name in listing.files:
            info = os.lstat(base + name)
            if not stat.S_ISREG(info.st_mode):
                return None
            files.append(_file_entry(prefix + name, info))
        links = [LinkEntry(prefix + name, os.readlink(base + name))
                 for name in listing.links]
        children = []
        for name in listing.folders:
            info = os.lstat(base + name)
            child = rules.enter(folder, name) if stat.S_ISDIR(info.st_mode) else None
            if child is None:
                return None
            children.append((child, info))
    except OSError:  # vanished or changed type: the full listing will tell
        return None
    return listing, files, links, children
