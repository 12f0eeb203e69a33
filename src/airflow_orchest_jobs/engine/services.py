"""Start, await and remove the Orchest services of one pipeline run (Docker containers).

One *holder* container per run owns the run's network namespace: it is started with the
configured network mode and an ``/etc/hosts`` entry per service hostname pointing at
loopback; services (and the run's steps) join it with ``network_mode=container:<holder>``
and so share its loopback and its ``/etc/hosts``. Readiness is read from inside that
namespace (``/proc/net/tcp*`` through ``docker exec`` in the holder), so it works against
a remote engine and never needs a bridge address.

The specs come from :mod:`airflow_orchest_jobs.core.services`. Docker is imported inside
functions only: DAG parsing never loads it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..core.labels import LABEL_JOB, LABEL_RUN, LABEL_SERVICE
from ..core.model import DATA_DIR, PROJECT_DIR
from ..core.services import (
    HOLDER,
    ServiceSpec,
    extra_hosts,
    holder_name,
    service_container_name,
)

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

#: The holder's command: idle until TERM (``docker stop``), then exit 0 at once.
HOLDER_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
#: Seconds a stopped service gets between SIGTERM and removal (Orchest gave pods 5).
STOP_TIMEOUT = 3.0
#: Log lines quoted when a service fails.
LOG_LINES = 20
_LISTEN = "0A"


class ServiceStartError(RuntimeError):
    """A run's service did not come up; the message names it, why, and its last logs.

    Everything the run had started is removed before this is raised.
    """

    def __init__(self, message: str, *, service: str, run_uuid: str, logs: str = ""):
        self.service = service
        self.run_uuid = run_uuid
        self.logs = logs
        if logs:
            message += f"; its last log lines:\n{logs}"
        super().__init__(message)


def start_run_services(
    client: docker.DockerClient,
    run_uuid: str,
    specs: Sequence[ServiceSpec],
    images: Mapping[str, str],
    network_mode: str,
    data_dir: Path | str,
    project_dir: Path | str,
    job_env: Mapping[str, Any],
    job_key: str,
    user: str | None = None,
    timeout: float = 60.0,
    *,
    holder_image: str | None = None,
    poll: float = 0.25,
) -> str:
    """Start the run's holder and services in ``specs`` order; return once all are up.

    ``images``: pinned reference per image key (``spec.image_key``); ``holder_image``: the
    run's first step image (default: the first reference in ``images``). ``data_dir`` and
    ``project_dir`` (the run's project copy) are host paths for the ``binds``. ``user``:
    who services and holder run as (None: the image's user; Orchest ran services as
    root). A service is up when it runs and something listens on each of its ports;
    ``timeout`` bounds the whole wait. Returns the holder's name, for the steps'
    ``network_mode="container:<name>"``. Raises :class:`ServiceStartError`.
    """
    import docker

    holder = holder_name(run_uuid)
    refs = _image_refs(run_uuid, specs, images)
    holder_ref = holder_image or next(iter(images.values()), None)
    if holder_ref is None:
        raise ServiceStartError(f"run {run_uuid}: no image for the network holder; pass "
                                "holder_image (the run's first step image)",
                                service=HOLDER, run_uuid=run_uuid)
    stop_run_services(client, run_uuid)  # a retry of the run replaces its leftovers
    _remove_named(client, [holder, *(service_container_name(run_uuid, s.name) for s in specs)])
    hosts = {"data": str(data_dir), "project": str(project_dir)}
    started: list[tuple[ServiceSpec, Container]] = []
    current = HOLDER
    try:
        holder_box = _create(
            client, image=holder_ref, name=holder, command=["/bin/sh", "-c", HOLDER_SCRIPT],
            network_mode=network_mode, extra_hosts=extra_hosts(list(specs)),
            labels=_labels(run_uuid, HOLDER, job_key), user=user)
        for spec in specs:
            current = spec.name
            box = _create(
                client, image=refs[spec.name], name=service_container_name(run_uuid, spec.name),
                entrypoint=list(spec.command) if spec.command else None,
                command=list(spec.args) if spec.args else None,
                environment=spec.environment(job_env),
                network_mode=f"container:{holder}",
                mounts=[_mount(kind, target, hosts) for kind, target in spec.binds],
                labels=_labels(run_uuid, spec.name, job_key), user=user)
            started.append((spec, box))
        _await(holder_box, started, run_uuid, timeout, poll)
    except ServiceStartError:
        stop_run_services(client, run_uuid)
        raise
    except docker.errors.APIError as exc:
        what = "network holder" if current == HOLDER else f"service {current!r}"
        error = ServiceStartError(
            f"{what} of run {run_uuid} could not start: {exc.explanation or exc}",
            service=current, run_uuid=run_uuid)
        stop_run_services(client, run_uuid)
        raise error from exc
    except BaseException:
        stop_run_services(client, run_uuid)
        raise
    return holder


def stop_run_services(
    client: docker.DockerClient, run_uuid: str, timeout: float = STOP_TIMEOUT
) -> list[str]:
    """Stop (SIGTERM, then kill after ``timeout``) and remove a run's holder and services.

    Found by label, whatever their state; the run's step containers (same run label, no
    service label) are left alone. Idempotent; returns the names removed.
    """
    boxes = _find(client, [f"{LABEL_RUN}={run_uuid}", LABEL_SERVICE])
    return _stop_and_remove(boxes, timeout)


def remove_leftovers(
    client: docker.DockerClient, job_key: str, keep_run_uuids: Collection[str],
    timeout: float = STOP_TIMEOUT,
) -> list[str]:
    """Remove the service containers of ``job_key``'s runs not in ``keep_run_uuids``.

    For what a killed worker left behind. Returns the run uuids cleaned, sorted.
    """
    keep = set(keep_run_uuids)
    boxes = [b for b in _find(client, [f"{LABEL_JOB}={job_key}", LABEL_SERVICE])
             if b.labels.get(LABEL_RUN) not in keep]
    runs = sorted({b.labels.get(LABEL_RUN, "") for b in boxes})
    _stop_and_remove(boxes, timeout)
    return runs


def listening_ports(holder: Container) -> set[int]:
    """TCP ports something listens on in the holder's network namespace."""
    result = holder.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], demux=True)
    # demux=True gives a (stdout, stderr) pair; docker-stubs types output without demux.
    stdout, stderr = (cast("tuple[bytes | None, bytes | None]", result.output)
                      if result.output else (None, None))
    text = (stdout or b"").decode("ascii", "replace")
    if "local_address" not in text:  # tcp6 may be missing (IPv6 off); tcp never is
        why = (stderr or b"").decode("utf-8", "replace").strip() or f"exit {result.exit_code}"
        raise RuntimeError(f"cannot read /proc/net/tcp in container {holder.name} ({why}); "
                           "the holder image needs cat")
    ports = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == _LISTEN and ":" in fields[1]:
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return ports


def _image_refs(run_uuid: str, specs: Sequence[ServiceSpec],
                images: Mapping[str, str]) -> dict[str, str]:
    refs = {}
    for spec in specs:
        ref = images.get(spec.image_key)
        if not ref:
            raise ServiceStartError(
                f"service {spec.name!r} of run {run_uuid}: no pinned image for "
                f"{spec.image!r} (key {spec.image_key!r}); freeze the job's service images "
                "with its step images", service=spec.name, run_uuid=run_uuid)
        refs[spec.name] = ref
    return refs


def _labels(run_uuid: str, service: str, job_key: str) -> dict[str, str]:
    return {LABEL_RUN: run_uuid, LABEL_SERVICE: service, LABEL_JOB: job_key}


def _mount(kind: str, target: str, hosts: Mapping[str, str]) -> Any:
    from docker.types import Mount

    assert kind in (DATA_DIR, PROJECT_DIR), kind  # core.services allows no other bind
    source = hosts["data"] if kind == DATA_DIR else hosts["project"]
    return Mount(target=target, source=source, type="bind", read_only=False)


def _create(client: docker.DockerClient, *, image: str, name: str, user: str | None,
            **options: Any) -> Container:
    """Create and start one container (never pulls: images are pinned and local)."""
    if user:
        options["user"] = user
    box = client.containers.create(image=image, name=name, detach=True, **options)
    box.start()
    return box


def _await(holder: Container, started: list[tuple[ServiceSpec, Container]], run_uuid: str,
           timeout: float, poll: float) -> None:
    """Until every service runs and listens on its ports; a clear error otherwise."""
    deadline = time.monotonic() + timeout
    pending = list(started)
    while True:
        holder.reload()
        if holder.status != "running":
            code = holder.attrs.get("State", {}).get("ExitCode")
            raise ServiceStartError(
                f"the network holder of run {run_uuid} stopped (exit code {code}) while its "
                "services started", service=HOLDER, run_uuid=run_uuid, logs=_tail(holder))
        for spec, box in pending:
            box.reload()
            if box.status != "running":
                state = box.attrs.get("State", {})
                how = f"exited with code {state.get('ExitCode')}"
                if state.get("OOMKilled"):
                    how += " (out of memory)"
                ports = ", ".join(map(str, spec.ports))
                raise ServiceStartError(
                    f"service {spec.name!r} of run {run_uuid} {how} before it listened on "
                    f"port {ports}", service=spec.name, run_uuid=run_uuid, logs=_tail(box))
        try:
            listening = listening_ports(holder) if any(s.ports for s, _ in pending) else set()
        except RuntimeError as exc:
            raise ServiceStartError(f"run {run_uuid}: {exc}", service=HOLDER,
                                    run_uuid=run_uuid) from exc
        pending = [(s, b) for s, b in pending if not set(s.ports) <= listening]
        if not pending:
            return
        if time.monotonic() >= deadline:
            spec, box = pending[0]
            missing = ", ".join(str(p) for p in spec.ports if p not in listening)
            raise ServiceStartError(
                f"service {spec.name!r} of run {run_uuid} did not listen on port {missing} "
                f"within {timeout:g} s (it is still running; does it listen on that port?)",
                service=spec.name, run_uuid=run_uuid, logs=_tail(box))
        time.sleep(poll)


def _tail(box: Container) -> str:
    try:
        return box.logs(tail=LOG_LINES).decode("utf-8", "replace").rstrip()
    except Exception:  # logs are a courtesy in an error message
        return ""


def _find(client: docker.DockerClient, labels: list[str]) -> list[Container]:
    return client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)


def _stop_and_remove(boxes: list[Container], timeout: float) -> list[str]:
    """SIGTERM all at once, wait up to ``timeout`` together, then force-remove."""
    import docker

    for box in boxes:
        try:
            if box.status in ("running", "restarting"):
                box.kill(signal="SIGTERM")
        except docker.errors.APIError:
            pass  # gone, or not running any more
    deadline = time.monotonic() + timeout
    waiting = list(boxes)
    while waiting and time.monotonic() < deadline:
        still = []
        for box in waiting:
            try:
                box.reload()
            except docker.errors.NotFound:
                continue
            if box.status in ("running", "restarting"):
                still.append(box)
        waiting = still
        if waiting:
            time.sleep(0.1)
    removed = []
    for box in boxes:
        try:
            box.remove(force=True)
            removed.append(str(box.name))  # a container always has a name
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
    return removed


def _remove_named(client: docker.DockerClient, names: list[str]) -> None:
    """Remove containers by name (a leftover without our labels would block the name)."""
    import docker

    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
