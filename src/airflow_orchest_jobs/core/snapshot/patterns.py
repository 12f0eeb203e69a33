"""gitignore-syntax pattern lists, matched the way git matches them while walking a tree.

Git walks the tree: it asks about each directory before entering it, never enters an
excluded one, and a directory pattern (``build/``) or a pattern matching a parent only
counts for that parent. So :class:`Rules` asks "does this pattern match *this* path
itself" (``dir/`` or ``file``), last match wins.

Each pattern is translated here to a regular expression that cannot backtrack
exponentially. A plain translation (``*`` as ``[^/]*``, ``**/`` as ``(?:.+/)?``, which is
what pathspec does) makes ``a*a*a*...b`` try every way to split a long name, time
growing as the name's length to the power of the number of ``*``. Here every ``*`` but a
segment's last and every ``**`` but the last is an atomic group that commits to the
leftmost place the text after it matches: that choice is always as good as any later
one (what follows is matched from further left, with more text left), so nothing is
lost and each path costs about (pattern length x path length) steps.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import OrchestError

log = logging.getLogger("airflow_orchest_jobs.snapshot")

#: Bounds on one pattern file, so that matching a project's paths stays cheap. Real
#: .gitignore files have tens to hundreds of short lines.
MAX_PATTERNS = 5_000
MAX_PATTERN_CHARS = 1_024

_GLOB_CHARS = re.compile(r"[*?\[\\]")
_SEGMENT = "[^/]+"
#: POSIX bracket classes git's wildmatch knows, as Python character-set contents.
_POSIX = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": r" \t", "cntrl": r"\x00-\x1f\x7f",
          "digit": "0-9", "graph": r"\x21-\x7e", "lower": "a-z", "print": r"\x20-\x7e",
          "punct": r"!-/:-@\[-`{-~", "space": r" \t\n\r\f\v", "upper": "A-Z",
          "xdigit": "0-9a-fA-F"}


_names = itertools.count()


def _atomic(body: str) -> str:
    """``body`` as an atomic group: once it matched, the engine never tries it again
    another way. Python 3.10 has no ``(?>...)``: a lookahead (atomic in ``re``) whose
    capture is then consumed does the same."""
    if sys.version_info >= (3, 11):
        return f"(?>{body})"
    name = f"_a{next(_names)}"
    return f"(?=(?P<{name}>{body}))(?P={name})"


class _Invalid(ValueError):
    """A pattern git discards (an unclosed bracket, a trailing backslash)."""


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    #: literal leading directories of an anchored pattern (None: can match at any depth)
    prefix: tuple[str, ...] | None


def _bracket(glob: str, start: int) -> tuple[str, int]:
    """The regex of the bracket expression at ``glob[start] == "["`` and where it ends.

    Like git: ``!`` or ``^`` negates, a ``]`` first is literal, ``\\`` escapes, ``a-z``
    ranges, ``[:alpha:]`` classes; it never matches ``/``.
    """
    i, end = start + 1, len(glob)
    negated = i < end and glob[i] in "!^"
    i += negated
    items: list[str] = []
    first = True
    while i < end and (glob[i] != "]" or first):
        first = False
        if glob.startswith("[:", i):
            close = glob.find(":]", i + 2)
            name = glob[i + 2:close] if close > 0 else ""
            if name in _POSIX:
                items.append(_POSIX[name])
                i = close + 2
                continue
        char = glob[i]
        if char == "\\":
            i += 1
            if i >= end:
                raise _Invalid("trailing backslash in a bracket")
            char = glob[i]
        i += 1
        if i + 1 < end and glob[i] == "-" and glob[i + 1] != "]":
            high = glob[i + 1]
            if high == "\\" and i + 2 < end:
                high = glob[i + 2]
                i += 1
            i += 2
            if high >= char:
                items.append(f"{re.escape(char)}-{re.escape(high)}")
            continue
        items.append(re.escape(char))
    if i >= end:
        raise _Invalid("unclosed bracket")
    body = "".join(items)
    if negated:
        return f"[^/{body}]", i + 1
    return (f"(?!/)[{body}]" if body else "(?!)"), i + 1


def _atoms(glob: str) -> list[str]:
    """A segment glob as fixed-width regex atoms, with ``"*"`` for each run of stars."""
    atoms: list[str] = []
    i, end = 0, len(glob)
    while i < end:
        char = glob[i]
        if char == "*":
            if not atoms or atoms[-1] != "*":
                atoms.append("*")
            i += 1
        elif char == "?":
            atoms.append("[^/]")
            i += 1
        elif char == "[":
            atom, i = _bracket(glob, i)
            atoms.append(atom)
        elif char == "\\":
            if i + 1 >= end:
                raise _Invalid("trailing backslash")
            atoms.append(re.escape(glob[i + 1]))
            i += 2
        else:
            atoms.append(re.escape(char))
            i += 1
    return atoms


def _segment_regex(glob: str) -> str:
    """One path segment's glob: ``P0*P1*...*Pn`` with each middle ``*`` committed to the
    leftmost place its piece matches (atomic), the last one free to reach the end."""
    if glob and not glob.strip("*"):
        return _SEGMENT  # a whole segment, never empty
    pieces: list[list[str]] = [[]]
    for atom in _atoms(glob):
        if atom == "*":
            pieces.append([])
        else:
            pieces[-1].append(atom)
    out = "".join(pieces[0])
    for piece in pieces[1:-1]:
        out += _atomic(f"[^/]*?{''.join(piece)}") if piece else ""
    if len(pieces) > 1:
        out += "[^/]*" + "".join(pieces[-1])
    return out


def _group_regex(globs: list[str]) -> str:
    """Consecutive segments (no ``**`` among them), each followed by its slash."""
    return "".join(_segment_regex(glob) + "/" for glob in globs)


def _trim(line: str) -> str:
    """Trailing spaces dropped unless backslash-escaped (git's rule)."""
    body = line.rstrip(" ")
    if len(body) < len(line):
        backslashes = len(body) - len(body.rstrip("\\"))
        if backslashes % 2:
            body += " "
    return body


def translate(line: str) -> tuple[str, bool] | None:
    """(regex matching a path itself, negated) for one gitignore line; None for a blank
    line, a comment or a pattern git discards.

    The regex is matched (from the start) against ``path`` for a file and ``path/`` for
    a directory.
    """
    body = _trim(line)
    if not body or body.startswith("#"):
        return None
    negated = body.startswith("!")
    if negated:
        body = body[1:]
    # A segment of two or more stars only is "**" (git's wildmatch), any number of folders
    segments = ["**" if len(part) > 1 and not part.strip("*") else part
                for part in body.split("/")]
    dir_only = len(segments) > 1 and segments[-1] == ""
    if dir_only:
        segments.pop()
    if segments[0] == "":
        segments.pop(0)  # anchored at the folder of the pattern file
    elif len(segments) == 1:
        segments.insert(0, "**")  # no inner slash: a name at any depth
    if not segments:
        return None  # "/" matches nothing
    # "**/**" is "**"; a lone "**" segment is "any number of folders"
    folded: list[str] = []
    for segment in segments:
        if not (segment == "**" and folded and folded[-1] == "**"):
            folded.append(segment)
    try:
        regex = _path_regex(folded, dir_only)
    except _Invalid:
        return None
    return regex, negated


def _path_regex(segments: list[str], dir_only: bool) -> str:
    """Segments (``**`` for any number of folders) as a regex for the whole path."""
    end = "/\\Z" if dir_only else "/?\\Z"
    groups: list[list[str]] = [[]]
    for segment in segments:
        if segment == "**":
            groups.append([])
        else:
            groups[-1].append(segment)
    if len(groups) == 1:  # no "**": the segments are the whole path
        return _group_regex(groups[0])[:-1] + end
    out = _group_regex(groups[0])
    trailing = not groups[-1]  # ends in "**": strictly below what came before
    for group in groups[1:-1]:
        if group:  # leftmost place: committed, as in _segment_regex
            out += _atomic(f"(?:[^/]+/)*?{_group_regex(group)}")
    if trailing:
        return out + ("(?s:.+)/\\Z" if dir_only else "(?!\\Z)")
    return out + "(?:[^/]+/)*" + _group_regex(groups[-1])[:-1] + end


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


def _compile(lines: list[str], source: str) -> list[_Pattern]:
    patterns: list[_Pattern] = []
    for line in lines:
        translated = translate(line)
        if translated is None:
            continue
        regex, negated = translated
        body = _trim(line)
        body = body[1:] if negated else body
        patterns.append(_Pattern(re.compile(regex, re.DOTALL), negated,
                                 _literal_prefix(body)))
    return patterns


def split_lines(text: str) -> list[str]:
    """Lines as git reads a .gitignore: split on LF, one trailing CR dropped, BOM skipped."""
    text = text.removeprefix("\ufeff")
    return [line.removesuffix("\r") for line in text.split("\n")]


def _bounded(lines: list[str], source: str) -> list[str]:
    """``lines`` if within :data:`MAX_PATTERNS` and :data:`MAX_PATTERN_CHARS`."""
    patterns = [line for line in lines if line.strip() and not line.startswith("#")]
    if len(patterns) > MAX_PATTERNS:
        raise OrchestError.single(source, "", f"has {len(patterns):,} patterns, more than "
                                  f"{MAX_PATTERNS:,}; use fewer, broader patterns (a "
                                  "folder pattern such as build/ covers what is inside)")
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_PATTERN_CHARS:
            raise OrchestError.single(source, f"line {number}", f"is {len(line):,} "
                                      f"characters long, more than {MAX_PATTERN_CHARS:,}; "
                                      "shorten the pattern")
    return lines


class Rules:
    """One pattern file's patterns; paths are relative to the folder that holds it.

    Raises :class:`OrchestError` for a file beyond the bounds (too many or too long
    patterns): matching stays cheap for every project.
    """

    def __init__(self, lines: Iterable[str], source: str = "<patterns>"):
        self.source = source
        self._patterns = _compile(_bounded(list(lines), source), source)
        self._reversed = self._patterns[::-1]
        # One match answers "does any pattern match?", usually no: skips the loop.
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
        if self._any is None or not self._any.match(subject):
            return None
        for pattern in self._reversed:
            if pattern.regex.match(subject):
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
