"""Orchest-like environment images: Orchest's layout for a language, on a base you name.

Orchest's base images (``orchest/base-kernel-py``, ``-r``, ...) were Jupyter
docker-stacks images: conda at /opt/conda, ``CONDA_ENV=base``, the language's Jupyter
kernel, the ``orchest`` SDK and nbconvert. They may be gone from registries, and image
builds here may have no network, so ``environments build --base
orchest/base-kernel-r=IMAGE`` builds on IMAGE (a Debian/Ubuntu image with python3, and R
for R) and adds that layout:

* /opt/conda: a Python environment over the base's python3 (a venv that sees the
  system's packages), so ``/opt/conda/bin/python`` is what Orchest's runner ran;
* in it, fetched by pip *on this host* for the image's Python and platform (the build
  itself needs no network): the orchest SDK 0.3.11 with pyarrow and requests, nbclient,
  nbconvert (with its templates), ipykernel and pip;
* Jupyter kernels in /opt/conda/share/jupyter (``JUPYTER_PATH``): ``python3``, and
  ``ir`` (IRkernel) for R;
* ``CONDA_ENV=base``, ``CONDA_DIR``, ``JUPYTER_PATH``, ``PATH``, ``PLOTLY_RENDERER`` as in
  Orchest's images, and for R ``RETICULATE_PYTHON`` (the SDK through reticulate).

A check run at the end of the layer fails the build with one line naming what the base
lacks. Docker is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.flock import locked
from ..tarball import root_readable

if TYPE_CHECKING:
    import docker

#: Orchest's published base images -> the language whose layout the build adds.
ORCHEST_BASES = {
    "orchest/base-kernel-py": "python",
    "orchest/base-kernel-py-gpu": "python",
    "orchest/base-kernel-r": "r",
    "orchest/base-kernel-julia": "julia",
    "orchest/base-kernel-javascript": "javascript",
}
#: Names older Orchest releases gave the same images.
ORCHEST_BASE_ALIASES = {
    "orchest/custom-base-kernel-py": "orchest/base-kernel-py",
    "orchest/custom-base-kernel-py-gpu": "orchest/base-kernel-py-gpu",
    "orchest/custom-base-kernel-r": "orchest/base-kernel-r",
    "orchestsoftware/custom-base-kernel-py": "orchest/base-kernel-py",
    "orchestsoftware/custom-base-kernel-py-gpu": "orchest/base-kernel-py-gpu",
    "orchestsoftware/custom-base-kernel-r": "orchest/base-kernel-r",
}
CONDA_DIR = "/opt/conda"
#: Installed into /opt/conda with their dependencies, as wheels for the image's Python.
LAYER_PACKAGES = (
    "pyarrow",
    "requests",
    "nbformat",
    "nbclient>=0.5",
    "nbconvert>=6",
    "ipykernel>=6",
    "pip",
    "soupsieve<3",  # soupsieve 3 broke nbconvert's HTML export
)
#: Left out of the fetched packages: headers and test suites nothing runs.
SITE_PRUNE = ("pyarrow/include", "pyarrow/src", "pyarrow/tests")
#: Image holding the fetched packages (``/site``, ``/jupyter``), one per package set:
#: environment builds copy from it, so their contexts stay small.
PACKAGES_IMAGE = "orchest-jobs-layer-packages"
#: The SDK Orchest's images had: a pure-Python sdist whose 2021 pins are left out.
SDK_PACKAGE = "orchest==0.3.11"
#: Orchest's job runner started these kernels for a notebook's language.
KERNELS: dict[str, dict[str, dict[str, Any]]] = {
    "python": {"python3": {
        "argv": [f"{CONDA_DIR}/bin/python", "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "metadata": {"debugger": True}}},
    "r": {"ir": {
        "argv": ["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"],
        "display_name": "R", "language": "R"}},
}
PIP_SCRIPT = f"""#!{CONDA_DIR}/bin/python
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""
#: Run at the end of the layer (check.sh, check.R beside this file): one line naming
#: what the base lacks.
HERE = Path(__file__).resolve().parent
CHECK_FILES = ("check.sh", "check.R")
#: Kernels a base (or a setup script) installed for root only, made visible to every user.
ROOT_KERNELS = "/root/.local/share/jupyter/kernels"
SHARE_ROOT_KERNELS = (f"if [ -d {ROOT_KERNELS} ]; then cp -rn {ROOT_KERNELS}/. "
                      f"{CONDA_DIR}/share/jupyter/kernels/; fi")
#: Read inside the base image: what the layer must match.
PROBE = (
    "import json, platform, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'machine': platform.machine(), 'libc': platform.libc_ver()}))"
)


class LayerError(ValueError):
    """A base that cannot carry Orchest's layout, or packages that cannot be fetched."""


def orchest_base(image: str) -> str | None:
    """Orchest's canonical name of ``image`` (tag, digest and docker.io/ left out), or None."""
    name = image.strip().split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    if head and "/" not in tail:
        name = head
    for prefix in ("docker.io/", "registry-1.docker.io/", "index.docker.io/"):
        name = name.removeprefix(prefix)
    name = ORCHEST_BASE_ALIASES.get(name, name)
    return name if name in ORCHEST_BASES else None


def parse_bases(values: list[str] | None) -> dict[str, str]:
    """``["orchest/base-kernel-r=my-r:12", ...]`` -> {canonical Orchest name: image}."""
    bases: dict[str, str] = {}
    for value in values or []:
        name, sep, image = value.partition("=")
        canonical = orchest_base(name) if sep else None
        if not canonical or not image.strip():
            raise LayerError(
                f"--base {value!r}: expected ORCHEST_IMAGE=YOUR_IMAGE with ORCHEST_IMAGE one "
                f"of {', '.join(ORCHEST_BASES)} (e.g. --base orchest/base-kernel-r=my-r:12)")
        bases[canonical] = image.strip()
    return bases


@dataclass(frozen=True)
class BaseFacts:
    """What the layer must match in the base: its Python, platform and user."""

    image: str
    python: str  # "3.11"
    machine: str  # "x86_64"
    glibc: str  # "2.36"
    user: str  # the base's USER ("" for root)


def probe(client: docker.DockerClient, image: str) -> BaseFacts:
    """Run python3 in ``image`` once (no network) for its version, platform and libc."""
    import docker.errors

    try:
        attrs = client.images.get(image).attrs
    except docker.errors.ImageNotFound as exc:
        raise LayerError(f"no Docker image {image}: build or pull it first (a Debian/Ubuntu "
                         "image with python3)") from exc
    try:
        out = client.containers.run(image, ["python3", "-c", PROBE], entrypoint=[],
                                    network_mode="none", user="root", remove=True)
        facts = json.loads(out.decode().strip().splitlines()[-1])
    except (docker.errors.APIError, docker.errors.ContainerError, ValueError,
            IndexError) as exc:
        raise LayerError(f"cannot run python3 in {image} ({str(exc).strip()[:300]}); "
                         "Orchest's layout needs python3 in the base (Debian/Ubuntu: "
                         "python3)") from exc
    libc, libc_version = facts.get("libc") or ["", ""]
    if libc != "glibc" or not libc_version:
        raise LayerError(f"{image} has no glibc ({libc or 'unknown libc'}); use a "
                         "Debian/Ubuntu base")
    return BaseFacts(image=image, python=facts["version"], machine=facts["machine"],
                     glibc=libc_version, user=str(attrs.get("Config", {}).get("User") or ""))


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "airflow-orchest-jobs" / "orchest-layer"


def _pip_settings() -> dict[str, str]:
    """pip's own settings from the environment: they change what it fetches."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("PIP_")}


def _target_flags(facts: BaseFacts) -> list[str]:
    major, minor = facts.python.split(".")
    glibc_minor = int(facts.glibc.split(".")[1])
    abi = f"cp{major}{minor}"
    return [
        "--only-binary=:all:", f"--python-version={facts.python}", "--implementation=cp",
        f"--abi={abi}", "--abi=abi3", "--abi=none", "--platform=any",
        f"--platform=manylinux2014_{facts.machine}",
        *(f"--platform=manylinux_2_{n}_{facts.machine}" for n in range(17, glibc_minor + 1)),
    ]


def _pip(target: Path, *args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-compile", "--target", str(target), *args]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode:
        tail = " | ".join(result.stdout.strip().splitlines()[-4:])
        raise LayerError(
            f"pip could not fetch {' '.join(a for a in args if not a.startswith('-'))} on "
            f"this host ({tail}); the build fetches these on the host, not in the image: "
            "give this host access to PyPI or a mirror (PIP_INDEX_URL), or a folder of "
            "wheels (PIP_FIND_LINKS=DIR PIP_NO_INDEX=1)")


def host_packages(facts: BaseFacts, echo: Callable[[str], None] = lambda line: None) -> Path:
    """The layer's Python packages for ``facts``' Python: ``site/`` and ``jupyter/``.

    Fetched once with this host's pip (honouring PIP_* settings) and kept in the user's
    cache, keyed by everything that changes the result.
    """
    key = hashlib.sha256(json.dumps(
        [facts.python, facts.machine, facts.glibc, LAYER_PACKAGES, SDK_PACKAGE, SITE_PRUNE,
         _pip_settings()]).encode()).hexdigest()[:16]
    root = cache_root()
    done = root / key
    with locked(root / ".lock"):
        if (done / "site").is_dir():
            return done
        echo(f"fetching {SDK_PACKAGE} and {', '.join(LAYER_PACKAGES)} for Python "
             f"{facts.python} ({facts.machine}) with this host's pip")
        work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=root))
        try:
            site = work / "site"
            _pip(site, *_target_flags(facts), *LAYER_PACKAGES)
            _pip(site, "--no-deps", SDK_PACKAGE)
            jupyter = work / "jupyter"
            if (site / "share" / "jupyter").is_dir():
                shutil.move(site / "share" / "jupyter", jupyter)
            jupyter.mkdir(exist_ok=True)
            for folder in ("share", "bin"):  # host-side scripts would name the host's Python
                shutil.rmtree(site / folder, ignore_errors=True)
            for rel in SITE_PRUNE:
                shutil.rmtree(site / rel, ignore_errors=True)
            shutil.rmtree(done, ignore_errors=True)
            work.rename(done)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return done


def packages_image(client: docker.DockerClient, packages: Path,
                   echo: Callable[[str], None] = lambda line: None) -> str:
    """``orchest-jobs-layer-packages:<key>`` (``FROM scratch``: /site, /jupyter), built once.

    Every environment build copies from it (``COPY --from``) instead of sending the
    packages (about 250 MB, mostly pyarrow) in its own build context.
    """
    import docker.errors

    tag = f"{PACKAGES_IMAGE}:{packages.name}"
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    echo(f"making {tag} from {packages}")
    dockerfile = b"FROM scratch\nCOPY site/ /site/\nCOPY jupyter/ /jupyter/\n"
    with tempfile.TemporaryFile() as context:
        with tarfile.open(fileobj=context, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            for name in ("site", "jupyter"):
                tar.add(str(packages / name), arcname=name, filter=root_readable)
        context.seek(0)
        for chunk in client.api.build(fileobj=context, custom_context=True, tag=tag,
                                      network_mode="none", rm=True, forcerm=True,
                                      decode=True):
            if "error" in chunk:
                raise LayerError(f"could not make {tag}: {chunk['error'].strip()}")
    return tag


def layer_files(language: str) -> dict[str, Path | bytes]:
    """Build-context entries of the layer (arcname -> content); packages come from
    :func:`packages_image`."""
    files: dict[str, Path | bytes] = {
        "orchest-layer/bin/pip": PIP_SCRIPT.encode(),
        "orchest-layer/bin/pip3": PIP_SCRIPT.encode(),
    }
    for name in CHECK_FILES:
        files[f"orchest-layer/check/{name}"] = (HERE / name).read_bytes()
    for kernels in (KERNELS["python"], KERNELS.get(language, {})):
        for name, spec in kernels.items():
            files[f"orchest-layer/kernels/{name}/kernel.json"] = (
                json.dumps(spec, indent=1) + "\n").encode()
    return files


def layer_dockerfile(language: str, facts: BaseFacts, packages: str) -> list[str]:
    """Dockerfile lines (after FROM) that give the base Orchest's layout for ``language``.

    /opt/conda is a venv made by hand (pyvenv.cfg and a symlink: what ``python -m venv``
    writes, without needing the venv module): its python is the base's, seeing the
    base's packages after the layer's own, which come from the image ``packages``.
    """
    py = facts.python
    site = f"{CONDA_DIR}/lib/python{py}/site-packages"
    env = {"CONDA_ENV": "base", "CONDA_DIR": CONDA_DIR,
           "JUPYTER_PATH": f"{CONDA_DIR}/share/jupyter", "PATH": f"{CONDA_DIR}/bin:$PATH",
           "PLOTLY_RENDERER": "iframe"}
    if language == "r":
        env["RETICULATE_PYTHON"] = f"{CONDA_DIR}/bin/python"
    lines = [
        "USER root",
        # A base that has conda already (a Jupyter image) keeps its /opt/conda.
        f"RUN set -e; mkdir -p {CONDA_DIR}/bin {CONDA_DIR}/envs {site}; "
        f"if [ ! -e {CONDA_DIR}/bin/python ]; then python=$(command -v python3); "
        "printf 'home = %s\\ninclude-system-site-packages = true\\nversion = %s\\n' "
        f"\"$(dirname \"$python\")\" {py} > {CONDA_DIR}/pyvenv.cfg; "
        f"ln -s \"$python\" {CONDA_DIR}/bin/python; "
        f"ln -s python {CONDA_DIR}/bin/python3; ln -s python {CONDA_DIR}/bin/python{py}; fi",
        f"COPY --from={packages} /site/ {site}/",
        f"COPY --from={packages} /jupyter/ {CONDA_DIR}/share/jupyter/",
        f"COPY orchest-layer/kernels/ {CONDA_DIR}/share/jupyter/kernels/",
        f"COPY orchest-layer/bin/ {CONDA_DIR}/bin/",
        f"COPY orchest-layer/check/ {CONDA_DIR}/share/orchest-layer/",
        "ENV " + " ".join(f"{key}={value}" for key, value in env.items()),
        f"RUN sh {CONDA_DIR}/share/orchest-layer/check.sh {language} {facts.image} && "
        + SHARE_ROOT_KERNELS,
    ]
    if facts.user and facts.user not in ("root", "0", "0:0"):
        # The base's user installs into /opt/conda in setup scripts, as jovyan did.
        lines += [f"RUN chown -R {facts.user} {CONDA_DIR}", f"USER {facts.user}"]
    return lines


def base_image_for(image: str, bases: Mapping[str, str]) -> tuple[str, str] | None:
    """(your base, language) when ``image`` is Orchest's and ``bases`` maps it, else None."""
    canonical = orchest_base(image)
    if canonical and canonical in bases:
        return bases[canonical], ORCHEST_BASES[canonical]
    return None
