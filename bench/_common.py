"""Helpers shared by bench/parse.py and bench/scale.py (not by bench/snapshot.py).

Nothing here imports Airflow: the scripts set Airflow's environment variables first and
import Airflow afterwards (or only in child processes).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
PYTHON = sys.executable
#: The environment every generated step names (defined in each project's .orchest folder).
ENV_UUID = "2f0a0e0c-3c3e-4c4b-9d0a-5f1e2d3c4b5a"


def airflow_env(root: Path, **orchest: str) -> dict[str, str]:
    """Environment for an isolated Airflow under ``root`` (created here).

    ``AIRFLOW_HOME``, its SQLite database and DAGs folder, no examples, and the plugin's
    folders (``projects_dir``, ``store_dir``, ``data_dir``) under ``root``; ``orchest``
    adds or overrides ``[orchest_jobs]`` options (``environment_images=...``).
    """
    home = root / "airflow-home"
    values = {
        "projects_dir": str(root / "projects"),
        "store_dir": str(root / "store"),
        "data_dir": str(root / "data"),
        "network_mode": "none",
        **orchest,
    }
    for key in ("projects_dir", "store_dir", "data_dir"):
        Path(values[key]).mkdir(parents=True, exist_ok=True)
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    env.update({f"AIRFLOW__ORCHEST_JOBS__{k.upper()}": v for k, v in values.items()})
    return env


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any inherited Airflow settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    return env


def migrate_db(env: Mapping[str, str]) -> None:
    """``airflow db migrate`` for the Airflow home described by ``env``."""
    subprocess.run([PYTHON, "-m", "airflow", "db", "migrate"], env=child_env(env), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def images() -> dict[str, str]:
    """``{"python": tag, "busybox": tag}`` of the locally built images (builds if needed)."""
    out = subprocess.run([PYTHON, str(REPO / "scripts" / "images.py")], check=True,
                         capture_output=True, text=True).stdout
    found = dict(re.findall(r"^(\w+): (\S+)$", out, re.M))
    if not {"python", "busybox"} <= set(found):
        raise SystemExit(f"scripts/images.py printed no image tags:\n{out}")
    return found


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def git_head() -> str:
    """The repository's short commit, for the figures' provenance."""
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def machine() -> str:
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    from importlib.metadata import version

    return (f"{os.cpu_count()} cores, Linux {platform.release()}, Python "
            f"{platform.python_version()}, Airflow {version('apache-airflow')} "
            f"(SQLite metadata DB), docker provider "
            f"{version('apache-airflow-providers-docker')}, Docker {docker}")


def write_section(title: str, text: str, subsection: str | None = None) -> None:
    """Replace (or append) the section ``## title`` of bench/RESULTS.md; others are kept.

    With ``subsection``, only its ``### subsection`` block inside the section is replaced
    (or appended); without, the section's text is replaced but its ``###`` blocks that
    ``text`` does not contain are kept (a probe run and the main run write one section).
    """
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    section = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = re.compile(r"^### (.+?)\n.*?(?=^### |\Z)", re.S | re.M)
    found = section.search(current)
    old = found.group(0) if found else f"## {title}\n\n"
    if subsection is not None:
        head, blocks = _split(old, block)
        blocks[subsection] = f"### {subsection}\n\n{text.strip()}\n\n"
        body = head + "".join(blocks.values())
    else:
        _, blocks = _split(old, block)
        _, new_blocks = _split(f"## {title}\n\n{text.strip()}\n\n", block)
        kept = "".join(v for k, v in blocks.items() if k not in new_blocks)
        body = f"## {title}\n\n{text.strip()}\n\n" + kept
    if found:
        current = current[:found.start()] + body + current[found.end():]
    else:
        current = current.rstrip("\n") + "\n\n" + body
    tmp = RESULTS.with_name(RESULTS.name + f".tmp-{os.getpid()}")
    tmp.write_text(current.rstrip("\n") + "\n")
    os.replace(tmp, RESULTS)


def _split(text: str, block: re.Pattern) -> tuple[str, dict[str, str]]:
    """A section's text before its first ``###`` block, and its blocks by title."""
    first = block.search(text)
    head = text[:first.start()] if first else text
    blocks = {m.group(1): m.group(0).rstrip("\n") + "\n\n" for m in block.finditer(text)}
    return head, blocks


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
