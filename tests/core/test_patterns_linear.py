"""gitignore matching stays linear: pathological patterns end, and git still agrees.

A plain regex translation of ``a*a*...*b`` (pathspec's, and ours before) tries every way
to split a long name: 26 characters took 0.8 s, 30 took 10 s, a 255-character file name
would never end, holding the snapshot store's lock and passing Airflow's import timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.project import Project
from airflow_orchest_jobs.core.snapshot import patterns
from airflow_orchest_jobs.core.snapshot.patterns import Rules
from tests.core.test_snapshot_selection import git_files, selected, write

PATHOLOGICAL = ["a*" * 17 + "b", "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
                "**/a*a*a*a*a*a*a*a*a*a*a*a*/**/a*a*a*a*a*a*a*a*b",
                "a/**/a/**/a/**/a/**/a/**/a/**/a/**/a/**/a/**/b",
                "[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*c"]
#: A bounded wait for what takes microseconds now and would not end before.
BOUND_S = 120


def test_pathological_patterns_end_on_long_names(tmp_path: Path) -> None:
    """In a subprocess, so that a regression fails after the bound instead of hanging."""
    script = (
        "from airflow_orchest_jobs.core.snapshot.patterns import Rules\n"
        f"rules = Rules({PATHOLOGICAL!r})\n"
        "names = ['a' * 4096, 'a/' * 60 + 'a' * 200, ('ab' * 100) + 'a', 'a' * 254 + 'b']\n"
        "print([rules.match(n, d) for n in names for d in (False, True)])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=BOUND_S, check=True).stdout
    assert out.strip() == str([None] * 6 + [True, True])


def test_a_snapshot_selection_with_a_pathological_gitignore_ends(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", PATHOLOGICAL[0] + "\n")
    write(tmp_path, "a" * 250)
    write(tmp_path, "a" * 200 + "b")
    assert selected(tmp_path) == {".gitignore", "a" * 250}


@pytest.mark.parametrize(("pattern", "path", "is_dir", "ignored"), [
    ("a/***", "a/b/c", False, True),  # a segment of stars only is "**" (git)
    ("a/***", "a", True, None),
    ("[!a]", "/", False, None),  # a bracket never matches a slash
    ("x[!a]y", "x/y", False, None),
    ("\\  ", " ", False, True),  # an escaped trailing space is kept
    ("a*b*c", "axxbyyc", False, True),
    ("a*b*c", "axxbyy/c", False, None),
    ("a/**/b/**/c", "a/x/b/y/b/c", False, True),
    ("[[:digit:]]x", "7x", False, True),
])
def test_git_semantics_kept(pattern: str, path: str, is_dir: bool, ignored) -> None:
    assert Rules([pattern]).match(path, is_dir) is ignored


def test_pattern_files_are_bounded(tmp_path: Path) -> None:
    lines = [f"file{i}" for i in range(patterns.MAX_PATTERNS + 1)]
    with pytest.raises(OrchestError) as error:
        Rules(lines, "/p/.gitignore")
    assert str(error.value) == ("/p/.gitignore: has 5,001 patterns, more than 5,000; use "
                                "fewer, broader patterns (a folder pattern such as build/ "
                                "covers what is inside)")
    with pytest.raises(OrchestError) as error:
        Rules(["ok", "a" * 2000], "/p/.gitignore")
    assert str(error.value) == ("/p/.gitignore: line 2: is 2,000 characters long, more than "
                                "1,024; shorten the pattern")


def test_a_bounded_gitignore_is_its_projects_problem(tmp_path: Path) -> None:
    """Discovery walks with the rules: the project gets the line, not a traceback."""
    from airflow_orchest_jobs.core.scan import scan_projects
    from tests.orchest_factory import pipeline_doc, step, write_project

    write_project(tmp_path / "good", pipeline_doc([step("s1", "a.py")]))
    write_project(tmp_path / "huge", pipeline_doc([step("s1", "a.py")]))
    (tmp_path / "huge" / ".gitignore").write_text("x" * 5000 + "\n")
    scan = scan_projects(tmp_path)
    assert [p.project.name for p in scan.pipelines] == ["good"]
    assert list(scan.problems) == [str(tmp_path / "huge")]
    assert [str(p) for p in scan.all_problems] == [
        f"{tmp_path / 'huge' / '.gitignore'}: line 1: is 5,000 characters long, more than "
        "1,024; shorten the pattern"]
    assert Project(tmp_path / "good").pipelines


# Differential against real git: random globs over a small alphabet, on small trees.
_NAMES = ["a", "b", "ab", "ba", "aab", "a.b", "b b", "[a]"]
_ATOMS = ["a", "b", "*", "**", "?", "[ab]", "[!a]", "[a-b]", ".", "/", "\\*", " ", "\\ "]
_pattern = st.builds(lambda neg, atoms: ("!" if neg else "") + "".join(atoms),
                     st.booleans(), st.lists(st.sampled_from(_ATOMS), min_size=1, max_size=6))
_path = st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3).map("/".join)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(lines=st.lists(_pattern, min_size=1, max_size=4),
       paths=st.lists(_path, min_size=1, max_size=8, unique=True))
def test_random_globs_select_what_git_tracks(tmp_path_factory, lines, paths) -> None:
    root = tmp_path_factory.mktemp("globs")
    ours, theirs = root / "ours", root / "git"
    for tree in (ours, theirs):
        tree.mkdir()
        (tree / ".gitignore").write_text("\n".join(lines) + "\n")
        for path in paths:
            target = tree / path
            if any(parent.is_file() for parent in target.parents) or target.is_dir():
                continue  # a name used as both a file and a folder: keep the first
            write(tree, path)
    assert selected(ours) == git_files(theirs), lines


def test_python_310_form_matches_the_same(monkeypatch) -> None:
    """Python 3.10 has no ``(?>...)``: the lookahead form gives the same answers, fast."""
    import random
    import types

    rnd = random.Random(3)
    lines = ["".join(rnd.choice(["a", "b", "*", "?", "/", "**", "[ab]", "!"])
                     for _ in range(rnd.randint(1, 7))) for _ in range(300)]
    modern = [Rules([line]) for line in lines]
    monkeypatch.setattr(patterns, "sys", types.SimpleNamespace(version_info=(3, 10)))
    older = [Rules([line]) for line in lines]
    assert not any("(?>" in rules._any.pattern for rules in older if rules)
    for new, old in zip(modern, older, strict=True):
        for _ in range(10):
            path = "/".join("".join(rnd.choice("ab") for _ in range(rnd.randint(1, 4)))
                            for _ in range(rnd.randint(1, 3)))
            assert new.match(path, False) == old.match(path, False)
    assert Rules(PATHOLOGICAL).match("a" * 4096, False) is None
