"""A step's log file in its run folder, written by the worker with the run's secrets redacted.

The runner in the container only prints; the step operator reads the container's output
and writes it here (Orchest's ``.orchest/pipelines/<pipeline>/logs/<step>.log`` of the
run's project copy), so a value resolved from an Airflow Variable or Connection, or a
project or pipeline variable, never reaches a file the views serve. Redaction is by whole
lines (a value split across two output chunks is still found), and each line of a
multi-line value is a value of its own. Values shorter than Airflow's
``[logging] min_length_masked_secret`` are left as they are, as in the task log.

The project copy is writable by the step, so the file is opened without following a link
at any component (a step cannot make the worker write elsewhere) and created afresh
(a hard link planted under its name is unlinked, never written through).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

REPLACEMENT = b"***"
#: Bytes kept back when a line grows this long without a newline (then written in parts).
MAX_LINE = 64 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def min_secret_length() -> int:
    """Airflow's shortest masked value (``[logging] min_length_masked_secret``)."""
    try:
        from airflow.configuration import conf

        return conf.getint("logging", "min_length_masked_secret", fallback=5)
    except Exception:  # no Airflow configuration: Airflow's default
        return 5


def secret_patterns(values: Iterable[str], min_length: int) -> list[bytes]:
    """The byte strings to replace: each value and each line of a multi-line one, longest
    first (a value containing another is replaced whole)."""
    found: set[bytes] = set()
    for value in values:
        for part in {value, *value.splitlines()}:
            if len(part) >= max(min_length, 1):
                found.add(part.encode())
    return sorted(found, key=len, reverse=True)


class LineRedactor:
    """Feed output chunks, get back complete lines (bytes, newline kept) with every
    pattern replaced; :meth:`finish` returns what is left."""

    def __init__(self, patterns: list[bytes]):
        self.patterns = patterns
        self.keep = max((len(p) for p in patterns), default=1) - 1
        self.buffer = b""

    def _redact(self, data: bytes) -> bytes:
        for pattern in self.patterns:
            data = data.replace(pattern, REPLACEMENT)
        return data

    def feed(self, chunk: bytes) -> list[bytes]:
        self.buffer += chunk
        cut = self.buffer.rfind(b"\n") + 1
        out = [self._redact(line) for line in self.buffer[:cut].splitlines(keepends=True)]
        self.buffer = self.buffer[cut:]
        if len(self.buffer) > MAX_LINE:
            # A very long line: redact what is there, write all but what could still be the
            # start of a value completed by the next chunk.
            redacted = self._redact(self.buffer)
            split = len(redacted) - self.keep
            out.append(redacted[:split])
            self.buffer = redacted[split:]
        return out

    def finish(self) -> list[bytes]:
        rest, self.buffer = self._redact(self.buffer), b""
        return [rest] if rest else []


def open_log_file(project_dir: Path, relative: str, owner: tuple[int, int] | None = None
                  ) -> int:
    """A new, empty file at ``project_dir/relative`` (folders made as needed, given to
    ``owner`` when the worker is root: the step writes beside them, as in Orchest),
    opened for writing without following links; its descriptor."""
    *folders, name = Path(relative).parts
    fd = os.open(project_dir, _DIR_FLAGS)
    try:
        for folder in folders:
            made = False
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o775, dir_fd=fd)
                made = True
            child = os.open(folder, _DIR_FLAGS, dir_fd=fd)
            if made:
                os.fchmod(child, 0o775)
                if owner is not None and os.geteuid() == 0:
                    os.fchown(child, *owner)
            os.close(fd)
            fd = child
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
        file = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o664, dir_fd=fd)
        os.fchmod(file, 0o664)  # group-writable whatever the umask, as Orchest's files
        return file
    finally:
        os.close(fd)


class StepLogFile:
    """The step's log file; a file that cannot be written leaves a warning, not a failure."""

    def __init__(self, project_dir: Path, relative: str, log,
                 owner: tuple[int, int] | None = None) -> None:
        self.path = project_dir / relative
        self.log = log
        self.fd: int | None = None
        try:
            self.fd = open_log_file(project_dir, relative, owner)
        except OSError as exc:
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        why = "a link or not a folder on the way" if exc.errno in (errno.ELOOP, errno.ENOTDIR) \
            else exc.strerror or str(exc)
        self.log.warning("Cannot write the step's log file %s (%s); its output is in the task "
                         "log only", self.path, why)
        self.close()

    def write(self, lines: Iterable[bytes]) -> None:
        if self.fd is None:
            return
        data = b"".join(lines)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as exc:
            self._give_up(exc)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


@contextlib.contextmanager
def step_log(project_dir: Path, relative: str, secrets: Iterable[str], log,
             owner: tuple[int, int] | None = None
             ) -> Iterator[tuple[tuple[LineRedactor, LineRedactor], StepLogFile]]:
    """A redactor for stdout and one for stderr, and the file (closed at the end; the
    caller writes what ``finish()`` returns)."""
    patterns = secret_patterns(secrets, min_secret_length())
    file = StepLogFile(project_dir, relative, log, owner)
    try:
        yield (LineRedactor(patterns), LineRedactor(patterns)), file
    finally:
        file.close()
