"""Load a ``.orchest`` file of any version into the typed :class:`Pipeline`.

Validation runs in two stages: the shipped JSON Schema (shape and types), then semantic
checks Orchest never made (connections, cycles, paths, shared notebooks). Every problem
found is reported together, each naming the file, the field and the fix.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

from . import schema
from .errors import OrchestError, Problem
from .jsonfile import read_json
from .migrate import migrate
from .model import DATA_DIR, Pipeline, PipelineSettings, Step
from .services import service_problems
from .textcheck import env_value_problem, name_problem, path_problem, shown_text_problem
from .within import inside


def load_pipeline(
    path: Path,
    project_dir: Path,
    *,
    environments: Container[str] | None = None,
    data_dir: Path | None = None,
    check_files: bool = True,
) -> Pipeline:
    """Load and validate ``path`` inside ``project_dir``.

    ``environments``: the environment uuids a step may use (None: not checked).
    ``data_dir``: host folder of ``/data`` to check ``/data/...`` step files (None: not checked).
    """
    path = Path(os.path.abspath(path))
    project_dir = Path(os.path.abspath(project_dir))
    bad_name = name_problem(os.path.relpath(path, project_dir))
    if bad_name:
        raise OrchestError.single(path, "", bad_name)
    raw = read_json(path, "pipeline file")
    file = str(path)
    problems = schema.check("pipeline", raw, file)
    if problems:
        raise OrchestError(problems)
    source_version = raw.get("version") or None  # before migrate() updates it in place
    pipeline = pipeline_from_document(migrate(raw), path, project_dir,
                                      source_version=source_version)
    problems = check_pipeline(pipeline, environments, data_dir, check_files)
    if problems:
        raise OrchestError(problems)
    return pipeline


def pipeline_from_document(doc: dict[str, Any], path: Path, project_dir: Path,
                           source_version: str | None = None) -> Pipeline:
    """The typed pipeline of an already migrated and validated document (no file access).

    A frozen job's pipeline is built this way from its job state at every parse.
    """
    steps = {key: _step(key, value) for key, value in doc["steps"].items()}
    settings = doc["settings"]
    return Pipeline(
        path=path,
        project_dir=project_dir,
        name=doc["name"],
        uuid=doc["uuid"],
        version=doc["version"],
        source_version=source_version,
        parameters=doc["parameters"],
        settings=PipelineSettings(
            max_steps_parallelism=settings["max_steps_parallelism"],
            auto_eviction=settings["auto_eviction"],
            data_passing_memory_size=settings["data_passing_memory_size"],
        ),
        steps=steps,
        services=doc["services"],
        document=doc,
    )


def _step(key: str, value: dict[str, Any]) -> Step:
    kernel = value.get("kernel") or {}
    return Step(
        uuid=value["uuid"],
        title=value.get("title") or key,
        file_path=value["file_path"],
        incoming=tuple(value.get("incoming_connections", ())),
        environment=value.get("environment") or None,
        image=value.get("image") or None,
        kernel=kernel.get("name") or None,
        parameters=value.get("parameters", {}),
    )


def check_pipeline(
    pipeline: Pipeline,
    environments: Container[str] | None,
    data_dir: Path | None,
    check_files: bool,
) -> list[Problem]:
    """Semantic checks after the schema: each returns problems, none stops the others."""
    file = str(pipeline.path)
    problems: list[Problem] = []
    notebooks: dict[str, str] = {}
    resolve = _FolderResolver()
    shown = [("name", pipeline.name)] + [(f"steps.{key}.title", step.title)
                                         for key, step in pipeline.steps.items()]
    for where, text in shown:
        bad_text = shown_text_problem(text) if isinstance(text, str) else None
        if bad_text:
            problems.append(Problem(file, where, bad_text))
    for key, step in pipeline.steps.items():
        where = f"steps.{key}"
        if step.uuid != key:
            problems.append(Problem(file, f"{where}.uuid", f"is {step.uuid!r} but the step is "
                                    f"stored under key {key!r}; make the two equal"))
        for parent in step.incoming:
            if parent not in pipeline.steps:
                problems.append(Problem(file, f"{where}.incoming_connections",
                                        f"step {parent!r} does not exist in this pipeline; "
                                        "remove the connection or add the step"))
        bad_names = _name_problems(file, where, step)
        problems.extend(bad_names)
        if bad_names:
            pass  # an unknown environment would say the same again
        elif step.environment is None and step.image is None:
            problems.append(Problem(file, f"{where}.environment",
                                    "missing; name the environment uuid the step runs in"))
        elif step.environment is not None and environments is not None \
                and step.environment not in environments:
            problems.append(Problem(file, f"{where}.environment",
                                    f"unknown environment {step.environment!r}; define it in "
                                    ".orchest/environments/ or map it in [orchest_jobs] "
                                    "environment_images"))
        problem = _check_file_path(pipeline, step, data_dir, check_files, resolve)
        if problem:
            problems.append(problem)
        elif step.is_notebook:
            target = pipeline.step_container_path(step)
            if target in notebooks:
                problems.append(Problem(file, f"{where}.file_path",
                                        f"notebook {step.file_path!r} is also used by step "
                                        f"{notebooks[target]!r}; two steps cannot share one "
                                        "notebook, copy it"))
            else:
                notebooks[target] = key
    cycle = find_cycle(pipeline)
    if cycle:
        names = " -> ".join(f"{pipeline.steps[k].title!r} ({k})" for k in cycle)
        problems.append(Problem(file, "steps", f"connections form a cycle: {names}; "
                                "remove one of these connections"))
    problems.extend(service_problems(file, pipeline.services))  # those that run in jobs
    problems.extend(_service_text_problems(file, pipeline.services))
    return problems


def _service_text_problems(file: str, services: Mapping[str, Any]) -> list[Problem]:
    """A service's environment values, command and args reach its container as C strings."""
    problems = []
    for key, service in services.items() if isinstance(services, dict) else ():
        if not isinstance(service, dict):
            continue
        env = service.get("env_variables")
        texts = [(f"env_variables.{name}", value) for name, value in env.items()] \
            if isinstance(env, dict) else []
        texts += [(part, service.get(part)) for part in ("command", "args")]
        for where, value in texts:
            problem = env_value_problem(value) if isinstance(value, str) else None
            if problem:
                problems.append(Problem(file, f"services.{key}.{where}", problem))
    return problems


def _name_problems(file: str, where: str, step: Step) -> list[Problem]:
    """An environment uuid or image names folders and images: a path's characters."""
    problems = []
    for part, fix in (("environment", "use the environment's uuid"),
                      ("image", "name a Docker image")):
        value = getattr(step, part)
        bad_text = path_problem(value, "a name", fix) if isinstance(value, str) else None
        if bad_text:
            problems.append(Problem(file, f"{where}.{part}", f"{value!r} {bad_text}"))
    return problems


class _FolderResolver:
    """``realpath`` with the folders remembered: steps share folders, parsing is hot."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def folder(self, path: str) -> str:
        if path not in self._folders:
            self._folders[path] = os.path.realpath(path)
        return self._folders[path]


def _check_file_path(pipeline: Pipeline, step: Step, data_dir: Path | None,
                     check_files: bool, resolve: _FolderResolver) -> Problem | None:
    file, where = str(pipeline.path), f"steps.{step.uuid}.file_path"
    raw = step.file_path
    bad_text = path_problem(raw)
    if bad_text:
        return Problem(file, where, f"{raw!r} {bad_text}")
    if raw.startswith("/"):
        normal = posixpath.normpath(raw)
        if not normal.startswith(DATA_DIR + "/"):
            return Problem(file, where, f"absolute path {raw!r} is outside the project; use a "
                           "path relative to the pipeline file, or one under /data/")
        data_host = pipeline.step_host_path(step, data_dir)
        if check_files and data_host is not None and not data_host.is_file():
            return Problem(file, where, f"{raw!r} does not exist in the data folder {data_dir}")
        return None
    # Strings, not Paths, from here: this runs for every step on every parse.
    host = pipeline.step_host_text(step)
    project = os.fspath(pipeline.project_dir)
    if not inside(host, project):
        return Problem(file, where, f"{raw!r} leaves the project folder; keep step files "
                       "inside the project (or under /data/)")
    if check_files:
        try:  # one lstat tells a plain file (the common case) from a link or nothing
            mode = os.lstat(host).st_mode
        except OSError:
            mode = 0
        if stat.S_ISLNK(mode):
            real = os.path.realpath(host)
            mode = os.stat(real).st_mode if os.path.exists(real) else 0
        else:
            folder, name = os.path.split(host)
            real = os.path.join(resolve.folder(folder), name)
        if not stat.S_ISREG(mode):
            return Problem(file, where, f"{raw!r} does not exist (looked for {host}); create "
                           "the file or fix the path")
        if not inside(real, resolve.folder(project)):
            return Problem(file, where, f"{raw!r} is a link to {real}, outside the project; "
                           "copy the file into the project")
    return None


def find_cycle(pipeline: Pipeline) -> list[str] | None:
    """A list of step uuids on a cycle (first repeated at the end), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(pipeline.steps, white)
    for root in pipeline.steps:
        if colour[root] != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                colour[node] = grey
                path.append(node)
            parents = [p for p in pipeline.steps[node].incoming if p in pipeline.steps]
            if i < len(parents):
                stack.append((node, i + 1))
                parent = parents[i]
                if colour[parent] == grey:
                    cycle = path[path.index(parent):]
                    cycle.reverse()  # edges run parent -> child
                    order = list(pipeline.steps)  # start at the first step in file order
                    first = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
                    cycle = cycle[first:] + cycle[:first]
                    return [*cycle, cycle[0]]
                if colour[parent] == white:
                    stack.append((parent, 0))
            else:
                colour[node] = black
                path.pop()
    return None


def topological_order(pipeline: Pipeline) -> list[str]:
    """Step uuids, parents before children, ties in file order (assumes no cycle).

    Without recursion: a chain of thousands of steps written child first is still a list.
    """
    done: dict[str, None] = {}
    for root in pipeline.steps:
        if root in done:
            continue
        stack = [(root, iter(pipeline.steps[root].incoming))]
        visiting = {root}  # a cycle (never validated in) ends instead of looping
        while stack:
            key, parents = stack[-1]
            parent = next((p for p in parents if p in pipeline.steps and p not in done
                           and p not in visiting), None)
            if parent is None:
                done[key] = None
                visiting.discard(key)
                stack.pop()
            else:
                visiting.add(parent)
                stack.append((parent, iter(pipeline.steps[parent].incoming)))
    return list(done)
