"""What goes into a snapshot: compared with real git on tricky trees, plus our own rules."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.snapshot import select
from airflow_orchest_jobs.core.snapshot.selection import ALWAYS_LEFT_OUT, ignore_rules

GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git_files(root: Path) -> set[str]:
    """What real git tracks after ``git init && git add -A`` (no global excludes)."""
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True)
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, env=GIT_ENV, check=True,
                         capture_output=True).stdout
    return {os.fsdecode(name) for name in out.split(b"\0") if name}


def selected(root: Path) -> set[str]:
    selection = select(root)
    return {f.path for f in selection.files} | {link.path for link in selection.links}


def write(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def build_tricky_tree(root: Path, outside: Path) -> None:
    """Nested .gitignore files with negation, ``**``, anchoring, directory patterns,
    escapes, CRLF; symlinks in and out; Orchest runtime folders; checkpoints."""
    write(root, ".gitignore", "\n".join([
        "# comment", "", "*.log", "!important.log", "/build/", "**/tmp/", "data/**/*.csv",
        "docs/*.md", "!docs/keep.md", "node_modules/", "*.pyc", "secret*",
        "!/secret_allowed.txt", "keep/**", "!keep/this.txt", "deep/**/", "[ab].tmpl",
        "?.bak", "trail\\ ", "linkdir/", "build-*/", "!build-keep/", "\\#hash",
        "/anchored.txt", "dironly/",
    ]) + "\n")
    for rel in ["main.py", "app.log", "important.log", "sub/app.log", "sub/important.log",
                "build/out.bin", "build/keep.txt", "sub/build/nested.txt", "tmp/a.txt",
                "x/y/tmp/b.txt", "x/tmp.txt", "data/a.csv", "data/raw/2024/b.csv",
                "data/raw/b.json", "docs/a.md", "docs/keep.md", "docs/sub/c.md",
                "node_modules/pkg/index.js", "lib/node_modules/x.js", "m.pyc", "secret.txt",
                "secret_allowed.txt", "sub/secret_allowed.txt", "keep/a.txt", "keep/this.txt",
                "keep/sub/this.txt", "deep/file.txt", "deep/inner/file.txt", "a.tmpl",
                "c.tmpl", "1.bak", "12.bak", "trail ", "trail", "build-x/f", "build-keep/f",
                "#hash", "anchored.txt", "sub/anchored.txt", "dironly", "with space.txt",
                "ünïcode.py", ".orchest/pipelines/p1/data/x.pickle",
                ".orchest/pipelines/p1/logs/s.log", ".orchest/pipelines/p1/keep.json",
                ".orchest/environments/e1/properties.json", ".ipynb_checkpoints/n-checkpoint.ipynb",
                "notebooks/.ipynb_checkpoints/m-checkpoint.ipynb", "notebooks/m.ipynb",
                "empty/.gitkeep"]:
        write(root, rel)
    # nested .gitignore: re-includes logs, anchors relative to its own folder, CRLF
    (root / "sub" / ".gitignore").write_bytes(b"!*.log\r\n/local.txt\r\ncache/\r\n")
    for rel in ["sub/local.txt", "sub/deeper/local.txt", "sub/cache/c.bin", "sub/x.log"]:
        write(root, rel)
    # whitelist idiom in a sub-folder
    write(root, "wl/.gitignore", "*\n!*/\n!*.py\n!.gitignore\n")
    for rel in ["wl/a.py", "wl/a.txt", "wl/inner/b.py", "wl/inner/b.txt"]:
        write(root, rel)
    (root / "exe.sh").write_text("#!/bin/sh\n")
    (root / "exe.sh").chmod(0o755)
    (root / "emptydir").mkdir()
    # symlinks: inside (file and dir), outside (absolute and relative), dangling;
    # a directory pattern (linkdir/) does not match a symlink to a folder
    (root / "link_to_main").symlink_to("main.py")
    (root / "link_to_docs").symlink_to("docs")
    (root / "linkdir").symlink_to("docs")
    (root / "link_outside_abs").symlink_to(outside)
    (root / "link_outside_rel").symlink_to(os.path.relpath(outside, root))
    (root / "dangling").symlink_to("does/not/exist")
    os.mkfifo(root / "a_fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / ".orchest" / "plasma.sock"))
    sock.close()


def _left_out(path: str) -> bool:
    parts = path.split("/")
    return (".ipynb_checkpoints" in parts
            or (path.startswith(".orchest/pipelines/") and len(parts) > 4
                and parts[3] in ("data", "logs")))


def test_selection_is_what_git_tracks_minus_runtime_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret_outside.txt")
    ours_root, git_root = tmp_path / "ours", tmp_path / "git"
    build_tricky_tree(ours_root, outside)
    build_tricky_tree(git_root, outside)
    # a .git folder is never part of a snapshot (here a fake one; git makes its own)
    write(ours_root, ".git/config", "[core]")
    write(ours_root, ".git/objects/ab/cdef", "blob")

    expected = {path for path in git_files(git_root) if not _left_out(path)}
    ours = selected(ours_root)

    assert ours == expected
    # the test is only meaningful if git really dropped and kept tricky entries
    assert {"important.log", "sub/x.log", "keep/this.txt", "wl/inner/b.py", "trail",
            "link_outside_abs", "linkdir", "dangling", "build-keep/f"} <= ours
    assert not {"app.log", "keep/a.txt", "wl/a.txt", "trail ", "sub/local.txt",
                "build/keep.txt", ".git/config", "a_fifo", ".orchest/plasma.sock",
                ".ipynb_checkpoints/n-checkpoint.ipynb",
                ".orchest/pipelines/p1/data/x.pickle"} & ours
    assert "link_outside_abs/secret_outside.txt" not in ours  # links are not followed


def _random_tree(root: Path, rnd: random.Random, depth: int = 0) -> None:
    names = ["a", "b", "build", "data", "x.log", "y.py", "keep.txt", "tmp", "sub", "n m"]
    patterns = ["*", "!*/", "!*.py", "*.log", "!x.log", "build/", "/build", "data/*",
                "!data/keep.txt", "**/tmp", "a/**/b", "**/b/", "sub/*", "!sub/a", "a/", "!a/",
                "b", "/a/b", "*/", "a/**", "!a/**/", "y.*", "[ab]", "?", "!keep.txt",
                "keep.txt/", "a/*/b", "**/b/**", "!**/b", "n\\ m", "*/b", "!/*/b", "/*",
                "!/sub", "**/a/**/", "sub/**/", "!sub/**/keep.txt"]
    for name in rnd.sample(names, rnd.randint(1, 5)):
        path = root / name
        if depth < 3 and rnd.random() < 0.5:
            path.mkdir(parents=True, exist_ok=True)
            _random_tree(path, rnd, depth + 1)
        elif not path.exists():
            write(root, name)
    if rnd.random() < 0.6:
        write(root, ".gitignore", "\n".join(rnd.sample(patterns, rnd.randint(1, 5))) + "\n")


@pytest.mark.parametrize("seed", range(40))
def test_random_gitignore_trees_match_git(tmp_path: Path, seed: int) -> None:
    _random_tree(tmp_path / "ours", random.Random(seed))
    _random_tree(tmp_path / "git", random.Random(seed))
    assert selected(tmp_path / "ours") == git_files(tmp_path / "git")


def _settle(root: Path) -> None:
    old = 1_600_000_000
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(folder, name), (old, old), follow_symlinks=False)
        os.utime(folder, (old, old))


def _mutate(root: Path, rnd: random.Random) -> None:
    """Edits as a user makes them: patterns changed in place, files added and removed."""
    folders = [*sorted(p for p in root.rglob("*") if p.is_dir()), root]
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for _ in range(rnd.randint(1, 4)):
        action = rnd.choice(["patterns", "add", "remove", "folder", "orchestignore"])
        with contextlib.suppress(IsADirectoryError, NotADirectoryError, FileExistsError):
            _mutate_once(root, rnd, action, folders, files)


def _mutate_once(root: Path, rnd: random.Random, action: str, folders: list[Path],
                 files: list[Path]) -> None:
    if action == "patterns":
        write(rnd.choice(folders), ".gitignore",
              rnd.choice(["*.log\n", "!*.log\n", "a/\n", "*\n", "b\n!a\n", ""]))
    elif action == "add":
        write(rnd.choice(folders), rnd.choice(["x.log", "a", "new.py", "keep.txt"]))
    elif action == "remove" and files:
        rnd.choice(files).unlink(missing_ok=True)
    elif action == "folder":
        write(rnd.choice(folders), "b/deeper/file.txt")
    elif action == "orchestignore":
        write(root, ".orchestignore", rnd.choice(["x.log\n", "", "sub/\n"]))


@pytest.mark.parametrize("seed", range(40))
def test_remembered_folders_give_the_same_selection(tmp_path: Path, seed: int) -> None:
    from airflow_orchest_jobs.core.snapshot.statcache import StatCache

    rnd = random.Random(seed)
    root = tmp_path / "project"
    _random_tree(root, rnd)
    _settle(root)  # as if edited long ago: the memory may trust the folders' stat
    cache = tmp_path / "cache"
    (tmp_path / "tmp").mkdir()
    first = StatCache(cache, root, time.time_ns())
    select(root, first)
    first.save(tmp_path / "tmp")
    _mutate(root, rnd)
    remembered = select(root, StatCache(cache, root, time.time_ns()))
    fresh = select(root)
    assert remembered == fresh


def test_orchestinclude_adds_git_ignored_files(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "credentials.json\nsecrets/\n/data/\n*.key\n")
    write(tmp_path, ".orchestinclude", "credentials.json\nsecrets/\n/data/small.csv\n"
                                       "!secrets/huge.bin\n")
    for rel in ["main.py", "credentials.json", "secrets/a.key", "secrets/sub/b.txt",
                "secrets/huge.bin", "data/small.csv", "data/big.csv", "other.key"]:
        write(tmp_path, rel)
    assert selected(tmp_path) == {
        ".gitignore", ".orchestinclude", "main.py", "credentials.json", "secrets/a.key",
        "secrets/sub/b.txt", "data/small.csv",
    }


def test_orchestignore_leaves_out_more_and_wins_over_include(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "creds.json\n")
    write(tmp_path, ".orchestinclude", "creds.json\n")
    write(tmp_path, ".orchestignore", "creds.json\nbig/\n*.parquet\n!keep.parquet\n")
    for rel in ["main.py", "creds.json", "big/a.txt", "x.parquet", "keep.parquet"]:
        write(tmp_path, rel)
    assert selected(tmp_path) == {".gitignore", ".orchestinclude", ".orchestignore",
                                  "main.py", "keep.parquet"}


def test_always_left_out_at_any_depth_even_when_included(tmp_path: Path) -> None:
    write(tmp_path, ".orchestinclude", ".git\n.ipynb_checkpoints/\n.orchest/\n")
    for rel in [".git/HEAD", "sub/.git/HEAD", "vendored/.git", "a/b/.ipynb_checkpoints/x",
                ".orchest/pipelines/p/data/d", ".orchest/pipelines/p/logs/l",
                ".orchest/pipelines/p/other/o", ".orchest/plasma.sock", "sub/data/kept",
                "sub/.orchest/pipelines/p/data/kept"]:
        write(tmp_path, rel)
    assert selected(tmp_path) == {".orchestinclude", ".orchest/pipelines/p/other/o",
                                  "sub/data/kept", "sub/.orchest/pipelines/p/data/kept"}
    assert ".git" in ALWAYS_LEFT_OUT


def test_symlinks_are_kept_verbatim_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "leak.txt")
    project = tmp_path / "project"
    write(project, "a.txt")
    (project / "in").symlink_to("a.txt")
    (project / "out").symlink_to(outside)
    (project / "up").symlink_to("../outside/leak.txt")
    selection = select(project)
    assert {f.path for f in selection.files} == {"a.txt"}
    assert {(link.path, link.target) for link in selection.links} == {
        ("in", "a.txt"), ("out", str(outside)), ("up", "../outside/leak.txt")}


def test_a_symlinked_gitignore_is_not_read(tmp_path: Path) -> None:
    write(tmp_path, "rules.txt", "*.txt\n")
    (tmp_path / ".gitignore").symlink_to("rules.txt")
    write(tmp_path, "a.txt")
    assert selected(tmp_path) == {".gitignore", "rules.txt", "a.txt"}


def test_sockets_fifos_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a.txt")
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    sock.close()
    assert selected(tmp_path) == {"a.txt"}


def test_unreadable_folder_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "ok.txt")
    locked = tmp_path / "locked"
    write(locked, "x.txt")
    real_scandir = os.scandir

    # Tests run as root, which reads anything: simulate a folder without permission.
    def scandir(path):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(OrchestError) as error:
        select(tmp_path)
    assert str(locked) in str(error.value)
    assert "Permission denied" in str(error.value)
    assert ".orchestignore" in str(error.value)


def test_ignored_folders_are_not_even_listed(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, ".gitignore", "node_modules/\n")
    write(tmp_path, "node_modules/pkg/a.js")
    write(tmp_path, "main.py")
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path):
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert selected(tmp_path) == {".gitignore", "main.py"}
    assert not any("node_modules" in path for path in listed)


def test_ignore_rules_answer_like_the_selection(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "project"
    build_tricky_tree(root, outside)
    write(root, ".orchestinclude", "/build/keep.txt\n")
    rules = ignore_rules(root)
    walked: set[str] = set()
    for folder, dirs, files in os.walk(root):  # a walk of one's own, as discovery does
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if not rules.is_ignored(prefix + d + "/")]
        walked |= {prefix + name for name in files
                   if not rules.is_ignored(prefix + name)
                   and not os.path.islink(os.path.join(folder, name))
                   and os.path.isfile(os.path.join(folder, name))}
    assert walked == {f.path for f in select(root).files}
    assert rules.is_ignored("build/") is False  # entered for the included file
    assert rules.is_ignored("build/out.bin") and not rules.is_ignored("build/keep.txt")
    assert rules.is_ignored("node_modules/") and rules.is_ignored("node_modules/pkg/x.js")
