"""Project snapshots: what a job freezes at creation and every pipeline run starts from.

A snapshot holds exactly the files git would track in the project (every ``.gitignore``
with git's semantics), never ``.git/``, ``.ipynb_checkpoints/`` or Orchest's runtime
folders, and two optional files at the project root adjust it:

``.orchestinclude``
    gitignore-syntax patterns for files git ignores but a job needs (a credentials file
    kept out of git, say); they are added anyway. A folder pattern adds all inside it.
``.orchestignore``
    gitignore-syntax patterns for more files or folders to leave out; it wins over both
    git and ``.orchestinclude``.

Contents are stored once however many snapshots hold them (content-addressed), an
unchanged project is re-snapshotted from a stat cache without reading its files, writes
are atomic, and ``checkout`` gives each run a private writable copy. Modules:
``selection`` (what goes in), ``patterns`` (gitignore matching), ``objects`` and
``packs`` (contents), ``manifest`` (one snapshot), ``statcache``, ``copy`` (fast file
copies), ``fsops`` (atomic writes, modes), ``checkout``, ``remove`` (run folders) and
``store`` (the API).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifest import Snapshot
    from .remove import remove_tree
    from .selection import IGNORE_FILE, INCLUDE_FILE, Selection, select
    from .store import WARN_BYTES, DiskUsage, SnapshotStore, SnapshotView

#: The package's names, by the module that defines them. Imported when first used: a
#: DAG parse needs ``selection`` (project walks) and ``fsops`` (atomic writes), never the
#: store, and every parse is a fresh process.
_EXPORTS = {
    "IGNORE_FILE": "selection",
    "INCLUDE_FILE": "selection",
    "Selection": "selection",
    "select": "selection",
    "Snapshot": "manifest",
    "remove_tree": "remove",
    "WARN_BYTES": "store",
    "DiskUsage": "store",
    "SnapshotStore": "store",
    "SnapshotView": "store",
}

__all__ = [
    "IGNORE_FILE",
    "INCLUDE_FILE",
    "WARN_BYTES",
    "DiskUsage",
    "Selection",
    "Snapshot",
    "SnapshotStore",
    "SnapshotView",
    "remove_tree",
    "select",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
