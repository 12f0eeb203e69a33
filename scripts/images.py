#!/usr/bin/env python3
"""Build the local images the tests and the demo run steps in (there is no registry to pull from).

Images, each tagged ``NAME:<hash of every build input>`` so a build happens only when an
input changed (an existing tag means "already built"):

* ``orchest-jobs-busybox``: ``FROM scratch`` + the host's static busybox with its applets in
  /bin. ``/bin/bash`` is a two-line shim running busybox ``sh`` (busybox has no bash applet):
  enough for the shell steps the tests use, not a real bash.
* ``orchest-jobs-python``: a Debian minbase rootfs with python3 (debootstrap, imported as
  ``orchest-jobs-rootfs``) plus, copied into /usr/lib/python3/dist-packages, the real
  Orchest SDK (``orchest==0.3.11``, no deps) and what notebooks need (nbclient, nbconvert,
  ipykernel), installed on the host with ``pip install --target``.
* ``orchest-jobs-r-base``: a Debian minbase rootfs with R, IRkernel, reticulate, python3
  and its shared libpython, nothing else: the base the tests give ``environments build
  --base orchest/base-kernel-r=...`` (which adds the SDK and kernels itself). About 280 MB.

Run ``python scripts/images.py`` (root, Debian 12, a running Docker engine) to build the
first two (``python scripts/images.py r-base debian`` adds those); it prints the tags. The
R base is built on demand by the test that uses it (about 2.5 minutes, mostly download).
Work files live under ``<repo>/.cache/images/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "images"

BUSYBOX_NAME = "orchest-jobs-busybox"
PYTHON_NAME = "orchest-jobs-python"
ROOTFS_NAME = "orchest-jobs-rootfs"

BUSYBOX_BINARY = Path("/bin/busybox")
BASH_SHIM = """\
#!/bin/sh
# Test image only: busybox has no bash applet; run its sh instead.
exec /bin/sh "$@"
"""
BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY bash /bin/bash
RUN ["/bin/busybox", "sh", "-c", "chmod 755 /bin/bash && mkdir -p /tmp /root && chmod 1777 /tmp"]
ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/root
"""

#: The Debian rootfs: suite, mirror and packages (python3 is what the SDK and notebooks need).
DEBOOTSTRAP = ("bookworm", "http://deb.debian.org/debian", "minbase", ("python3",))
#: The R base: R, IRkernel and reticulate (and the shared libpython reticulate loads) from
#: Debian's packages, so the image build needs no CRAN.
R_DEBOOTSTRAP = (
    "bookworm",
    "http://deb.debian.org/debian",
    "minbase",
    ("python3", "libpython3.11", "r-base-core", "r-cran-irkernel", "r-cran-reticulate"),
)
R_BASE_NAME = "orchest-jobs-r-base"
#: Dropped from the rootfs to keep the image lean-ish (nothing at run time reads them).
ROOTFS_PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)

#: Installed with their dependencies as cp311 manylinux wheels (the image's Python is 3.11).
PIP_PACKAGES = (
    "pyarrow==26.0.1",
    "requests==2.34.2",
    "nbclient==0.11.0",
    "nbconvert==7.17.2",
    "ipykernel==7.4.0",
    "soupsieve<3",  # soupsieve 3 broke nbconvert's HTML export here
)
PIP_TARGET_FLAGS = (
    "--only-binary=:all:",
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
    "--abi=abi3",
    "--abi=none",
    "--platform=any",
    "--platform=manylinux2014_x86_64",
    *(f"--platform=manylinux_2_{minor}_x86_64" for minor in range(17, 37)),
)
#: The SDK: a pure-Python sdist, installed without its (2021-era) pins.
SDK_PACKAGES = ("orchest==0.3.11",)
#: Dropped from the installed packages (headers and test suites).
SITE_PRUNE = ("pyarrow/include", "pyarrow/tests", "pyarrow/src", "bin")
PYTHON_DOCKERFILE = """\
FROM {base}
COPY site/ /usr/lib/python3/dist-packages/
COPY jupyter/ /usr/local/share/jupyter/
RUN ["python3", "-c", "import orchest, nbclient, nbconvert, ipykernel, pyarrow; \
from jupyter_client.kernelspec import KernelSpecManager as K; K().get_kernel_spec('python3')"]
"""


def _log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def _input_hash(*parts: object) -> str:
    """Short, stable hash of build inputs; it becomes the image tag."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _exists(client, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One builder at a time (several test sessions may start at once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(*cmd: str) -> None:
    """Run a build command quietly; show its output only when it fails."""
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode:
        print(result.stdout, file=sys.stderr)
        raise SystemExit(f"images: {cmd[0]} failed (exit {result.returncode}), output above")


def _build(client, tag: str, dockerfile: str, files: Mapping[str, Path | str]) -> None:
    """Build ``tag`` from a Dockerfile and named files/folders (legacy builder, no network)."""
    import docker.errors

    with tempfile.TemporaryFile(dir=CACHE) as context:
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, source in {"Dockerfile": dockerfile, **files}.items():
                if isinstance(source, Path):
                    tar.add(source, arcname=name)
                else:
                    data = source.encode()
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), 0o755, 0
                    tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        try:
            client.images.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                network_mode="none",
                pull=False,
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            for chunk in exc.build_log:
                print(chunk.get("stream", chunk.get("error", "")), end="", file=sys.stderr)
            raise


def _drop_older(client, tag: str) -> None:
    """Untag earlier builds of the same image (their inputs changed), to save disk."""
    import docker.errors

    name = tag.partition(":")[0]
    for image in client.images.list(name=name):
        for old in image.tags:
            if old.partition(":")[0] == name and old != tag:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(old)


def busybox_image(client) -> str:
    """``FROM scratch`` + static busybox (+ a /bin/bash shim): for shell steps."""
    if not BUSYBOX_BINARY.is_file():
        raise SystemExit(f"{BUSYBOX_BINARY} missing: apt-get install busybox-static")
    tag = f"{BUSYBOX_NAME}:{_input_hash(BUSYBOX_DOCKERFILE, BASH_SHIM, _file_hash(BUSYBOX_BINARY))}"
    with _lock():
        if not _exists(client, tag):
            started = time.monotonic()
            _build(client, tag, BUSYBOX_DOCKERFILE, {"busybox": BUSYBOX_BINARY, "bash": BASH_SHIM})
            _drop_older(client, tag)
            _log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


def _rootfs_image(client, name: str = ROOTFS_NAME, spec: tuple = DEBOOTSTRAP) -> str:
    """A Debian minbase rootfs with ``spec``'s packages (default: python3), imported as an
    image (no Dockerfile can do this)."""
    suite, mirror, variant, packages = spec
    tag = f"{name}:{_input_hash(spec, ROOTFS_PRUNE)}"
    if _exists(client, tag):
        return tag
    if not shutil.which("debootstrap"):
        raise SystemExit("debootstrap missing: apt-get install debootstrap")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        root = work / "root"
        _log(f"debootstrap {suite} with {', '.join(packages)} (a minute or more)")
        _run(
            "debootstrap",
            f"--variant={variant}",
            f"--include={','.join(packages)}",
            suite,
            str(root),
            mirror,
        )
        for rel in ROOTFS_PRUNE:
            shutil.rmtree(root / rel, ignore_errors=True)
        archive = work / "rootfs.tar"
        _run("tar", "-C", str(root), "--numeric-owner", "-cf", str(archive), ".")
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=version)
        _drop_older(client, tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"imported {tag} in {time.monotonic() - started:.0f}s")
    return tag


def _pip_install(target: Path, *args: str) -> None:
    _run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--target",
        str(target),
        *args,
    )


def python_image(client) -> str:
    """Debian python3 + the Orchest SDK + nbclient/nbconvert/ipykernel: for Python steps."""
    with _lock():
        base = _rootfs_image(client)
        dockerfile = PYTHON_DOCKERFILE.format(base=base)
        inputs = (dockerfile, PIP_PACKAGES, PIP_TARGET_FLAGS, SDK_PACKAGES, SITE_PRUNE)
        tag = f"{PYTHON_NAME}:{_input_hash(*inputs)}"
        if _exists(client, tag):
            return tag
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="python-", dir=CACHE))
        try:
            site = work / "site"
            _log("pip install --target (packages for the python image)")
            _pip_install(site, *PIP_TARGET_FLAGS, *PIP_PACKAGES)
            _pip_install(site, "--no-deps", *SDK_PACKAGES)
            # Kernelspecs and nbconvert templates belong on the Jupyter data path.
            jupyter = work / "jupyter"
            shutil.move(site / "share" / "jupyter", jupyter)
            shutil.rmtree(site / "share")
            for rel in SITE_PRUNE:
                shutil.rmtree(site / rel, ignore_errors=True)
            _build(client, tag, dockerfile, {"site": site, "jupyter": jupyter})
            _drop_older(client, tag)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


def debian_image(client) -> str:
    """The plain Debian rootfs with python3 only (a base like any user's)."""
    with _lock():
        return _rootfs_image(client)


def r_base_image(client) -> str:
    """Debian + R, IRkernel, reticulate, python3: a base for Orchest-like R environments."""
    with _lock():
        return _rootfs_image(client, R_BASE_NAME, R_DEBOOTSTRAP)


def ensure_all(client) -> dict[str, str]:
    """Build what is missing; return ``{"python": tag, "busybox": tag}``."""
    return {"python": python_image(client), "busybox": busybox_image(client)}


def main() -> int:
    import docker

    client = docker.from_env()
    tags = ensure_all(client)
    extra = {"debian": debian_image, "r-base": r_base_image}
    for name in sys.argv[1:]:  # built on demand only (the R test asks for them itself)
        if name not in extra:
            raise SystemExit(f"images: unknown image {name!r}; choose from {', '.join(extra)}")
        tags[name] = extra[name](client)
    for name, tag in tags.items():
        print(f"{name}: {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
