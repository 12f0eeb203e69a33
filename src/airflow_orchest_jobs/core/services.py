"""Orchest services beside a pipeline run, as data: which run, in what order, and how.

Pure (no Docker, no Airflow): :mod:`airflow_orchest_jobs.engine.services` turns these
specs into containers. Facts carried over from Orchest (``services/orchest-api/app/app/
core/sessions/_manifests.py``, ``lib/python/orchest-internals/.../utils.py``, SDK 0.3.11):

- a service runs beside every pipeline run of a job when ``noninteractive`` is in its
  ``scope``;
- ``command`` is ONE executable that replaces the image's entrypoint (never split);
  ``args`` is split like a shell line (``shlex``) into the container's arguments; an
  empty ``command`` keeps the image's entrypoint;
- environment: Orchest's ``ORCHEST_*`` variables, then the service's ``env_variables``,
  then the job variables named in ``env_variables_inherit`` that the job has (they win);
- ``binds`` mounts the data folder (``/data``) and the run's project copy
  (``/project-dir``) at the container paths given; nothing is mounted otherwise;
- ``$BASE_PATH_PREFIX`` anywhere in the service becomes ``[pbp-]service-<name>-<run>``;
- the SDK's ``get_service(name)["internal_hostname"]`` is ``<name>-<session uuid>``
  (``ORCHEST_SESSION_UUID``, the run's uuid); the bare name never resolved in Orchest.

Orchest gave each service its own pod; here a run's services and steps share one network
namespace (loopback), so two services of a run cannot listen on one port.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import OrchestError, Problem
from .labels import LABEL_RUN, LABEL_SERVICE
from .model import DATA_DIR, PROJECT_DIR, Pipeline

#: Scope value of services that run in jobs (Orchest's non-interactive sessions).
JOB_SCOPE = "noninteractive"
SCOPES = ("interactive", JOB_SCOPE)
#: Service images that name an Orchest environment instead of a registry image.
ENVIRONMENT_PREFIX = "environment@"
#: Image-map key of a registry image used by a service (steps use environment uuids).
SERVICE_IMAGE_PREFIX = "service-image:"
#: Bind keys Orchest allowed, and which host folder each one means.
BIND_KINDS = (DATA_DIR, PROJECT_DIR)
#: ``LABEL_SERVICE`` value of the container that owns a run's network namespace.
HOLDER = "holder"
#: Where every service hostname points: the run's shared loopback.
LOOPBACK = "127.0.0.1"

_NAME = re.compile(r"^[a-z][0-9a-z-]{0,25}$")
_ENV_NAME = re.compile(r"^[0-9a-zA-Z\-_]+$")
_BASE_PATH = "$BASE_PATH_PREFIX"


@dataclass(frozen=True)
class ServiceSpec:
    """One service's container for one run, everything but host paths and pinned images."""

    name: str
    #: ``<name>-<run uuid>``: what ``orchest.get_service(name)["internal_hostname"]`` says.
    hostname: str
    #: As written (after ``$BASE_PATH_PREFIX``): a registry reference or environment@<uuid>.
    image: str
    #: Key of the pinned reference in the run's image map (see :func:`service_image_key`).
    image_key: str
    order: int
    #: Entrypoint override (``[command]``), or None to keep the image's.
    command: tuple[str, ...] | None
    #: Container arguments (``shlex.split(args)``), or None to keep the image's default.
    args: tuple[str, ...] | None
    #: ``ORCHEST_*`` variables then ``env_variables``; inherited names are added at start.
    env: Mapping[str, str]
    inherit: tuple[str, ...]
    #: (``/data`` or ``/project-dir``, container path), in file order.
    binds: tuple[tuple[str, str], ...]
    ports: tuple[int, ...]
    labels: Mapping[str, str] = field(default_factory=dict)

    def environment(self, job_env: Mapping[str, Any]) -> dict[str, str]:
        """The container's variables: inherited job variables win over the service's."""
        env = dict(self.env)
        for name in self.inherit:
            if name in job_env:
                env[name] = str(job_env[name])
        return env


def holder_name(run_uuid: str) -> str:
    """Name of the container that owns a run's network namespace (steps join it)."""
    return f"orchest-run-{run_uuid}"


def service_container_name(run_uuid: str, name: str) -> str:
    """Name of a service's container: found again (and replaced) on a retry of the run."""
    return f"{holder_name(run_uuid)}-{name}"


def service_hostname(name: str, run_uuid: str) -> str:
    """The SDK's ``internal_hostname``: ``<name>-<session uuid>``."""
    return f"{name}-{run_uuid}"


def runs_in_jobs(service: Any) -> bool:
    """Whether Orchest started this service beside every pipeline run of a job."""
    if not isinstance(service, Mapping):
        return False
    scope = service.get("scope")
    return isinstance(scope, list | tuple) and JOB_SCOPE in scope


def job_services(services: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(key, service) of the services a job run starts, by ``order`` then name."""
    chosen = [(key, s) for key, s in services.items() if runs_in_jobs(s)]

    def rank(item: tuple[str, Mapping[str, Any]]) -> tuple[float, str]:
        order = item[1].get("order")
        name = str(item[1].get("name", item[0]))
        if isinstance(order, int) and not isinstance(order, bool):
            return (order, name)
        return (float("inf"), name)

    return sorted(chosen, key=rank)


def service_image_key(image: str) -> str:
    """Image-map key: the environment uuid (as steps use) or ``service-image:<ref>``."""
    if image.startswith(ENVIRONMENT_PREFIX):
        return image[len(ENVIRONMENT_PREFIX):]
    return SERVICE_IMAGE_PREFIX + image


def service_image_refs(
    services: Mapping[str, Any], environment_ref: Callable[[str], str]
) -> dict[str, str]:
    """Image key -> reference to pin, for every service a job run starts.

    ``environment_ref`` gives an environment's image (the same rule steps use), so a
    freeze pins service images with the job exactly like step images.
    """
    refs: dict[str, str] = {}
    for _key, service in job_services(services):
        image = service.get("image")
        if not isinstance(image, str) or not image:
            continue  # reported by service_problems
        key = service_image_key(image)
        if key not in refs:
            refs[key] = environment_ref(key) if image.startswith(ENVIRONMENT_PREFIX) else image
    return refs


def duplicate_port_problems(file: str, services: Mapping[str, Any]) -> list[Problem]:
    """One problem per port that two (or more) services of a job run declare.

    In Orchest each service had its own address; here they share the run's loopback, so
    the second one to listen would fail.
    """
    owners: dict[int, list[str]] = {}
    for key, service in job_services(services):
        ports = service.get("ports")
        if not isinstance(ports, list):
            continue
        for port in dict.fromkeys(p for p in ports if _is_port(p)):
            owners.setdefault(port, []).append(key)
    problems = []
    for port, keys in owners.items():
        if len(keys) > 1:
            names = " and ".join(repr(k) for k in keys)
            problems.append(Problem(
                file, f"services.{keys[1]}.ports",
                f"port {port} is also declared by service {keys[0]!r} (services {names} "
                "listen on one port); services of a run share one network here, so give "
                "each service its own port"))
    return problems


def service_problems(file: str, services: Mapping[str, Any]) -> list[Problem]:
    """Orchest's rules for a service definition, for the services a job run starts.

    Orchest refused definitions breaking these rules; ``service_specs`` needs them to hold.
    """
    problems: list[Problem] = []
    for key, service in services.items():
        where = f"services.{key}"
        if not isinstance(service, Mapping):
            problems.append(Problem(file, where, "must be an object"))
            continue
        scope = service.get("scope")
        if not isinstance(scope, list) or not all(s in SCOPES for s in scope):
            problems.append(Problem(file, f"{where}.scope", "must be a list of "
                                    '"interactive" and/or "noninteractive"'))
            continue
        if JOB_SCOPE in scope:
            problems.extend(_one_service_problems(file, key, service))
    return problems + duplicate_port_problems(file, services)


def _one_service_problems(file: str, key: str, service: Mapping[str, Any]) -> list[Problem]:
    where = f"services.{key}"
    out: list[Problem] = []

    def bad(part: str, message: str) -> None:
        out.append(Problem(file, f"{where}.{part}", message))

    name = service.get("name", key)
    if not isinstance(name, str) or not _NAME.match(name):
        bad("name", f"{name!r} is not a valid service name; use 1-26 lower-case letters, "
            "digits and '-', starting with a letter")
    elif name != key:
        bad("name", f"is {name!r} but the service is stored under key {key!r}; make the "
            "two equal")
    image = service.get("image")
    if not isinstance(image, str) or not image.strip() or image == ENVIRONMENT_PREFIX:
        bad("image", "missing; name a registry image or environment@<environment uuid>")
    for part in ("command", "args"):
        value = service.get(part, "")
        if not isinstance(value, str):
            bad(part, "must be a string")
    args = service.get("args", "")
    if isinstance(args, str):
        try:
            shlex.split(args)
        except ValueError as exc:
            bad("args", f"cannot be split like a shell line ({exc}); close the quotes")
    binds = service.get("binds", {})
    if not isinstance(binds, Mapping):
        bad("binds", 'must be an object like {"/data": "/data"}')
    else:
        for source, target in binds.items():
            if source not in BIND_KINDS:
                bad("binds", f"{source!r} cannot be mounted; only /data and /project-dir")
            elif not isinstance(target, str) or not target.startswith("/"):
                bad("binds", f"{source} must map to an absolute container path")
    ports = service.get("ports")
    if not isinstance(ports, list) or not ports or not all(_is_port(p) for p in ports):
        bad("ports", "must be a non-empty list of port numbers (1-65535)")
    env = service.get("env_variables", {})
    if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str)
            for k, v in env.items()):
        bad("env_variables", "must map names of letters, digits, '-' and '_' to strings")
    inherit = service.get("env_variables_inherit", [])
    if not isinstance(inherit, list) or not all(
            isinstance(n, str) and _ENV_NAME.match(n) for n in inherit):
        bad("env_variables_inherit", "must be a list of variable names (letters, digits, "
            "'-' and '_')")
    return out


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def service_specs(pipeline: Pipeline, run_uuid: str, project_uuid: str) -> list[ServiceSpec]:
    """The containers one run starts beside its steps, in start order.

    Raises :class:`OrchestError` with every problem when a service cannot be run.
    """
    file = str(pipeline.path)
    problems = service_problems(file, pipeline.services)
    if problems:
        raise OrchestError(problems)
    specs = []
    for key, raw in job_services(pipeline.services):
        name = raw.get("name", key)
        service = _substitute(raw, _base_path(name, run_uuid, raw))
        binds = tuple((k, posixpath.normpath(v)) for k, v in service.get("binds", {}).items())
        project_at = dict(binds).get(PROJECT_DIR, PROJECT_DIR)
        env = {
            "ORCHEST_PROJECT_UUID": project_uuid,
            "ORCHEST_PIPELINE_UUID": pipeline.uuid,
            # The run's definition (parameters substituted) in the project copy, when bound.
            "ORCHEST_PIPELINE_PATH": posixpath.join(project_at, str(pipeline.rel_path)),
            "ORCHEST_SESSION_UUID": run_uuid,
            "ORCHEST_SESSION_TYPE": JOB_SCOPE,
        }
        env.update(service.get("env_variables", {}))
        command = service.get("command", "")
        specs.append(ServiceSpec(
            name=name,
            hostname=service_hostname(name, run_uuid),
            image=service["image"],
            image_key=service_image_key(service["image"]),
            order=order if isinstance(order := raw.get("order"), int) else 0,
            command=(command,) if command else None,
            args=tuple(shlex.split(service["args"])) if service.get("args") else None,
            env=env,
            inherit=tuple(service.get("env_variables_inherit", [])),
            binds=binds,
            ports=tuple(dict.fromkeys(service["ports"])),
            labels={LABEL_RUN: run_uuid, LABEL_SERVICE: name},
        ))
    return specs


def extra_hosts(specs: list[ServiceSpec]) -> dict[str, str]:
    """Hostname -> loopback for the holder, so steps and services resolve each other."""
    return {spec.hostname: LOOPBACK for spec in specs}


def _base_path(name: str, run_uuid: str, service: Mapping[str, Any]) -> str:
    pbp = "pbp-" if service.get("preserve_base_path", False) is True else ""
    return f"{pbp}service-{name}-{run_uuid}"


def _substitute(value: Any, base_path: str) -> Any:
    """Orchest's templating: ``$BASE_PATH_PREFIX`` in every string of the service."""
    if isinstance(value, str):
        return value.replace(_BASE_PATH, base_path)
    if isinstance(value, Mapping):
        return {_substitute(k, base_path): _substitute(v, base_path) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, base_path) for v in value]
    return value
