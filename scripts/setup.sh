#!/usr/bin/env bash
# Installs what the plugin, its tests and its demo need on Debian (idempotent, root):
# apt packages, a running Docker engine, the .venv with the package, the local images.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || need_apt+=(busybox-static)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v git >/dev/null || need_apt+=(git)
command -v file >/dev/null || need_apt+=(file)
# scripts/cluster (a multi-host deployment on this machine): PostgreSQL, Redis, a registry.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "setup: starting dockerd"
    nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start, see /var/log/dockerd.log" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# The install runs only when what it installs changed since its last run here (the
# dependency lists, or this checkout: the package is installed editable from it). uv (one
# wheel, pinned in constraints.txt) installs the same pinned versions as pip would, linked
# from its machine-wide cache: seconds for a fresh clone, where pip took minutes. Python
# compiles each module on its first import instead of all of them here.
stamp=.venv/.setup-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16) $PWD"
if [ "${SETUP_REUSE_VENV:-0}" = 1 ]; then
    # scripts/demo with DEMO_VENV: .venv is another checkout's; installing here would
    # point its editable package at this checkout.
    echo "setup: reusing the venv at .venv (no pip install)"
elif [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/pip install -q -c constraints.txt uv
    .venv/bin/uv pip install -q --python .venv/bin/python -c constraints.txt -e '.[test]'
    echo "$want" > "$stamp"
fi

echo "setup: images"
.venv/bin/python scripts/images.py
