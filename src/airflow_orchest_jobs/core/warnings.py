"""Fields a pipeline may set that the plugin loads but does not honour, as warnings.

A pipeline with such a field still runs (validation passes); the warning tells the user
what will not happen as in Orchest, so a job never silently behaves differently. Not
warned: a step's ``kernel.name`` (Orchest's job runner ignored it too: the notebook's own
kernelspec decides), and fields whose value asks for nothing (``exposed: false``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import OrchestError, Problem
from .model import Pipeline, PipelineSettings
from .project import Project

#: Scope value of services started beside every pipeline run of a job.
_JOB_SCOPE = "noninteractive"
_ENVIRONMENT_PREFIX = "environment@"
_NOT_EXPOSED = "services in jobs are reachable only from the run's own steps and services"


def _json(value: Any) -> str:
    return json.dumps(value)


def unhonoured(pipeline: Pipeline, project: Project) -> list[Problem]:
    """Warnings for ``pipeline``'s ignored fields, and for its environments' (their files)."""
    file = str(pipeline.path)
    out = [Problem(file, field, message, warning=True)
           for field, message in _settings(pipeline.settings) + _services(pipeline.services)]
    out += _gpu_environments(pipeline, project)
    return out


def _settings(settings: PipelineSettings) -> list[tuple[str, str]]:
    found = []
    if settings.auto_eviction is True:
        found.append(("settings.auto_eviction", "true is ignored: data passing is on disk "
                      "only, there is no memory store to evict from (set it to false)"))
    size = settings.data_passing_memory_size
    default = PipelineSettings.data_passing_memory_size
    if str(size).replace(" ", "").upper() != default:
        found.append(("settings.data_passing_memory_size", f"{_json(size)} is ignored: "
                      "memory data passing is not implemented (the orchest SDK 0.3.11 writes "
                      f"outputs to disk anyway; set it to {_json(default)})"))
    return found


def _starts_in_jobs(service: Any) -> bool:
    scope = service.get("scope") if isinstance(service, Mapping) else None
    return isinstance(scope, list) and _JOB_SCOPE in scope


def _services(services: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = []
    for key, service in services.items():
        if not isinstance(service, Mapping):
            continue  # a problem, reported by validation
        where = f"services.{key}"
        scope = service.get("scope")
        if isinstance(scope, list) and _JOB_SCOPE not in scope:
            found.append((f"{where}.scope", f"{_json(scope)} lacks \"noninteractive\": "
                          "interactive-only services never start in jobs (add "
                          "\"noninteractive\" to start it beside every pipeline run)"))
            continue  # never started: its other fields do not matter
        if service.get("exposed") is True:
            found.append((f"{where}.exposed", f"true is ignored: {_NOT_EXPOSED}, never "
                          "exposed to a browser (set it to false)"))
        if service.get("requires_authentication") is False:
            found.append((f"{where}.requires_authentication", f"false is ignored: "
                          f"{_NOT_EXPOSED}, no external access to authenticate (remove it)"))
        if service.get("preserve_base_path") is True:
            found.append((f"{where}.preserve_base_path", f"true is ignored: {_NOT_EXPOSED}, "
                          "no proxy in front of it to keep the path for (remove it)"))
    return found


def _gpu_environments(pipeline: Pipeline, project: Project) -> list[Problem]:
    """``gpu_support: true`` on an environment that a step or a job service uses."""
    used = dict.fromkeys(pipeline.environments)
    for service in pipeline.services.values():
        if _starts_in_jobs(service) and isinstance(image := service.get("image"), str) \
                and image.startswith(_ENVIRONMENT_PREFIX):
            used.setdefault(image[len(_ENVIRONMENT_PREFIX):], None)
    try:
        environments = project.environments
    except OrchestError:
        return []  # a malformed environment is a problem, reported by validation
    return [Problem(str(env.folder / "properties.json"), "gpu_support",
                    "true is ignored: containers get no GPU request, so GPU code runs on "
                    "the CPU or fails (set it to false once its steps need no GPU)",
                    warning=True)
            for env in (environments.get(uuid) for uuid in used)
            if env is not None and env.gpu_support]
