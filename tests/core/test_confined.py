"""Opening below a directory descriptor: plain names only, no link followed, ever."""

from __future__ import annotations

import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_orchest_jobs.core import confined
from airflow_orchest_jobs.core.confined import Refused

SECRET = "SECRET-airflow.cfg-content"


@pytest.fixture
def tree(tmp_path):
    """top/ (the trusted folder) with a file, a folder, links and a FIFO; secret outside."""
    top, outside = tmp_path / "top", tmp_path / "outside"
    (top / "d").mkdir(parents=True)
    outside.mkdir()
    (outside / "airflow.cfg").write_text(SECRET)
    (top / "d" / "f.txt").write_text("public")
    (top / "file-link").symlink_to(outside / "airflow.cfg")
    (top / "dir-link").symlink_to(outside)
    (top / "rel-link").symlink_to("../outside/airflow.cfg")
    os.mkfifo(top / "fifo")
    fd = confined.open_top(top)
    yield top, fd
    os.close(fd)


def read(fd_top, names):
    fd, info = confined.open_file(fd_top, names)
    return b"".join(confined.read_chunks(fd, info.st_size)).decode()


@pytest.mark.parametrize("relative", [
    "", "/", "a//b", ".", "..", "./a", "a/.", "a/..", "../x", "/etc/passwd", "a/", "a\0b",
    "x" * 256, "a/" * 70 + "b", "y/" * 2100,
])
def test_anything_but_plain_names_is_refused(relative):
    with pytest.raises(Refused):
        confined.components(relative)


def test_plain_names_pass_as_they_are():
    assert confined.components("run-00001/project/a b%2e%2e\\..\\x.html") == [
        "run-00001", "project", "a b%2e%2e\\..\\x.html"]
    assert confined.components("", folder=True) == []
    assert confined.components("a/b/", folder=True) == ["a", "b"]
    with pytest.raises(Refused):
        confined.components("a//", folder=True)


def test_files_open_and_links_fifos_folders_do_not(tree):
    _, fd = tree
    assert read(fd, ["d", "f.txt"]) == "public"
    for names in (["file-link"], ["rel-link"], ["dir-link", "airflow.cfg"], ["d"], ["fifo"],
                  ["missing"], ["d", "f.txt", "x"]):
        with pytest.raises(Refused):
            read(fd, names)


def test_fifo_swapped_in_after_the_precheck_never_blocks(tree, monkeypatch):
    """The kind check that counts is fstat on what was opened: a FIFO put in place after
    the lstat pre-check opens without blocking (O_NONBLOCK) and is refused."""
    top, fd = tree
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: real_stat(top / "d" / "f.txt"))
    started = time.monotonic()
    with pytest.raises(Refused, match="not a regular file"):
        confined.open_file(fd, ["fifo"])
    assert time.monotonic() - started < 5


def test_listing_reports_links_and_specials_without_following(tree):
    _, fd = tree
    kinds = {e.name: e.kind for e in confined.list_folder(fd)}
    assert kinds == {"d": "folder", "file-link": "link", "dir-link": "link",
                     "rel-link": "link", "fifo": "other"}
    sub = confined.open_folder(fd, ["d"])
    try:
        assert [(e.name, e.kind, e.size) for e in confined.list_folder(sub)] == [
            ("f.txt", "file", 6)]
    finally:
        os.close(sub)
    with pytest.raises(Refused):
        confined.open_folder(fd, ["dir-link"])


def test_a_file_and_a_folder_swapped_for_links_while_read_never_leak(tree):
    """A step's race: swap a file for a link to the secret, and a folder for a link to
    the secret's folder, as fast as it can, while reading the same names (2 s)."""
    top, fd = tree
    (top / "d" / "airflow.cfg").write_text("public")
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            for name, target, real in (("f.txt", top.parent / "outside" / "airflow.cfg", None),
                                       ("d", top.parent / "outside", "d")):
                where = top / "d" if real is None else top
                link = where / f".{name}.link"
                keep = where / f".{name}.keep"
                link.unlink(missing_ok=True)
                link.symlink_to(target)
                os.rename(where / name, keep)
                os.rename(link, where / name)     # now a link
                os.rename(where / name, link)
                os.rename(keep, where / name)     # back to the real one
                swaps += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    served = refused = 0
    deadline = time.monotonic() + 2
    try:
        while time.monotonic() < deadline:
            for names in (["d", "f.txt"], ["d", "airflow.cfg"]):
                try:
                    text = read(fd, names)
                except Refused:
                    refused += 1
                    continue
                assert SECRET not in text
                served += 1
    finally:
        stop.set()
        thread.join(10)
    assert swaps > 100 and served > 0 and refused > 0, (swaps, served, refused)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(["..", ".", "", "d", "f.txt", "file-link", "dir-link",
                                 "airflow.cfg", "outside", "fifo", "%2e%2e", "\\.."]),
                min_size=1, max_size=5))
def test_no_walk_of_any_names_reaches_outside(tmp_path_factory, names):
    top = tmp_path_factory.getbasetemp() / "fuzz-top"
    if not top.exists():
        (top / "d").mkdir(parents=True)
        (top.parent / "outside").mkdir(exist_ok=True)
        (top.parent / "outside" / "airflow.cfg").write_text(SECRET)
        (top / "d" / "f.txt").write_text("public")
        (top / "file-link").symlink_to(top.parent / "outside" / "airflow.cfg")
        (top / "dir-link").symlink_to(top.parent / "outside")
        os.mkfifo(top / "fifo")
    fd = confined.open_top(top)
    try:
        try:
            text = read(fd, confined.components("/".join(names)))
        except Refused:
            return
        assert text == "public"
    finally:
        os.close(fd)
