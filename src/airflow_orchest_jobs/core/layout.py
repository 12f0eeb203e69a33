"""Where everything lives in ``store_dir``: the one place that spells the layout out.

::

    store_dir/
      snapshots/                 content-addressed project snapshots (SnapshotStore)
      jobs/<job key>.json        frozen jobs: snapshot id, pinned images (JobStates)
      runs/<dag id>/<run id>/    one job run: runs.json, run-00003/{pipeline.json,project/}
                                 (StoreLayout.job_run; a pipeline run's folder: run_folder)
      run-slots/<scope>/         leases of whole-run limits (RunSlots)

Ids become names with ``safe_name``, which is injective (``x:1`` and ``x_1`` never share
a folder) and never yields ``.``, ``..``, a ``/`` or a leading dot, so a name always
stays one entry inside its parent. Every worker must see the same store at the same
path (see the README).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

#: Bytes kept as they are; every other byte (and a leading dot) becomes ``%XX``.
_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
#: Longest name: room for suffixes (``.json``, ``.lock``, temporary files) under the
#: usual 255-byte file-name limit.
MAX_NAME = 200
#: Separates a shortened name from the hash of the whole id. Escaping never yields it
#: (``~`` is not kept), so a shortened name never equals an escaped one.
HASH_MARK = "~"
#: The name of the empty id: ``%`` alone, which escaping never yields either.
EMPTY = "%"
_HASH_CHARS = 32
#: A pipeline run's folder in its job run's folder is this and its grid index: ``run-00003``.
RUN_FOLDER_PREFIX = "run-"
#: In a pipeline run's folder: the project copy (``/project-dir`` in its containers) and
#: the pipeline definition with its parameters (``/pipeline.json``).
PROJECT_COPY = "project"
RUN_DEFINITION = "pipeline.json"


def safe_name(text: str) -> str:
    """The file name of a job key or run id: injective, readable, one path entry.

    UTF-8 bytes outside ``[A-Za-z0-9_.-]``, ``%`` included, and a leading dot are
    written ``%XX`` (so ``..`` is ``%2E.``); names longer than ``MAX_NAME`` keep a
    prefix and add ``~`` and 128 bits of the id's SHA-256.
    """
    data = text.encode("utf-8", "surrogatepass")
    if not data:
        return EMPTY
    name = "".join(chr(b) if b in _KEPT and (i or b != 0x2E) else f"%{b:02X}"
                   for i, b in enumerate(data))
    if len(name) <= MAX_NAME:
        return name
    prefix = name[:MAX_NAME - len(HASH_MARK) - _HASH_CHARS]
    cut = prefix.rfind("%", len(prefix) - 2)
    if cut >= 0:  # never half an escape
        prefix = prefix[:cut]
    return f"{prefix}{HASH_MARK}{hashlib.sha256(data).hexdigest()[:_HASH_CHARS]}"


def id_of(name: str) -> str | None:
    """The id ``safe_name`` made ``name`` from; None for a shortened or foreign name."""
    if name == EMPTY:
        return ""
    if HASH_MARK in name:
        return None
    out = bytearray()
    i = 0
    while i < len(name):
        char = name[i]
        if char == "%":
            try:
                out.append(int(name[i + 1:i + 3], 16))
            except ValueError:
                return None
            i += 3
            continue
        if len(char.encode()) != 1:
            return None
        out += char.encode()
        i += 1
    text = bytes(out).decode("utf-8", "surrogatepass")
    return text if safe_name(text) == name else None


def run_folder_name(index: int) -> str:
    """The name of grid run ``index``'s folder in its job run's folder."""
    return f"{RUN_FOLDER_PREFIX}{index:05d}"


def run_folder_index(name: str) -> int:
    """The grid index of a pipeline run's folder name (``run-00003``: 3)."""
    return int(name.removeprefix(RUN_FOLDER_PREFIX))


def run_folder(run_root: Path, index: int) -> Path:
    """The folder of grid run ``index`` in a job run's folder."""
    return run_root / run_folder_name(index)


@dataclass(frozen=True)
class StoreLayout:
    root: Path

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def run_slots(self) -> Path:
        return self.root / "run-slots"

    @staticmethod
    def job_run_names(dag_id: str, run_id: str) -> tuple[str, str]:
        """The two entries under ``runs`` of one job run's folder (for ``openat`` walks)."""
        return safe_name(dag_id), safe_name(run_id)

    def dag_runs(self, dag_id: str) -> Path:
        """Every job run folder of one DAG."""
        return self.runs / safe_name(dag_id)

    def job_run(self, dag_id: str, run_id: str) -> Path:
        """One job run's folder."""
        return self.runs.joinpath(*self.job_run_names(dag_id, run_id))

    def job_state(self, job_key: str) -> Path:
        """A frozen job's state file."""
        return self.jobs / f"{safe_name(job_key)}.json"
