"""Old module paths (before the layered layout of 0.2) keep importing, with a warning.

Each old path in :data:`MOVED` is an alias of its new module: ``import`` gives the very
module object of the new path (no second copy, same classes), and emits one
``DeprecationWarning`` naming the new path. The aliases go away in the release after 0.2.
Installed by ``airflow_orchest_jobs/__init__.py``: importing any old path imports the
package first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

PACKAGE = __name__.rpartition(".")[0]

#: Old module path -> new module path (both relative to the package).
MOVED: dict[str, str] = {
    "factory": "dag.factory",
    "timetable": "dag.timetable",
    "links": "operators.links",
    "images": "engine.images",
    "registry": "engine.registry",
    "hosts": "engine.hosts",
    "retire": "engine.retire",
    "orchest_layer": "engine.orchest_layer",
    "operators.services": "engine.services",
    "runfiles": "web.runfiles",
    "views": "web",
    "views.api": "web.api",
    "views.pages": "web.pages",
    "views.data": "web.data",
    "views.actions": "web.actions",
    "views.rows": "web.rows",
    "views.states": "web.states",
    "views.triggerform": "core.triggerform",
    "commands": "cli.commands",
    "commands.check": "cli.commands.check",
    "commands.snapshot": "cli.commands.snapshot",
    "commands.environments": "cli.commands.environments",
    "commands.jobs": "cli.commands.jobs",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module of its new path."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder module: exec_module swaps in the real one

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__
        warnings.warn(f"{old} is deprecated: import {self.new} (the old path goes away in "
                      "the next release)", DeprecationWarning, stacklevel=2)
        # The import system returns what sys.modules holds for the name after exec_module.
        sys.modules[old] = importlib.import_module(self.new)


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (nothing else)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        prefix = PACKAGE + "."
        if not fullname.startswith(prefix):
            return None
        new = MOVED.get(fullname[len(prefix):])
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(f"{prefix}{new}"))


def install() -> None:
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
