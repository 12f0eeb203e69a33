"""Frozen images in a Docker registry: what lets workers on several hosts run one job.

With ``[orchest_jobs] registry`` set, creating a job pushes each environment image to
``<registry>/orchest-frozen/<job>:<key>`` and pins it as ``repo@sha256:...`` (the
manifest digest the registry answered): any worker's engine pulls exactly that image.
Releasing a job deletes those manifests through the registry's HTTP API (the registry
must allow deletes; its blobs go with its own garbage collection) and the local tags.

Docker is imported inside functions only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import OrchestError, Problem

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

#: Manifest media types asked for when reading a tag's digest.
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
TIMEOUT = 10
_LOOPBACK = re.compile(r"(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")


@dataclass(frozen=True)
class Registry:
    """``[orchest_jobs] registry`` taken apart: where images go, how the API is reached."""

    host: str  #: ``host[:port]``, as in image references
    prefix: str  #: path under the host ("" or ``team/orchest``)
    scheme: str  #: ``http`` or ``https``, for the HTTP API

    @classmethod
    def parse(cls, value: str) -> Registry:
        scheme, _, rest = value.rpartition("://")
        host, _, prefix = rest.strip("/").partition("/")
        if not scheme:
            scheme = "http" if _LOOPBACK.match(host) else "https"
        return cls(host=host, prefix=prefix, scheme=scheme)

    def repository(self, name: str) -> str:
        """The image repository (``host/prefix/name``) for ``name``."""
        return "/".join(part for part in (self.host, self.prefix, name) if part)

    def api_name(self, repository: str) -> str:
        """``repository`` as the API names it (without the host)."""
        return repository[len(self.host) + 1:]

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


def _problem(registry: Registry, message: str) -> OrchestError:
    return OrchestError(Problem(f"[orchest_jobs] registry {registry.host}", "", message))


def _auth(client: docker.DockerClient | None, registry: Registry) -> tuple[str, str] | None:
    """Username and password for ``registry`` from the Docker client config, if any."""
    if client is None:
        return None
    try:
        from docker.auth import resolve_authconfig

        # docker-py keeps the loaded config.json private (a listed exception, issue 26).
        auth_configs = client.api._auth_configs  # type: ignore[attr-defined]
        found = resolve_authconfig(auth_configs, registry.host) or {}
    except Exception:  # no config, or one docker-py cannot read: anonymous
        return None
    if found.get("username") and found.get("password"):
        return str(found["username"]), str(found["password"])
    return None


def api(method: str, registry: Registry, path: str, *, client: Any = None,
        headers: Mapping[str, str] | None = None) -> Any:
    """One call to the registry's HTTP API (``/v2`` + ``path``), with basic or token auth."""
    import requests

    url = registry.base_url + "/v2" + path
    headers = dict(headers or {})
    credentials = _auth(client, registry)
    response = requests.request(method, url, headers=headers, timeout=TIMEOUT,
                                auth=credentials)
    challenge = response.headers.get("WWW-Authenticate", "")
    if response.status_code == 401 and challenge.lower().startswith("bearer "):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        params = {k: v for k, v in fields.items() if k in ("service", "scope")}
        token = requests.get(fields.get("realm", ""), params=params, auth=credentials,
                             timeout=TIMEOUT)
        if token.ok:
            body = token.json()
            headers["Authorization"] = f"Bearer {body.get('token') or body.get('access_token')}"
            response = requests.request(method, url, headers=headers, timeout=TIMEOUT)
    return response


def check_reachable(registry: Registry, client: Any = None) -> None:
    """Fail with one clear message when the registry's API does not answer."""
    import requests

    try:
        response = api("GET", registry, "/", client=client)
    except requests.RequestException as exc:
        raise _problem(registry, f"not reachable at {registry.base_url} ({_reason(exc)}); "
                       "the job was not created (nothing frozen, no state written): "
                       "start the registry or fix [orchest_jobs] registry, and the next run "
                       "creates the job") from None
    if response.status_code not in (200, 401):
        raise _problem(registry, f"{registry.base_url}/v2/ answered {response.status_code}; "
                       "is it a Docker registry (distribution API v2)?")


def _reason(exc: Exception) -> str:
    """The gist of a connection error (``[Errno 111] Connection refused``)."""
    found = re.search(r"\[Errno -?\d+\][^\"')]*", str(exc))
    return found.group(0).strip() if found else f"{type(exc).__name__}: {exc}"[:200]


def _push(client: docker.DockerClient, repository: str, tag: str) -> str:
    """Push ``repository:tag``; the manifest digest the registry stored."""
    digest = ""
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise RuntimeError(str(chunk.get("error")).strip())
        aux = chunk.get("aux") or {}
        digest = aux.get("Digest") or digest
    if not digest:
        raise RuntimeError("the engine reported no digest for the push")
    return str(digest)


def push_frozen(client: docker.DockerClient, images: Mapping[str, Any], tags: Mapping[str, str],
                repository: str, value: str) -> dict[str, str]:
    """Push each image as ``<registry>/<repository>:<tag>``; key -> ``repo@sha256:...``.

    All or nothing: on any failure the tags made here are removed and what was pushed is
    deleted again, so a failed job creation leaves no half-frozen job behind.
    """
    registry = Registry.parse(value)
    check_reachable(registry, client)
    target = registry.repository(repository)
    pinned: dict[str, str] = {}
    tagged: list[str] = []
    try:
        for key, image in images.items():
            image.tag(target, tags[key])
            tagged.append(f"{target}:{tags[key]}")
            pinned[key] = f"{target}@{_push(client, target, tags[key])}"
    except Exception as exc:
        _undo(client, registry, tagged, pinned.values())
        raise _problem(registry, f"pushing {tagged[-1] if tagged else target} failed ({exc}); "
                       "the job was not created (nothing frozen, no state written): check the "
                       "registry and the engine's access to it (an http registry must be in "
                       "the engine's insecure-registries), and the next run creates the job"
                       ) from None
    return pinned


def _undo(client: docker.DockerClient, registry: Registry, tagged: list[str],
          pushed: Any) -> None:
    for ref in pushed:
        repository, _, digest = ref.partition("@")
        _delete_manifest(registry, registry.api_name(repository), digest, client)
    _remove_tags(client, tagged)


def _remove_tags(client: docker.DockerClient, tags: list[str]) -> list[str]:
    import docker.errors

    removed = []
    for tag in tags:
        try:
            client.images.remove(tag)
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError as exc:
            log.warning("Could not remove the local tag %s: %s", tag, exc)
            continue
        removed.append(tag)
    return removed


def _delete_manifest(registry: Registry, name: str, digest: str, client: Any) -> bool:
    import requests

    try:
        response = api("DELETE", registry, f"/{name}/manifests/{digest}", client=client)
    except requests.RequestException as exc:
        log.warning("Registry %s unreachable: %s@%s not deleted (%s)", registry.host, name,
                    digest, exc)
        return False
    if response.status_code in (202, 404):
        return response.status_code == 202
    if response.status_code == 405:
        log.warning("Registry %s does not allow deletes: %s@%s kept (enable "
                    "storage.delete in its configuration)", registry.host, name, digest)
    else:
        log.warning("Registry %s answered %s deleting %s@%s: %s", registry.host,
                    response.status_code, name, digest, response.text[:200])
    return False


def release_pushed(client: docker.DockerClient | None, repository: str, value: str) -> list[str]:
    """Delete every manifest of the job's repository in the registry, and its local tags.

    Returns what was removed (``repo@digest`` and ``repo:tag``). An unreachable registry
    or one refusing deletes is logged, never fatal: retention goes on.
    """
    import requests

    registry = Registry.parse(value)
    target = registry.repository(repository)
    name = registry.api_name(target)
    removed: list[str] = []
    local: list[str] = []
    if client is not None:
        for image in client.images.list(name=target):
            local += [tag for tag in image.tags if tag.startswith(target + ":")]
    try:
        response = api("GET", registry, f"/{name}/tags/list", client=client)
        tags = (response.json().get("tags") or []) if response.ok else []
    except (requests.RequestException, ValueError) as exc:
        log.warning("Registry %s unreachable: %s not released there (%s)", registry.host,
                    target, exc)
        tags = []
    digests: set[str] = set()
    for tag in tags:
        try:
            head = api("HEAD", registry, f"/{name}/manifests/{tag}", client=client,
                       headers={"Accept": MANIFEST_TYPES})
        except requests.RequestException as exc:
            log.warning("Registry %s: cannot read %s:%s (%s)", registry.host, name, tag, exc)
            continue
        if head.ok and head.headers.get("Docker-Content-Digest"):
            digests.add(head.headers["Docker-Content-Digest"])
    for digest in sorted(digests):
        if _delete_manifest(registry, name, digest, client):
            removed.append(f"{target}@{digest}")
    if client is not None:
        removed += _remove_tags(client, local)
    return removed


def missing_image_message(image: str, what: str, docker_url: str | None) -> str:
    """Why a step's image pinned by local id is not on this worker's engine, and the fix."""
    return (f"image {image} (frozen for {what}) is not on this worker's Docker engine "
            f"({docker_url}): the job pinned it by local image id, which only the engine that "
            "froze it has (or it was deleted since). With workers on several Docker hosts set "
            "[orchest_jobs] registry (AIRFLOW__ORCHEST_JOBS__REGISTRY): jobs then push their "
            "images there and every worker pulls them by digest. Then re-create the job "
            "(`airflow-orchest-jobs jobs clean`, or delete its state) so it freezes again")
