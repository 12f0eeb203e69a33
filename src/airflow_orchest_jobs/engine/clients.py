"""docker-py clients around the one low-level client the Airflow side opened.

Every engine access starts at the docker provider's ``DockerHook``
(:mod:`airflow_orchest_jobs.operators.dockerhook`), which hands out a connected
``docker.APIClient`` with the installation's TLS files and registry login. Code here is
given that client (or a :data:`Connect` to reach another engine by URL) and never opens
one of its own, so no engine access goes around the Connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker

#: A Docker engine's URL -> a connected low-level client for it (same TLS and login).
Connect = Callable[[str], "docker.APIClient"]


class DockerUnavailable(RuntimeError):
    """The Docker engine cannot be reached: worth a retry, not a user error in a file.

    ``reason``: what the engine access reported, without the fix the message adds."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def high_level(api: docker.APIClient) -> docker.DockerClient:
    """docker-py's object API (``client.images``, ``client.containers``) over ``api``.

    ``DockerClient`` keeps its low-level client in its public ``api`` attribute; giving it
    the hook's client keeps one connection, its TLS and its registry login (pushes and
    pulls authenticate with what the hook logged in). The placeholder it makes first never
    connects (an explicit API version skips version detection).
    """
    import docker

    client = docker.DockerClient(version=api.api_version)
    client.api.close()
    client.api = api
    return client
