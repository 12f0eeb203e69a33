"""``environments build|list``: the project's environment images, as Orchest built them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...config import load_settings
from ...engine.images import (
    DockerUnavailable,
    build_environments,
    docker_client,
    environment_status,
)
from ...engine.orchest_layer import LayerError, parse_bases


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "environments", help="build or list a project's environment images",
        description="Environments live in PROJECT_DIR/.orchest/environments/<uuid>/ "
        "(properties.json, setup_script.sh). Images are tagged "
        "orchest-env-<project-uuid>-<env-uuid>:latest, the tag jobs look up.")
    commands = group.add_subparsers(dest="environments_command", required=True,
                                    metavar="COMMAND")
    url_help = ("Docker engine (default: AIRFLOW__ORCHEST_JOBS__DOCKER_URL, else "
                "unix://var/run/docker.sock)")
    build = commands.add_parser(
        "build", help="build every environment image of a project",
        description="Build each environment: its base image, the project's files copied "
        "to /project-dir, then setup_script.sh run by bash. An environment on one of "
        "Orchest's base images (orchest/base-kernel-py, -py-gpu, -r, -julia, -javascript) "
        "mapped with --base is built on your image with Orchest's layout added: "
        "/opt/conda/bin/python and CONDA_ENV=base, the language's Jupyter kernel, the "
        "orchest SDK, nbclient/nbconvert/ipykernel (fetched by pip on this host; for R also "
        "IRkernel and the SDK through reticulate, which the base must have).")
    build.add_argument("project", metavar="PROJECT_DIR", type=Path)
    build.add_argument("--base-image", metavar="IMAGE",
                       help="build on IMAGE instead of each environment's base_image")
    build.add_argument("--base", metavar="ORCHEST_IMAGE=IMAGE", action="append",
                       help="build environments whose base_image is ORCHEST_IMAGE (one of "
                       "Orchest's, e.g. orchest/base-kernel-r) on IMAGE (a Debian/Ubuntu "
                       "image with python3; with R for R) with Orchest's layout added; "
                       "repeat for each Orchest image")
    build.add_argument("--network", metavar="MODE", default="none",
                       help="network of the setup script (default: none; use bridge when "
                       "it downloads packages)")
    build.add_argument("--docker-url", metavar="URL", help=url_help)
    build.set_defaults(func=run_build)

    listing = commands.add_parser(
        "list", help="list a project's environments and whether their image exists",
        description="Print a JSON array: uuid, name, language, base_image, tag, image_id "
        "(null when not built; left out when Docker is unreachable).")
    listing.add_argument("project", metavar="PROJECT_DIR", type=Path)
    listing.add_argument("--docker-url", metavar="URL", help=url_help)
    listing.set_defaults(func=run_list)


def _docker_url(args: argparse.Namespace) -> str:
    return args.docker_url or load_settings().docker_url


def run_build(args: argparse.Namespace) -> int:
    try:
        orchest_bases = parse_bases(args.base)
    except LayerError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        client = docker_client(_docker_url(args))
    except DockerUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    built = build_environments(client, args.project, base_image_override=args.base_image,
                               orchest_bases=orchest_bases, network_mode=args.network,
                               echo=lambda line: print(line, file=sys.stderr))
    if not built:
        print(f"{args.project}: no environments in .orchest/environments/", file=sys.stderr)
        return 1
    for env_uuid, tag in built.items():
        print(f"{env_uuid}: {tag}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        client = docker_client(_docker_url(args))
    except DockerUnavailable as exc:
        print(f"warning: {exc}", file=sys.stderr)
        client = None
    print(json.dumps(environment_status(client, args.project), indent=2))
    return 0
