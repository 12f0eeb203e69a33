"""Forward migration of pipeline documents, step by step as Orchest did on every read.

Each function brings a document from one version to the next, in place. Files with no
version (including the legacy layout with a Docker ``image`` per step) start at 1.0.0.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Container
from typing import Any

LATEST = "1.2.3"
_ENV_NAME = re.compile(r"^[0-9a-zA-Z\-_]+$")
#: Default service ports Orchest filled in when a pre-1.2 service had none.
_DEFAULT_PORTS = (
    ("redis", 6379), ("postgres", 5432), ("streamlit", 8501), ("mysql", 3306),
    ("rabbitmq", 5672), ("tensorflow", 6006), ("voila", 8866), ("mlflow", 5000),
    ("shiny", 8000),
)


def _unique(name: str, taken: Container[str]) -> str:
    candidate, i = name, 2
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _valid_env_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z\-_]", "_", name) or "_"


def _from_1_0_0(doc: dict[str, Any]) -> None:
    """Add missing parameters; make service env variable names valid; kernel ir -> r."""
    doc.setdefault("parameters", {})
    for service in doc.get("services", {}).values():
        env = service.get("env_variables", {})
        if not all(_ENV_NAME.match(k) for k in env):
            fixed: dict[str, Any] = {}
            for key, value in env.items():
                fixed[_unique(_valid_env_name(key), fixed)] = value
            service["env_variables"] = fixed
        inherit: list[str] = []
        for name in service.get("env_variables_inherit", []):
            inherit.append(_unique(_valid_env_name(name), inherit))
        service["env_variables_inherit"] = inherit
    for step in doc["steps"].values():
        kernel = step.get("kernel")
        if isinstance(kernel, dict) and kernel.get("name") == "ir":
            kernel["name"] = "r"


def _from_1_1_0(doc: dict[str, Any]) -> None:
    """Services: entrypoint becomes command, old command becomes args; ports and flags."""
    for service in doc.get("services", {}).values():
        if "entrypoint" in service:
            if "command" in service:
                service["args"] = service.pop("command")
            service["command"] = service.pop("entrypoint")
        if not service.get("ports"):
            image = str(service.get("image", "")).lower()
            service["ports"] = [next((p for key, p in _DEFAULT_PORTS if key in image), 8080)]
        service.setdefault("exposed", False)
        service.setdefault("requires_authentication", True)


def _from_1_2_0(doc: dict[str, Any]) -> None:
    """Give every service a unique ``order`` (explicit orders kept, the rest by key)."""
    services = doc.get("services")
    if not services:
        return
    used = sorted(s["order"] for s in services.values() if isinstance(s.get("order"), int))
    top = used[-1] if used else -1
    for key in sorted(k for k, s in services.items() if not isinstance(s.get("order"), int)):
        top += 1
        services[key]["order"] = top


def _from_1_2_1(doc: dict[str, Any]) -> None:
    """Service names become RFC-1035 safe (lower case, start with a letter, <= 26 chars)."""
    services = doc.get("services")
    if not services:
        return
    renamed: dict[str, dict[str, Any]] = {}
    for key, service in services.items():
        name = str(service.get("name", key)).lower()
        start = next((i for i, c in enumerate(name) if c.isalpha() and c.isascii()), len(name))
        name = name[start : start + 26] or str(uuid.uuid5(uuid.NAMESPACE_URL, key))[:26]
        if name in renamed:
            name = str(uuid.uuid5(uuid.NAMESPACE_URL, key + name))[:26]
        service["name"] = name
        renamed[name] = service
    doc["services"] = renamed


def _from_1_2_2(doc: dict[str, Any]) -> None:
    doc.setdefault("settings", {}).setdefault("max_steps_parallelism", 0)


MIGRATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "1.0.0": (_from_1_0_0, "1.1.0"),
    "1.1.0": (_from_1_1_0, "1.2.0"),
    "1.2.0": (_from_1_2_0, "1.2.1"),
    "1.2.1": (_from_1_2_1, "1.2.2"),
    "1.2.2": (_from_1_2_2, LATEST),
}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring ``doc`` (already schema-checked) to :data:`LATEST`, in place; returns it."""
    if not doc.get("version"):
        doc["version"] = "1.0.0"
    while doc["version"] in MIGRATIONS:
        step, next_version = MIGRATIONS[doc["version"]]
        step(doc)
        doc["version"] = next_version
    # Normalise what every later stage relies on (the legacy layout lacks these).
    doc.setdefault("name", "")
    doc.setdefault("parameters", {})
    settings = doc.setdefault("settings", {})
    settings.setdefault("auto_eviction", False)
    settings.setdefault("data_passing_memory_size", "1GB")
    settings.setdefault("max_steps_parallelism", 0)
    doc.setdefault("services", {})
    for key, step in doc["steps"].items():
        step.setdefault("title", key)
        step.setdefault("incoming_connections", [])
        step.setdefault("parameters", {})
    return doc
