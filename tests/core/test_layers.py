"""The layers are a contract: `lint-imports` ([tool.importlinter] in pyproject.toml) keeps
them, and imports inside functions only put off a heavy dependency."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "airflow_orchest_jobs"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: Third-party packages an import inside a function may put off, and why.
HEAVY = {
    "airflow": "Airflow: optional for the CLI, kept off the core and engine, and its "
               "api-server parts off the scheduler and workers",
    "docker": "docker-py: not loaded while parsing DAGs or validating files",
    "fastapi": "the api-server only",
    "starlette": "the api-server only",
    "sqlalchemy": "the api-server's queries only",
    "pydantic": "the api-server's request bodies only",
    "requests": "registry pushes only",
    "celery": "Celery workers only",
    "psycopg2": "import --db only (reading Orchest's database)",
    "jsonschema": "only for an invalid file's messages (jsonschema_rs checks valid ones)",
    "jsonschema_rs": "loaded with the first schema check",
    "referencing": "only with jsonschema",
    "croniter": "only for a job with a cron schedule",
    "pendulum": "with Airflow",
    "nbclient": "inside the step container (runtime/)",
    "nbconvert": "inside the step container (runtime/)",
    "nbformat": "inside the step container (runtime/)",
    "jupyter_client": "inside the step container (runtime/)",
    "jupyter_core": "inside the step container (runtime/)",
}


#: Our own modules an import inside a function may still put off, and why: what only runs
#: later stays off the DAG-parsing path (the DAG processor parses in a fresh process each
#: time; tests/airflow/test_factory_parse.py checks the store stays out of it).
LAZY = {
    "airflow_orchest_jobs.web.app": "the api-server's app: the plugin builds it on the first "
                                    "request; the scheduler, workers and DAG processor never "
                                    "load the web layer",
    "airflow_orchest_jobs.web.data": "the listener's work, in the api-server only (Airflow's "
                                     "mark-failed); the plugin loads the listener everywhere",
    "airflow_orchest_jobs.web.rows": "the listener's work, in the api-server only",
    "airflow_orchest_jobs.core.snapshot.store": "the store's code (objects, packs, checkout) "
                                                "is not needed to parse DAGs",
    "airflow_orchest_jobs.operators.run": "run time only (tasks, snapshot and step operators "
                                          "are built while parsing)",
    "airflow_orchest_jobs.operators.steplog": "run time only (inside the step operator)",
    "airflow_orchest_jobs.engine.retire": "run time only (finalize)",
    "airflow_orchest_jobs.operators.notify": "run time only (webhook event points of plan, "
                                             "a run's first task, a failing step, finalize)",
    "airflow_orchest_jobs.core.retention": "run time only (finalize)",
    "airflow_orchest_jobs.engine.registry": "pushes to [orchest_jobs] registry only",
    "airflow_orchest_jobs.engine.orchest_layer": "`environments build --base` only",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not node.level:
        return [node.module or ""]
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    if node.module:
        return [".".join([*base, node.module])]
    return [".".join([*base, alias.name]) for alias in node.names]


def scan() -> tuple[dict[str, list[str]], list[tuple[str, int, str]]]:
    """Each module's imports at module level; every import inside a function."""
    top: dict[str, list[str]] = {}
    inside: list[tuple[str, int, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = module_name(path), path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        functions = [n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        in_function = {id(n) for f in functions for n in ast.walk(f)
                       if isinstance(n, (ast.Import, ast.ImportFrom))}
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                       for n in ast.walk(block)}
        top[module] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only:
                for name in imported(node, module, is_package):
                    if id(node) in in_function:
                        inside.append((str(path.relative_to(ROOT)), node.lineno, name))
                    else:
                        top[module].append(name)
    return top, inside


def heavy_modules(top: dict[str, list[str]]) -> set[str]:
    """Our modules that import a heavy package when they load (directly or through ours)."""
    heavy: set[str] = set()
    changed = True
    while changed:
        changed = False
        for module, names in top.items():
            if module in heavy:
                continue
            loaded = {".".join(n.split(".")[:i]) for n in names
                      for i in range(1, n.count(".") + 2)}  # a module and its packages
            if any(n.split(".")[0] in HEAVY for n in names) or loaded & heavy:
                heavy.add(module)
                changed = True
    return heavy


def test_imports_inside_functions_only_put_off_heavy_dependencies():
    top, inside = scan()
    heavy = heavy_modules(top)
    light = [f"{where}:{line}: import {name} (move it to the top of the module)"
             for where, line, name in inside
             if name.split(".")[0] not in HEAVY and name not in heavy and name not in LAZY]
    assert light == []
    # what the rule lets through stays the exception
    assert {"airflow_orchest_jobs.operators.step", "airflow_orchest_jobs.dag.timetable"} <= heavy
    assert "airflow_orchest_jobs.engine.images" not in heavy


def test_the_layer_contract_holds():
    proc = subprocess.run([str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_a_wrong_way_import_breaks_the_contract(tmp_path):
    """The contract is not a convention: an import from the core into the web layer (or a
    cycle) makes `lint-imports` fail, naming the import."""
    shutil.copytree(PACKAGE, tmp_path / "src" / PACKAGE.name,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    model = tmp_path / "src" / PACKAGE.name / "core" / "naming.py"
    model.write_text(model.read_text() + "\nfrom ..web import states  # noqa\n")
    proc = subprocess.run([str(LINT_IMPORTS)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "src")})
    assert proc.returncode == 1
    assert "airflow_orchest_jobs.core.naming -> airflow_orchest_jobs.web.states" in proc.stdout
    assert "BROKEN" in proc.stdout
