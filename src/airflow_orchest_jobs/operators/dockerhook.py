"""The one way to a Docker engine: the docker provider's ``DockerHook``, configured once.

Steps (the step operator's ``hook``), services, image freezing and building, registry
pushes, engine fencing, ``finalize``'s container sweep and the Celery worker's sweep all
reach their engine here, so each gets the same ``[orchest_jobs]`` settings:

* ``docker_url`` (or the URL an earlier try recorded, for another worker's engine);
* ``docker_conn_id``: an Airflow Connection of type ``docker``. Its host, login and
  password are a registry the hook logs the engine in to (pulls and pushes then carry that
  login; the registry's HTTP API gets it too); its extra may name ``tls_ca_cert``,
  ``tls_client_cert`` and ``tls_client_key`` (they win over the settings). A Connection
  without a host only carries TLS files;
* ``tls_ca_cert``, ``tls_client_cert``, ``tls_client_key``: a TLS engine
  (``dockerd --tlsverify``), as ``DockerHook.construct_tls_config`` builds it.

Every engine of one installation is taken to accept the same TLS client certificate.
The engine layer (:mod:`airflow_orchest_jobs.engine`, ``images``, ``hosts``, ``registry``)
is handed the docker-py clients made here and never imports Airflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.settings import SECTION, TLS_OPTIONS
from ..engine.clients import Connect, DockerUnavailable, high_level
from ..engine.images import unreachable_message
from ..engine.registry import Registry

if TYPE_CHECKING:
    import docker
    from airflow.providers.docker.hooks.docker import DockerHook
    from docker.tls import TLSConfig

    from ..core.settings import Settings

#: docker-py's default seconds per API call (``docker.constants.DEFAULT_TIMEOUT_SECONDS``).
DEFAULT_TIMEOUT = 60
#: Seconds to reach another try's engine before taking its host to be gone.
REMOTE_TIMEOUT = 5


@dataclass(frozen=True)
class EngineAccess:
    """What every engine access uses, read once from the settings and the Connection."""

    #: The Connection the hook logs the engine in with (None: it names no registry).
    login_conn_id: str | None
    tls: TLSConfig | bool
    #: The Connection's registry (``host[:port]``) and its login, for the registry's API.
    registry: str = ""
    registry_auth: tuple[str, str] | None = None


def engine_access(settings: Settings, docker_conn_id: str | None = None,
                  tls_files: Mapping[str, str | None] | None = None) -> EngineAccess:
    """The Connection and TLS files in force (an operator's own arguments win)."""
    from airflow.providers.docker.hooks.docker import DockerHook

    conn_id = docker_conn_id or settings.docker_conn_id
    files = {key: str(getattr(settings, key) or "") for key in TLS_OPTIONS}
    login_conn_id, registry, auth = None, "", None
    if conn_id:
        try:
            conn = DockerHook.get_connection(conn_id)
        except Exception as exc:
            raise DockerUnavailable(
                f"[{SECTION}] docker_conn_id: cannot read the Connection {conn_id!r} "
                f"({type(exc).__name__}: {exc}); create it (type docker) or clear the "
                "setting") from None
        extra = conn.extra_dejson or {}
        files.update({key: str(extra[key]) for key in TLS_OPTIONS if extra.get(key)})
        if conn.host:
            login_conn_id = conn_id
            registry = f"{conn.host}:{conn.port}" if conn.port else str(conn.host)
            if conn.login:
                auth = (str(conn.login), str(conn.password or ""))
    files.update({key: str(value) for key, value in (tls_files or {}).items() if value})
    return EngineAccess(login_conn_id, _tls(files), registry, auth)


def _tls(files: Mapping[str, str]) -> TLSConfig | bool:
    from airflow.providers.docker.hooks.docker import DockerHook

    given = [key for key in TLS_OPTIONS if files.get(key)]
    if not given:
        return False
    if len(given) < len(TLS_OPTIONS):
        missing = next(key for key in TLS_OPTIONS if key not in given)
        raise DockerUnavailable(f"[{SECTION}] {missing} is not set while {given[0]} is; a TLS "
                                "Docker engine needs all three tls_ files")
    for key in TLS_OPTIONS:
        if not os.path.isfile(files[key]):
            raise DockerUnavailable(f"[{SECTION}] {key}: no file {files[key]}; point it at "
                                    "the PEM file (or clear all three tls_ settings)")
    return DockerHook.construct_tls_config(ca_cert=files["tls_ca_cert"],
                                           client_cert=files["tls_client_cert"],
                                           client_key=files["tls_client_key"])


def engine_hook(settings: Settings, docker_url: str | None = None, *,
                timeout: int = DEFAULT_TIMEOUT, docker_conn_id: str | None = None,
                tls_files: Mapping[str, str | None] | None = None) -> DockerHook:
    """The docker provider's hook for ``docker_url`` (default: ``[orchest_jobs]
    docker_url``) with the installation's Connection and TLS files; not connected yet."""
    from airflow.providers.docker.hooks.docker import DockerHook

    access = engine_access(settings, docker_conn_id, tls_files)
    return DockerHook(docker_conn_id=access.login_conn_id,
                      base_url=docker_url or settings.docker_url, tls=access.tls,
                      timeout=timeout)


def engine_api(settings: Settings, docker_url: str | None = None, *,
               timeout: int = DEFAULT_TIMEOUT) -> docker.APIClient:
    """A connected (pinged, logged-in) low-level client; :class:`DockerUnavailable` with
    the URL and the fix when the engine cannot be reached."""
    import docker.errors
    from airflow.providers.common.compat.sdk import AirflowException

    url = docker_url or settings.docker_url
    try:
        return engine_hook(settings, url, timeout=timeout).get_conn()
    except AirflowException as exc:
        raise DockerUnavailable(unreachable_message(url, exc), reason=str(exc)) from None
    except docker.errors.APIError as exc:  # the registry login of the Connection
        raise DockerUnavailable(f"the Docker engine at {url} could not log in to the registry "
                                f"of [{SECTION}] docker_conn_id {settings.docker_conn_id!r} "
                                f"({exc}); fix the Connection's host, login or password"
                                ) from None


def engine_client(settings: Settings, docker_url: str | None = None, *,
                  timeout: int = DEFAULT_TIMEOUT) -> docker.DockerClient:
    """docker-py's object API over :func:`engine_api`'s client."""
    return high_level(engine_api(settings, docker_url, timeout=timeout))


def remote_connector(settings: Settings, timeout: int = REMOTE_TIMEOUT) -> Connect:
    """Reach another worker's engine by its recorded URL, as this one is reached."""

    def connect(url: str) -> Any:
        return engine_api(settings, url, timeout=timeout)

    return connect


def registry_auth(settings: Settings, registry: str | None = None) -> tuple[str, str] | None:
    """The Connection's login when its host is ``registry`` (default: ``[orchest_jobs]
    registry``); None leaves the registry's HTTP API to the Docker config file's."""
    value = settings.registry if registry is None else registry
    if not value or not settings.docker_conn_id:
        return None
    access = engine_access(settings)
    if access.registry_auth and access.registry == Registry.parse(value).host:
        return access.registry_auth
    return None
