"""The checks of ``airflow-orchest-jobs doctor``: is this deployment able to run jobs?

Each check tries the real thing the way a task would (the step user writing a file, a
second process taking a lock, a container without network importing the SDK, a push to
the registry) instead of guessing from settings, and cleans up after itself: the
deployment is left as it was found. What a result looks like is ``core.doctor``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.doctor import Check, fail, ok, skip, warn
from ..core.errors import OrchestError
from ..core.jobdef import job_definitions
from ..core.labels import LABEL_DOCTOR as LABEL
from ..core.project import discover_projects
from ..core.scan import scan_project, scan_projects
from ..core.settings import OPTIONS, SECTION, Settings, step_owner
from ..engine.images import environment_ref
from ..engine.registry import Registry, check_reachable, release_pushed

#: Seconds an engine or a probe container may take before the check fails.
ENGINE_TIMEOUT = 10
PROBE_TIMEOUT = 120
SDK = "orchest"
NOTEBOOK_MODULES = ("nbclient", "ipykernel")
PROBE_REPOSITORY = "orchest-jobs-doctor"


@dataclass
class Context:
    """What the checks found so far, for the ones that depend on it."""

    settings: Settings | None = None
    raw: dict[str, str] = field(default_factory=dict)
    client: Any = None  #: a docker.DockerClient once the engine answered


def run_checks() -> tuple[list[Check], dict[str, str]]:
    """Every check, in order; the effective ``[orchest_jobs]`` settings (unmasked)."""
    ctx = Context()
    checks = [config_check(ctx), plugin_check()]
    if ctx.settings is None:
        return checks, ctx.raw
    settings = ctx.settings
    checks.append(engine_check(ctx))
    owner = step_owner(settings.step_user, os.geteuid(), os.getegid())
    checks.append(data_dir_check(settings.data_dir, owner))
    checks.append(store_check(settings.store_dir, owner))
    checks.append(store_fs_check(settings.store_dir))
    checks += image_checks(ctx, owner)
    checks.append(registry_check(ctx))
    checks += project_checks(settings)
    if ctx.client is not None:
        ctx.client.close()
    return checks, ctx.raw


# -- Airflow ----------------------------------------------------------------------------


def config_check(ctx: Context) -> Check:
    """Airflow's configuration readable, and ``[orchest_jobs]`` resolved through it."""
    name = "airflow config"
    try:
        from airflow.configuration import conf
    except Exception as exc:  # not installed, or a broken airflow.cfg
        return fail(name, f"cannot read Airflow's configuration ({_gist(exc)})",
                    "run doctor in the Airflow installation's environment, with its "
                    "AIRFLOW_HOME, and fix airflow.cfg")
    try:
        ctx.raw = {key: str(conf.get(SECTION, key, fallback="") or "") for key in OPTIONS}
        extra = conf.getsection(SECTION) or {}
        ctx.raw.update({k: str(v) for k, v in extra.items() if k not in ctx.raw})
        ctx.settings = Settings.from_mapping(ctx.raw)
    except OrchestError as exc:
        return fail(name, "; ".join(str(p) for p in exc.problems),
                    f"correct the [{SECTION}] value in airflow.cfg or its "
                    f"AIRFLOW__{SECTION.upper()}__* variable")
    except Exception as exc:  # a _cmd/_secret option that fails, a secrets backend down
        return fail(name, f"[{SECTION}] cannot be read ({_gist(exc)})",
                    "fix the option (or its _cmd / _secret source)")
    settings = ctx.settings
    ctx.raw = {**ctx.raw, **{k: str(getattr(settings, k)) for k in
                             ("projects_dir", "store_dir", "data_dir", "docker_url")}}
    home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    return ok(name, f"[{SECTION}] resolved through Airflow's configuration "
              f"(AIRFLOW_HOME={home})")


def plugin_check() -> Check:
    """The plugin registered exactly once (twice: a copy in plugins/ shadows the package)."""
    name = "plugin"
    fix = ("install airflow-orchest-jobs into Airflow's environment (it registers through "
           "its entry point) and remove any copy of it from the plugins folder")
    try:
        from airflow import plugins_manager

        info = plugins_manager.get_plugin_info(("source", "fastapi_apps", "timetables"))
        errors = dict(plugins_manager.get_import_errors())
    except Exception as exc:
        return fail(name, f"Airflow's plugins cannot be loaded ({_gist(exc)})", fix)
    ours = [p for p in info if p.get("name") == SECTION
            or any(str(app.get("url_prefix")) == "/orchest-jobs"
                   for app in p.get("fastapi_apps") or [])]
    again = [f"{source}: {message}" for source, message in errors.items()
             if SECTION in message or "orchest" in source.lower()]
    if len(ours) == 1 and not again:
        source = str(ours[0].get("source") or "entry point").split(": EntryPoint")[0]
        return ok(name, f"{SECTION} loaded once ({source})")
    if not ours:
        found = "; ".join(again) if again else "no plugin named orchest_jobs"
        return fail(name, f"not loaded ({found})", fix)
    sources = [str(p.get("source") or p.get("name")) for p in ours] + again
    return fail(name, f"registered {len(ours) + len(again)} times: {'; '.join(sources)}", fix)


# -- the engine ---------------------------------------------------------------------------


def engine_check(ctx: Context) -> Check:
    """``docker_url`` answers, and which API version it speaks."""
    import docker

    assert ctx.settings is not None
    url = ctx.settings.docker_url
    name = "engine"
    try:
        client = docker.DockerClient(base_url=url, timeout=ENGINE_TIMEOUT)
        version = client.version()
    except Exception as exc:
        return fail(name, f"Docker engine not reachable at {url} ({_gist(exc)})",
                    f"start Docker there, or point [{SECTION}] docker_url "
                    f"(AIRFLOW__{SECTION.upper()}__DOCKER_URL) at a running engine")
    ctx.client = client
    return ok(name, f"{url}: Docker {version.get('Version', '?')}, API "
              f"{version.get('ApiVersion', '?')}")


# -- folders and the store's file system ----------------------------------------------------


def data_dir_check(path: Path, owner: tuple[int, int]) -> Check:
    """The step user creates and writes a file in ``data_dir`` (mounted at /data)."""
    name = "data_dir"
    who = _who(owner)
    if not path.exists():
        return _missing_folder(name, path)
    if not path.is_dir():
        return fail(name, f"{path} is not a folder", f"point [{SECTION}] data_dir at a folder")
    if not can_act_as(owner):
        return _not_checked(name, owner)
    error = write_as(path, owner)
    if error is None:
        return ok(name, f"{who} can create and write files in {path}")
    return fail(name, f"{who} cannot create files in {path} ({error}; {_describe(path)})",
                f"chown {owner[0]}:{owner[1]} {path} (or chmod it so {who} may write), or "
                f"set [{SECTION}] step_user to a user that may")


def store_check(path: Path, owner: tuple[int, int]) -> Check:
    """As a run does: the worker makes a folder in the store and hands it to the step user,
    who then creates and writes a file in it (every folder on the way must let it pass)."""
    name = "store"
    who = _who(owner)
    if not path.exists():
        return _missing_folder(name, path)
    if not can_act_as(owner):
        return _not_checked(name, owner)
    try:
        with _scratch(path) as folder:
            if os.geteuid() == 0 and owner != (0, 0):
                os.chown(folder, *owner)
            error = write_as(folder, owner)
    except OSError as exc:
        return fail(name, f"the worker cannot create a folder in {path} ({_gist(exc)})",
                    f"make {path} writable by the Airflow worker's user")
    if error is None:
        return ok(name, f"{who} can create and write files in a run folder under {path}")
    return fail(name, f"{who} cannot write in a folder handed to it under {path} ({error}; "
                f"{_describe(path)})", f"let {who} pass through {path} and its parents "
                f"(chmod o+x), or set [{SECTION}] step_user")


#: Run by a second process against the first one's lock and file (see store_fs_check).
_PEER = textwrap.dedent("""
    import fcntl, os, sys
    lock, target, step = sys.argv[1], sys.argv[2], sys.argv[3]
    fd = os.open(lock, os.O_RDWR)
    if step == "blocked":
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(0)
        sys.exit("a second process got the lock the first one holds")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    tmp = target + ".tmp"
    with open(tmp, "w") as handle:
        handle.write("second")
    os.replace(tmp, target)
""")


def store_fs_check(path: Path) -> Check:
    """Across processes, as workers share the store: ``flock`` excludes, ``rename``
    replaces a file atomically (an open reader keeps the old content, new ones see the
    new). NFS without a lock manager, or some FUSE mounts, fail here."""
    name = "store locks"
    if not path.is_dir():  # where it will be created: most likely the same file system
        path = next((p for p in path.parents if p.is_dir()), Path("/"))
    fix = ("put store_dir on a file system with working flock and rename across processes "
           "(and hosts): a local disk, NFSv4 with locking, CephFS")
    try:
        with _scratch(path) as folder:
            lock, target = folder / "lock", folder / "target"
            lock.touch()
            target.write_text("first")
            with open(lock) as held, open(target) as reader:
                fcntl.flock(held, fcntl.LOCK_EX)
                peer = _peer(lock, target, "blocked")
                if peer:
                    return fail(name, f"flock in {path} does not exclude another process "
                                f"({peer})", fix)
                fcntl.flock(held, fcntl.LOCK_UN)
                peer = _peer(lock, target, "replace")
                if peer:
                    return fail(name, f"after the lock was released another process could "
                                f"not take it and rename a file in {path} ({peer})", fix)
                if reader.read() != "first" or target.read_text() != "second":
                    return fail(name, f"rename in {path} did not replace the file "
                                "atomically", fix)
    except OSError as exc:
        return fail(name, f"lock or rename failed in {path} ({_gist(exc)})", fix)
    return ok(name, f"flock and atomic rename work across processes in {path}")


def _peer(lock: Path, target: Path, step: str) -> str:
    """Run the other process's part; "" when it did what it should, else why not."""
    done = subprocess.run([sys.executable, "-c", _PEER, str(lock), str(target), step],
                          capture_output=True, text=True, timeout=60, check=False)
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def write_as(folder: Path, owner: tuple[int, int]) -> str | None:
    """Create, write and remove a file in ``folder`` as ``owner``; None, or the error.

    Root switches to the step user in a child process (sh, the way a step's process would
    meet the folder); see ``can_act_as``.
    """
    script = ('f="$1/.orchest-jobs-doctor.$$"; : > "$f" && echo probe >> "$f" && '
              'test -s "$f" && rm -f "$f"')
    kwargs: dict[str, Any] = {}
    if owner[0] != os.geteuid():
        kwargs = {"user": owner[0], "group": owner[1], "extra_groups": []}
    done = subprocess.run(["/bin/sh", "-c", script, "sh", str(folder)], cwd="/",
                          capture_output=True, text=True, timeout=60, check=False, **kwargs)
    if done.returncode == 0:
        return None
    message = done.stderr.strip().splitlines()
    return message[-1].removeprefix("sh: 1: ") if message else f"exit {done.returncode}"


def can_act_as(owner: tuple[int, int]) -> bool:
    """Root can switch to the step user; anyone else can only be it."""
    return os.geteuid() in (0, owner[0])


def _not_checked(name: str, owner: tuple[int, int]) -> Check:
    return warn(name, f"not checked: doctor runs as uid {os.geteuid()} and cannot act as "
                f"{_who(owner)}", "run doctor as root, or as the Airflow worker's user")


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=".orchest-jobs-doctor-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _missing_folder(name: str, path: Path) -> Check:
    """A folder the plugin creates on first use: fine when its parent lets it."""
    parent = next((p for p in path.parents if p.exists()), Path("/"))
    if os.access(parent, os.W_OK | os.X_OK):
        return ok(name, f"{path} does not exist yet; the first run creates it (for the "
                  "step user)")
    return fail(name, f"{path} does not exist and the worker cannot create it in {parent}",
                f"create {path} (writable by the step user), or point [{SECTION}] {name} "
                "elsewhere")


def _who(owner: tuple[int, int]) -> str:
    label = "nobody " if owner == (65534, 65534) else ""
    return f"the step user {label}({owner[0]}:{owner[1]})"


def _describe(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "cannot stat it"
    return f"{path} is owned by {st.st_uid}:{st.st_gid}, mode {st.st_mode & 0o7777:o}"


# -- images -------------------------------------------------------------------------------


def image_checks(ctx: Context, owner: tuple[int, int]) -> list[Check]:
    """Each environment of each project has its image (built, or mapped in
    ``environment_images``); each image runs python3 with the SDK (and nbclient and
    ipykernel where a pipeline runs notebooks in it), without network, as the step user."""
    assert ctx.settings is not None
    settings = ctx.settings
    try:
        projects = discover_projects(settings.projects_dir)
    except OrchestError as exc:
        return [skip("images", str(exc.problems[0]))]
    # image reference -> (what uses it, whether a notebook runs in it, a project using it)
    wanted: dict[str, tuple[list[str], bool, Path]] = {}
    for project in projects:
        try:
            environments = project.environments
        except OrchestError:
            continue  # the project check reports it
        notebook_envs = {step.environment for loaded in scan_project(project).pipelines
                     for step in loaded.pipeline.steps.values() if step.is_notebook}
        for env in environments.values():
            ref = environment_ref(env.uuid, project.uuid, settings.environment_images)
            users, needs, where = wanted.setdefault(ref, ([], False, project.path))
            users.append(f"{project.name}/{env.name}")
            wanted[ref] = (users, needs or env.uuid in notebook_envs, where)
    if not wanted:
        return [ok("images", f"no environments in {settings.projects_dir}")]
    if ctx.client is None:
        return [skip("images", "the engine is not reachable (see engine)")]
    import docker.errors

    checks = []
    for ref, (users, notebooks, where) in sorted(wanted.items()):
        name = f"image {', '.join(users)}"
        try:
            ctx.client.images.get(ref)
        except docker.errors.ImageNotFound:
            build = (f"build it with `airflow-orchest-jobs environments build {where}`, or "
                     f"map the environment to an image in [{SECTION}] environment_images")
            checks.append(fail(name, f"no image {ref} on the engine", build))
            continue
        except docker.errors.DockerException as exc:
            checks.append(fail(name, f"cannot inspect {ref} ({_gist(exc)})",
                               "check the engine"))
            continue
        checks.append(probe_image(ctx.client, ref, name, owner, notebooks))
    return checks


_PROBE = ("import importlib.util, sys\n"
          "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n"
          "print(' '.join(missing))\n"
          "sys.exit(3 if missing else 0)\n")


def probe_image(client: Any, ref: str, name: str, owner: tuple[int, int],
                notebooks: bool) -> Check:
    """A short container (network none, the step user) that imports what steps need."""
    import docker.errors

    modules = [SDK, *(NOTEBOOK_MODULES if notebooks else ())]
    fix = ("rebuild it with `airflow-orchest-jobs environments build PROJECT_DIR` (it adds "
           "python3, the orchest SDK and the notebook kernel), or map the environment to an "
           "image that has them")
    container = None
    try:
        container = client.containers.create(
            ref, entrypoint=["python3", "-c", _PROBE, *modules], network_mode="none",
            user=f"{owner[0]}:{owner[1]}", labels={LABEL: "probe"}, working_dir="/tmp")
        container.start()
        status = container.wait(timeout=PROBE_TIMEOUT)
        output = container.logs().decode(errors="replace").strip()
    except docker.errors.APIError as exc:
        why = str(exc.explanation or exc)
        if "python3" in why:
            return fail(name, f"{ref} has no python3", fix)
        return fail(name, f"cannot run {ref} ({_gist(exc)})", fix)
    except Exception as exc:  # the wait timed out, the engine went away
        return fail(name, f"cannot run {ref} ({_gist(exc)})", fix)
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
    code = int(status.get("StatusCode", -1))
    if code == 0:
        return ok(name, f"{ref} has python3 and {', '.join(modules)}")
    if code == 3:
        return fail(name, f"{ref} lacks the Python module(s) {output}", fix)
    if code in (126, 127):
        return fail(name, f"{ref} has no python3", fix)
    return fail(name, f"python3 in {ref} exited with {code}: {output[-200:]}", fix)


# -- the registry -------------------------------------------------------------------------


def registry_check(ctx: Context) -> Check:
    """The registry answers and accepts a push (of a one-file image, deleted again)."""
    assert ctx.settings is not None
    name = "registry"
    value = ctx.settings.registry
    if not value:
        return skip(name, "not set: images stay on the engine that froze them (one Docker "
                    "host)")
    registry = Registry.parse(value)
    fix = (f"start the registry, or fix [{SECTION}] registry; pushes also need the "
           "credentials in the worker's Docker config (docker login)")
    try:
        check_reachable(registry, ctx.client)
    except OrchestError as exc:
        return fail(name, exc.problems[0].message.split(";")[0], fix)
    if ctx.client is None:
        return skip(name, f"{registry.base_url} answers; push not tried (engine not reachable)")
    repository = registry.repository(PROBE_REPOSITORY)
    tag = f"probe-{uuid.uuid4().hex[:12]}"
    image = None
    try:
        image = _tiny_image(ctx.client)
        image.tag(repository, tag)
        for chunk in ctx.client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(str(chunk["error"]).strip())
    except Exception as exc:
        return fail(name, f"{registry.host} refused a push of {repository}:{tag} "
                    f"({_gist(exc)})", fix)
    finally:
        with contextlib.suppress(Exception):
            release_pushed(ctx.client, PROBE_REPOSITORY, value)
        if image is not None:
            with contextlib.suppress(Exception):
                ctx.client.images.remove(image.id, force=True)
    return ok(name, f"{registry.base_url} answers and accepted a push")


def _tiny_image(client: Any) -> Any:
    """A one-file image ``FROM scratch``, built without network."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in (("Dockerfile", b"FROM scratch\nCOPY probe /probe\n"),
                             ("probe", uuid.uuid4().hex.encode())):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, rm=True,
                                   network_mode="none", labels={LABEL: "probe"})
    return image


# -- projects -----------------------------------------------------------------------------


def project_checks(settings: Settings) -> list[Check]:
    """Every pipeline and job file as ``validate`` sees it: one line per problem."""
    name = "projects"
    if not settings.projects_dir.is_dir():
        return [fail(name, f"{settings.projects_dir} does not exist",
                     f"create it, or set [{SECTION}] projects_dir")]
    data_dir = settings.data_dir if settings.data_dir.is_dir() else None
    try:
        scan = scan_projects(settings.projects_dir, settings.environment_images, data_dir)
        definitions, problems = job_definitions(scan, settings.store_dir,
                                                settings.environment_images)
    except Exception as exc:  # the check's boundary
        return [fail(name, f"cannot read {settings.projects_dir} ({_gist(exc)})",
                     "see `airflow-orchest-jobs validate`")]
    found = [p for file_problems in problems.values() for p in file_problems]
    if not found:
        return [ok(name, f"{len(definitions)} DAG(s) from {settings.projects_dir} validate")]
    return [fail(f"project file {problem.file}",
                 f"{problem.where + ': ' if problem.where else ''}{problem.message}",
                 "correct the file (`airflow-orchest-jobs validate PATH` checks it again)")
            for problem in found]


def _gist(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
