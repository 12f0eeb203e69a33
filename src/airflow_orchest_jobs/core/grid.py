"""Job parameters and the parameter grid, in Orchest's exact order.

A parameter space maps ``"pipeline_parameters"`` or a step uuid to ``{name: [values]}``.
The grid is the cartesian product of every (key, name) axis: pipeline parameters first,
then steps in pipeline order, parameters in the order given; the first axis varies
slowest. Runs are addressed by index without materialising the grid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema
from .errors import OrchestError, Problem
from .jsonfile import read_json
from .model import Pipeline

PIPELINE_KEY = "pipeline_parameters"
#: Grids larger than this are refused before anything is expanded or scheduled.
DEFAULT_MAX_RUNS = 100_000

ParameterSpace = dict[str, dict[str, list[Any]]]


def check_space(space: Any, pipeline: Pipeline, file: str, prefix: schema.Where = ()
                ) -> list[Problem]:
    """Problems with a parameters object (schema, then step uuids the pipeline lacks)."""
    problems = schema.check("parameters", space, file, prefix)
    if problems:
        return problems
    for key in space:
        if key != PIPELINE_KEY and key not in pipeline.steps:
            problems.append(Problem(file, schema.json_path((*prefix, key)),
                                    f"no step with uuid {key!r} in {pipeline.path.name}; use "
                                    f"{PIPELINE_KEY!r} or one of the pipeline's step uuids"))
    return problems


def load_parameters(path: Path, pipeline: Pipeline) -> ParameterSpace:
    """Read and validate a parameters file for ``pipeline``."""
    space: ParameterSpace = read_json(path, "parameters file")  # checked just below
    problems = check_space(space, pipeline, str(path))
    if problems:
        raise OrchestError(problems)
    return space


ParameterMapping = Mapping[str, Mapping[str, list[Any]]]


def merge(base: ParameterMapping, override: ParameterMapping) -> ParameterSpace:
    """``override`` replaces ``base`` per parameter; what it does not name is kept."""
    merged: ParameterSpace = {key: dict(values) for key, values in base.items()}
    for key, values in override.items():
        merged.setdefault(key, {}).update(values)
    return merged


@dataclass(frozen=True)
class Axis:
    key: str
    name: str
    values: tuple[Any, ...]


class Grid:
    """The runs of one pipeline for one parameter space (lazy; index -> run)."""

    def __init__(self, pipeline: Pipeline, space: Mapping[str, Mapping[str, Sequence[Any]]] | None
                 = None, *, max_runs: int = DEFAULT_MAX_RUNS, source: str = "parameters"):
        space = space or {}
        self.pipeline = pipeline
        self.axes: list[Axis] = []
        keys = [PIPELINE_KEY, *pipeline.steps]
        defaults: dict[str, Mapping[str, Any]] = {PIPELINE_KEY: pipeline.parameters}
        defaults.update({k: s.parameters for k, s in pipeline.steps.items()})
        for key in keys:
            given = space.get(key, {})
            names = list(given) + [n for n in defaults[key] if n not in given]
            for name in names:
                values = tuple(given[name]) if name in given else (defaults[key][name],)
                self.axes.append(Axis(key, name, values))
        self.size = math.prod(len(a.values) for a in self.axes)
        if self.size > max_runs:
            sizes = " x ".join(str(len(a.values)) for a in self.axes if len(a.values) > 1)
            raise OrchestError.single(
                source, "", f"the parameter grid has {self.size} runs ({sizes}), more than "
                f"the limit of {max_runs}; use fewer values or select runs")

    def __len__(self) -> int:
        return self.size

    def run(self, index: int) -> dict[str, dict[str, Any]]:
        """Run ``index``'s parameters: ``{"pipeline_parameters": {...}, "<step>": {...}}``."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        picks: list[Any] = [None] * len(self.axes)
        for i in range(len(self.axes) - 1, -1, -1):  # last axis varies fastest
            index, pick = divmod(index, len(self.axes[i].values))
            picks[i] = self.axes[i].values[pick]
        out: dict[str, dict[str, Any]] = {PIPELINE_KEY: {}}
        for axis, value in zip(self.axes, picks, strict=True):
            out.setdefault(axis.key, {})[axis.name] = value
        return out

    def varying(self, index: int) -> list[tuple[str, Any]]:
        """(name, value) of the axes with more than one value: what tells runs apart."""
        run = self.run(index)
        return [(a.name, run[a.key][a.name]) for a in self.axes if len(a.values) > 1]

    def label(self, index: int, max_length: int = 120) -> str:
        """Human label such as ``run 3 · a=2, b="x"`` (Airflow map index name)."""
        parts = [f"{name}={json.dumps(value, default=str)}" for name, value in
                 self.varying(index)]
        text = f"run {index}" + (" · " + ", ".join(parts) if parts else "")
        return text if len(text) <= max_length else text[: max_length - 1] + "…"

    def select(self, runs: Sequence[int] | None, source: str = "runs") -> list[int]:
        """Validated run indices in grid order (None: all runs)."""
        if runs is None:
            return list(range(self.size))
        if not runs:
            raise OrchestError.single(source, "", "selects no runs; list at least one index "
                                      "or leave it out for all runs")
        bad = [r for r in runs if not isinstance(r, int) or isinstance(r, bool)
               or not 0 <= r < self.size]
        if bad:
            raise OrchestError.single(source, "", f"run index {bad[0]!r} is out of range; the "
                                      f"grid has {self.size} runs (0 to {self.size - 1})")
        return sorted(set(runs))

    def __iter__(self) -> Iterator[dict[str, dict[str, Any]]]:
        return (self.run(i) for i in range(self.size))
