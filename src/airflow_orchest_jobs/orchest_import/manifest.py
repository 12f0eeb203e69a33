"""What earlier imports wrote, with hashes, so a second import changes nothing and never
overwrites what a person edited since.

Two halves: ``projects_dir/.orchest-import.json`` (files and job names: no secrets; a
dot-file, so never a project) and the Airflow Variable ``orchest_import_manifest``
(hashes of the Variables and Connections written, kept where the secrets are).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = ".orchest-import.json"
VARIABLE = "orchest_import_manifest"


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass
class Manifest:
    #: ``<project folder>/<relative path>`` -> sha256 of what was written.
    files: dict[str, str] = field(default_factory=dict)
    #: job uuid -> ``<project folder>/<relative job file>``.
    jobs: dict[str, str] = field(default_factory=dict)
    #: Variable name / conn id / setting -> sha256 of the value written.
    variables: dict[str, str] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, projects_dir: Path, stored: str | None) -> Manifest:
        found = cls()
        path = projects_dir / FILE_NAME
        files: dict[str, Any] = {}
        if path.is_file():
            try:
                files = json.loads(path.read_text())
            except ValueError:
                files = {}
        found.files = dict(files.get("files", {}))
        found.jobs = dict(files.get("jobs", {}))
        try:
            secret = json.loads(stored) if stored else {}
        except ValueError:
            secret = {}
        found.variables = dict(secret.get("variables", {}))
        found.connections = dict(secret.get("connections", {}))
        found.settings = dict(secret.get("settings", {}))
        return found

    def files_text(self) -> str:
        return json.dumps({"version": 1, "about": "written by airflow-orchest-jobs import: "
                           "what it wrote, so a second import never overwrites your edits",
                           "files": dict(sorted(self.files.items())),
                           "jobs": dict(sorted(self.jobs.items()))}, indent=1) + "\n"

    def variable_text(self) -> str:
        return json.dumps({"version": 1, "variables": dict(sorted(self.variables.items())),
                           "connections": dict(sorted(self.connections.items())),
                           "settings": dict(sorted(self.settings.items()))}, sort_keys=True)

    def save_files(self, projects_dir: Path) -> None:
        write_atomic(projects_dir / FILE_NAME, self.files_text().encode())


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".orchest-import-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
