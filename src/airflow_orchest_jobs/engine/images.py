"""Environment images: which image each step runs, pinning them for a job, building them.

Orchest locked the newest image of every environment when a job was created, so
rebuilding an environment later did not change the job. Here ``freeze`` pins each image
to an immutable reference and gives it a tag owned by the job, so re-tagging or pruning
the environment's tag cannot take it away; ``release`` drops those tags again.

Docker is imported inside functions only: the CLI and DAG parsing never load it.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import load_settings
from ..core.errors import OrchestError, Problem
from ..core.labels import LABEL_ENVIRONMENT, LABEL_PROJECT
from ..core.model import PROJECT_DIR, Pipeline, Step
from ..core.project import Environment, Project
from ..core.snapshot.selection import select
from .tarball import add_bytes, add_tree

if TYPE_CHECKING:
    import docker

#: Orchest's image name pattern for environments (tag ``latest`` here, not a build number).
ENV_IMAGE = "orchest-env-{project_uuid}-{env_uuid}"
#: Keys of legacy steps that name a Docker image instead of an environment.
LEGACY_PREFIX = "image:"
#: Repository of the tags that keep a job's images alive.
FROZEN_REPOSITORY = "orchest-frozen"
BUILD_FIX = (
    "build it with `airflow-orchest-jobs environments build PROJECT_DIR`, or set "
    "[orchest_jobs] environment_images to an image that exists"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class DockerUnavailable(RuntimeError):
    """The Docker engine cannot be reached: worth a retry, not a user error in a file."""


def docker_client(docker_url: str) -> docker.DockerClient:
    """A client for ``docker_url`` that has answered a ping (clear error otherwise)."""
    import docker

    try:
        client = docker.DockerClient(base_url=docker_url)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(unreachable_message(docker_url, exc)) from exc
    return client


def unreachable_message(docker_url: str, exc: object) -> str:
    return (
        f"Docker engine not reachable at {docker_url} ({exc}); start Docker there, or point "
        "[orchest_jobs] docker_url (AIRFLOW__ORCHEST_JOBS__DOCKER_URL) at a running engine"
    )


def environment_image(project_uuid: str, env_uuid: str) -> str:
    """The tag an environment's image is looked up (and built) under."""
    return ENV_IMAGE.format(project_uuid=project_uuid, env_uuid=env_uuid) + ":latest"


def image_key(step: Step) -> str:
    """Key of a step's image in a job's image map: its environment uuid, or its legacy image."""
    if step.environment:
        return step.environment
    if step.image:
        return LEGACY_PREFIX + step.image
    raise OrchestError.single(
        f"step {step.uuid}", "environment", "names no environment (nor a legacy image); "
        "choose one of the project's environments for the step"
    )


def describe_key(key: str) -> str:
    """``environment <uuid>`` or ``image <ref>``, for messages."""
    if key.startswith(LEGACY_PREFIX):
        return f"image {key[len(LEGACY_PREFIX):]}"
    return f"environment {key}"


def resolve_images(
    pipeline: Pipeline, project_uuid: str, environment_images: Mapping[str, str]
) -> dict[str, str]:
    """Image reference per image key of ``pipeline``'s steps (no Docker access).

    ``environment_images`` (an environment uuid, or ``"*"`` for any) wins over the
    ``orchest-env-<project-uuid>-<env-uuid>`` tag; a legacy step's image is used as given.
    """
    refs: dict[str, str] = {}
    for step in pipeline.steps.values():
        key = image_key(step)
        if key in refs:
            continue
        if key.startswith(LEGACY_PREFIX):
            refs[key] = key[len(LEGACY_PREFIX):]
        else:
            refs[key] = environment_ref(key, project_uuid, environment_images)
    return refs


def environment_ref(env_uuid: str, project_uuid: str,
                    environment_images: Mapping[str, str]) -> str:
    """An environment's image: mapped in ``environment_images``, else Orchest's tag."""
    return (environment_images.get(env_uuid) or environment_images.get("*")
            or environment_image(project_uuid, env_uuid))


def job_image_owner(store_dir: Path, job_key: str) -> str:
    """Who frozen tags belong to: the job *and* the installation (its store folder).

    Two Airflow installations sharing one Docker engine may have jobs with the same DAG
    id; keyed by job alone, one releasing its tags would untag the other's images.
    """
    installation = hashlib.sha256(str(store_dir).encode()).hexdigest()[:8]
    return f"{job_key}@{installation}"


def frozen_repository(job_id: str) -> str:
    """The job's own repository: readable, lower-case, unique per job id."""
    slug = re.sub(r"[^a-z0-9]+", "-", job_id.lower()).strip("-")[:80] or "job"
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"{FROZEN_REPOSITORY}/{slug}-{digest}"


def _frozen_tag(key: str) -> str:
    if _TAG.fullmatch(key):
        return key
    return "image-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _repository(ref: str) -> str:
    """``name`` of ``name:tag`` / ``name@sha256:...`` (a registry port is not a tag)."""
    name = ref.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def pinned_reference(image: Any, ref: str) -> str:
    """An immutable reference: the registry digest when the image has one, else its id."""
    digests: list[str] = image.attrs.get("RepoDigests") or []
    wanted = _repository(ref)
    for digest in digests:
        if digest.split("@", 1)[0] == wanted:
            return digest
    return digests[0] if digests else image.id


def configured_registry(registry: str | None) -> str:
    """``registry``, or when None the configured ``[orchest_jobs] registry``."""
    if registry is not None:
        return registry
    return load_settings().registry


def freeze(client: docker.DockerClient, refs: Mapping[str, str], job_id: str,
           registry: str | None = None) -> dict[str, str]:
    """Pin every image and tag it for ``job_id``; returns key -> what a step must run.

    Every missing image is reported at once (nothing is tagged then). With a ``registry``
    (None: ``[orchest_jobs] registry``) the images are pushed there and pinned by its
    digests (:mod:`.registry`).
    """
    import docker.errors

    found: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, ref in refs.items():
        try:
            found[key] = client.images.get(ref)
        except docker.errors.ImageNotFound:
            problems.append(Problem(describe_key(key), "", f"no Docker image {ref}; {BUILD_FIX}"))
    if problems:
        raise OrchestError(problems)
    repository = frozen_repository(job_id)
    registry = configured_registry(registry)
    if registry:
        from .registry import push_frozen

        return push_frozen(client, found, {k: _frozen_tag(k) for k in found}, repository,
                           registry)
    pinned: dict[str, str] = {}
    for key, image in found.items():
        image.tag(repository, _frozen_tag(key))
        pinned[key] = pinned_reference(image, refs[key])
    return pinned


def release(client: docker.DockerClient, job_id: str, registry: str | None = None) -> list[str]:
    """Remove the job's tags (an image nothing else tags goes with them); returns them.

    With a ``registry`` (None: ``[orchest_jobs] registry``), also what the job pushed
    there (:mod:`.registry`)."""
    import docker.errors

    repository = frozen_repository(job_id)
    removed: list[str] = []
    registry = configured_registry(registry)
    if registry:
        from .registry import release_pushed

        removed += release_pushed(client, repository, registry)
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(repository + ":"):
                try:
                    client.images.remove(tag)
                except docker.errors.ImageNotFound:
                    continue
                removed.append(tag)
    return removed


def environment_dockerfile(base_image: str, project_uuid: str, env_uuid: str,
                           layer: Sequence[str] = ()) -> str:
    """Orchest's environment build: the project copied in, the setup script run by bash.

    ``layer``: Dockerfile lines run before that (Orchest's layout, :mod:`.orchest_layer`);
    kernels the setup script installs for root are then shared with every user too.
    """
    setup = "RUN bash < /orchest-setup/setup_script.sh && rm -rf /orchest-setup"
    if layer:
        from .orchest_layer import SHARE_ROOT_KERNELS

        setup += " && " + SHARE_ROOT_KERNELS
    return "\n".join([
        f"FROM {base_image}",
        *layer,  # first: its layers are shared by every environment on the same base
        f"LABEL {LABEL_PROJECT}={project_uuid} {LABEL_ENVIRONMENT}={env_uuid}",
        f"WORKDIR {PROJECT_DIR}",
        f"COPY project/ {PROJECT_DIR}/",
        "COPY setup_script.sh /orchest-setup/setup_script.sh",
        setup,
        "",
    ])


def _write_context(handle: Any, project_dir: Path, dockerfile: str, setup_script: bytes,
                   extra: Mapping[str, Path | bytes] | None = None) -> None:
    """Build context: the snapshot's file selection (minus ``.orchest``), Dockerfile, script,
    and ``extra`` entries (folders or contents; contents under ``*/bin/`` or named
    ``*.sh`` are executable)."""
    selection = select(project_dir)
    with tarfile.open(fileobj=handle, mode="w") as tar:
        add_bytes(tar, "Dockerfile", dockerfile.encode())
        add_bytes(tar, "setup_script.sh", setup_script, 0o755)
        for name, source in (extra or {}).items():
            if isinstance(source, Path):
                add_tree(tar, name, source)
            else:
                executable = "/bin/" in name or name.endswith(".sh")
                add_bytes(tar, name, source, 0o755 if executable else 0o644)
        folder = tarfile.TarInfo("project")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for entry in selection.files:
            if entry.path == ".orchest" or entry.path.startswith(".orchest/"):
                continue
            info = tar.gettarinfo(str(project_dir / entry.path), arcname=f"project/{entry.path}")
            info.mode = entry.mode
            with open(project_dir / entry.path, "rb") as content:
                tar.addfile(info, content)
        for link in selection.links:
            if not link.path.startswith(".orchest/"):
                info = tarfile.TarInfo(f"project/{link.path}")
                info.type, info.linkname = tarfile.SYMTYPE, link.target
                tar.addfile(info)


def build_environment(
    client: docker.DockerClient,
    project_dir: Path,
    environment: Environment,
    project_uuid: str,
    *,
    base_image: str | None = None,
    orchest_bases: Mapping[str, str] | None = None,
    network_mode: str = "none",
    echo: Callable[[str], None] = lambda line: None,
) -> str:
    """Build one environment's image; returns its tag. A failed setup script raises.

    ``base_image`` replaces the environment's base. Otherwise, when its base is one of
    Orchest's images and ``orchest_bases`` maps it (Orchest's name -> your image), the
    build starts from your image with Orchest's layout added (:mod:`.orchest_layer`).
    """
    from . import orchest_layer

    properties = environment.folder / "properties.json"
    base = base_image or environment.base_image
    if not base:
        raise OrchestError.single(properties, "base_image",
                                  "is empty; name the image to build on (or pass --base-image)")
    layer: list[str] = []
    extra: dict[str, Path | bytes] = {}
    mapped = None if base_image else orchest_layer.base_image_for(base, orchest_bases or {})
    if mapped:
        base, language = mapped
        try:
            facts = orchest_layer.probe(client, base)
            packages = orchest_layer.packages_image(
                client, orchest_layer.host_packages(facts, echo), echo)
        except orchest_layer.LayerError as exc:
            raise OrchestError.single(
                properties, "base_image",
                f"{environment.base_image} mapped to {base} (--base): {exc}") from exc
        layer = orchest_layer.layer_dockerfile(language, facts, packages)
        extra = orchest_layer.layer_files(language)
    script = environment.setup_script
    setup = script.read_bytes() if script.is_file() else b""
    tag = environment_image(project_uuid, environment.uuid)
    dockerfile = environment_dockerfile(base, project_uuid, environment.uuid, layer)
    with tempfile.TemporaryFile() as context:
        _write_context(context, project_dir, dockerfile, setup, extra)
        context.seek(0)
        tail: list[str] = []
        for chunk in client.api.build(fileobj=context, custom_context=True, tag=tag,
                                      network_mode=network_mode, rm=True, forcerm=True,
                                      decode=True):
            if "error" in chunk:
                steps = [line for line in tail if line.startswith("Step ")]
                if not steps or steps[-1].startswith("Step 1/"):  # FROM: the base itself
                    raise OrchestError.single(
                        properties, "base_image",
                        f"cannot build on {base}: {chunk['error'].strip()}; "
                        + _build_fix(environment.base_image, base, bool(mapped)))
                lacking = [line for line in tail if line.startswith("orchest layer: ")]
                if mapped and lacking:  # the base cannot carry Orchest's layout
                    raise OrchestError.single(
                        properties, "base_image",
                        f"{environment.base_image} mapped to {base} (--base): "
                        f"{lacking[-1][len('orchest layer: '):]}; add it to {base}, or map "
                        f"{orchest_layer.orchest_base(environment.base_image)} to another "
                        "image (--base NAME=IMAGE)")
                raise OrchestError.single(
                    script, "", f"building {tag} on {base} failed: {chunk['error'].strip()}"
                    + (" (last output: " + " | ".join(tail[-5:]) + ")" if tail else "")
                    + "; " + _build_fix(environment.base_image, base, bool(mapped)))
            # The engine colours a RUN's stderr; the colour codes stay out of messages.
            for line in _ANSI.sub("", str(chunk.get("stream", ""))).rstrip().splitlines():
                tail.append(line)
                echo(line)
    return tag


def _build_fix(env_base: str, base: str, mapped: bool) -> str:
    """What to change after a failed build: the setup script, or the base."""
    from .orchest_layer import orchest_base

    canonical = orchest_base(env_base)
    if canonical and not mapped:
        return (f"{env_base} is Orchest's image: build an Orchest-like image on a base you "
                f"have with --base {canonical}=IMAGE (any Debian/Ubuntu image with python3)")
    if mapped:
        return (f"fix the setup script, or give {canonical} another base (--base "
                f"{canonical}=IMAGE; see README, \"Images that look like Orchest's\")")
    return ("fix the setup script, or the base image (pull or build it first; --base-image "
            "IMAGE builds on another one)")


def build_environments(
    client: docker.DockerClient,
    project_dir: Path,
    project_uuid: str | None = None,
    base_image_override: str | None = None,
    *,
    orchest_bases: Mapping[str, str] | None = None,
    network_mode: str = "none",
    echo: Callable[[str], None] = lambda line: None,
) -> dict[str, str]:
    """Build every environment of the project: env uuid -> ``orchest-env-...:latest`` tag.

    ``orchest_bases`` maps Orchest's base images to yours (see :func:`build_environment`).
    Every environment is tried; the problems of all that failed are raised together.
    """
    project = Project(Path(project_dir).resolve())
    uuid = project_uuid or project.uuid
    built: dict[str, str] = {}
    problems: list[Problem] = []
    for env in project.environments.values():
        try:
            built[env.uuid] = build_environment(client, project.path, env, uuid,
                                                base_image=base_image_override,
                                                orchest_bases=orchest_bases,
                                                network_mode=network_mode, echo=echo)
        except OrchestError as exc:
            problems += exc.problems
    if problems:
        raise OrchestError(problems)
    return built


def environment_status(
    client: docker.DockerClient | None, project_dir: Path, project_uuid: str | None = None
) -> list[dict[str, Any]]:
    """Per environment: uuid, name, language, base image, tag, image id (None: not built).

    Without a client (engine unreachable) the image id is left out.
    """
    project = Project(Path(project_dir).resolve())
    uuid = project_uuid or project.uuid
    rows = []
    for env in project.environments.values():
        row: dict[str, Any] = {"uuid": env.uuid, "name": env.name, "language": env.language,
                               "base_image": env.base_image,
                               "tag": environment_image(uuid, env.uuid)}
        if client is not None:
            row["image_id"] = _image_id(client, row["tag"])
        rows.append(row)
    return rows


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    import docker.errors

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None
