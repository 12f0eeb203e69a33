"""Builders for small Orchest projects in a temporary folder (test data, not mocks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ENV = "2f0a0e0c-3c3e-4c4b-9d0a-5f1e2d3c4b5a"


def step(uuid: str, file_path: str, *, incoming=(), parameters=None, title=None,
         environment: str | None = ENV, **extra: Any) -> dict:
    data = {
        "uuid": uuid,
        "title": title or uuid,
        "file_path": file_path,
        "incoming_connections": list(incoming),
        "kernel": {"name": "python", "display_name": "Python 3"},
        "parameters": parameters or {},
        "meta_data": {"hidden": False, "position": [0, 0]},
    }
    if environment:
        data["environment"] = environment
    data.update(extra)
    return data


def pipeline_doc(steps: list[dict], *, parameters=None, version: str | None = "1.2.3",
                 uuid: str = "pipe-0001", name: str = "main", settings=None) -> dict:
    doc: dict[str, Any] = {
        "name": name,
        "uuid": uuid,
        "parameters": parameters or {},
        "settings": settings if settings is not None else {
            "auto_eviction": False, "data_passing_memory_size": "1GB",
            "max_steps_parallelism": 0},
        "services": {},
        "steps": {s["uuid"]: s for s in steps},
    }
    if version is not None:
        doc["version"] = version
    return doc


def write_environment(project: Path, env_uuid: str = ENV, base_image: str = "python",
                      language: str = "python") -> Path:
    folder = project / ".orchest" / "environments" / env_uuid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "properties.json").write_text(json.dumps({
        "uuid": env_uuid, "name": language.title(), "language": language,
        "base_image": base_image, "gpu_support": False}))
    (folder / "setup_script.sh").write_text("#!/bin/bash\n")
    return folder


def write_project(root: Path, doc: dict, *, name: str = "main.orchest",
                  files: dict[str, str] | None = None, parameters: dict | None = None,
                  environment: bool = True) -> Path:
    """Write a project: the pipeline, a file per step (or ``files``), an environment."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    if files is None:
        files = {s["file_path"]: "print('hi')\n" for s in doc.get("steps", {}).values()
                 if isinstance(s, dict) and isinstance(s.get("file_path"), str)
                 and not s["file_path"].startswith("/") and ".." not in s["file_path"]}
    for rel, text in files.items():
        target = path.parent / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if parameters is not None:
        path.with_name(name[: -len(".orchest")] + ".parameters.json").write_text(
            json.dumps(parameters))
    if environment:
        write_environment(root)
    return path
