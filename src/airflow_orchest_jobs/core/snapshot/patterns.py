"""gitignore-syntax pattern lists, matched the way git matches them while walking a tree.

``pathspec.GitIgnoreSpec`` parses the patterns (escapes, ``**``, anchoring, trailing
spaces, character classes) and answers "is this *file path* ignored" for a flat list of
paths. Git instead walks the tree: it asks about each directory before entering it, never
enters an excluded one, and a directory pattern (``build/``) or a pattern matching a
parent only counts for that parent. So :class:`Rules` reuses pathspec's regular
expressions but asks "does this pattern match *this* path itself", last match wins.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pathspec

log = logging.getLogger("airflow_orchest_jobs.snapshot")

#: pathspec marks "the slash after a directory" with this group; we turn it into "the
#: path ends here and is a directory" (a path is tested as ``dir/`` or ``file``).
_DIR_GROUP = "(?P<ps_d>/)"
_DIR_OR_END = f"(?:{_DIR_GROUP}|$)"
_GLOB_CHARS = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    #: literal leading directories of an anchored pattern (None: can match at any depth)
    prefix: tuple[str, ...] | None


def _self_regex(regex: str, body: str) -> re.Pattern[str]:
    """pathspec's regex, changed to match the path itself and never a descendant."""
    if body.endswith("/**/") and regex.endswith(_DIR_GROUP):
        # pathspec folds "a/**/" into "a/"; git matches only the folders inside a
        regex = regex[: -len(_DIR_GROUP)] + r"/.+/\Z"
    own = regex.replace(_DIR_OR_END, r"/?\Z").replace(_DIR_GROUP, r"/\Z")
    if "ps_d" in own:  # pragma: no cover - a pathspec release changed its regex form
        raise RuntimeError(f"unexpected pathspec regex {regex!r}; update patterns.py")
    if own.endswith("/"):
        # "foo/**" matches what is inside foo, not foo itself (tested as "foo/")
        own += r"(?!\Z)"
    return re.compile(own, re.DOTALL)


def _body(line: str) -> str:
    body = line.rstrip()
    return body[1:] if body.startswith("!") else body


def _literal_prefix(body: str) -> tuple[str, ...] | None:
    """Leading glob-free directories of an anchored pattern, to skip hopeless subtrees."""
    if "/" not in body.rstrip("/"):
        return None  # no inner slash: matches a name at any depth
    segments = body.strip("/").split("/")[:-1]
    prefix: list[str] = []
    for segment in segments:
        if _GLOB_CHARS.search(segment):
            break
        prefix.append(segment)
    return tuple(prefix)


def _parse(lines: list[str], source: str) -> list[tuple[str, Any]]:
    """(line, pathspec pattern) pairs; a line pathspec rejects is skipped, as git does."""
    lines = [line for line in lines if line]  # pathspec drops empty lines
    try:
        return list(zip(lines, pathspec.GitIgnoreSpec.from_lines(lines).patterns,
                        strict=True))
    except (ValueError, re.error):  # GitIgnorePatternError is a ValueError
        if len(lines) == 1:
            log.debug("%s: skipping invalid pattern %r", source, lines[0])
            return []
        return [pair for line in lines for pair in _parse([line], source)]


def _compile(lines: Iterable[str], source: str) -> list[_Pattern]:
    patterns: list[_Pattern] = []
    for line, parsed in _parse(list(lines), source):
        if parsed.include is None or parsed.regex is None:
            continue  # blank line or comment
        body = _body(line)
        patterns.append(_Pattern(_self_regex(parsed.regex.pattern, body),
                                 not parsed.include, _literal_prefix(body)))
    return patterns


def split_lines(text: str) -> list[str]:
    """Lines as git reads a .gitignore: split on LF, one trailing CR dropped, BOM skipped."""
    text = text.removeprefix("\ufeff")
    return [line.removesuffix("\r") for line in text.split("\n")]


class Rules:
    """One pattern file's patterns; paths are relative to the folder that holds it."""

    def __init__(self, lines: Iterable[str], source: str = "<patterns>"):
        self.source = source
        self._patterns = _compile(lines, source)
        self._reversed = self._patterns[::-1]
        # One search answers "does any pattern match?", usually no: skips the loop.
        self._any = re.compile(
            "|".join(f"(?:{p.regex.pattern})" for p in self._patterns), re.DOTALL
        ) if self._patterns else None

    @classmethod
    def from_text(cls, text: str, source: str) -> Rules:
        return cls(split_lines(text), source)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def match(self, path: str, is_dir: bool) -> bool | None:
        """True: matched (ignored); False: re-included by ``!``; None: no pattern matched."""
        subject = path + "/" if is_dir else path
        if self._any is None or not self._any.search(subject):
            return None
        for pattern in self._reversed:
            if pattern.regex.search(subject):
                return not pattern.negated
        return None

    def could_match_under(self, directory: str) -> bool:
        """Whether a non-negated pattern might match something inside ``directory``."""
        parts = tuple(directory.split("/"))
        for pattern in self._patterns:
            if pattern.negated:
                continue
            prefix = pattern.prefix
            if prefix is None:
                return True
            common = min(len(prefix), len(parts))
            if prefix[:common] == parts[:common]:
                return True
        return False
