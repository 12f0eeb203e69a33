"""The snapshot store: round trips, isolation, dedup, stat cache, crash safety, concurrency."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.snapshot import SnapshotStore, remove_tree
from airflow_orchest_jobs.core.snapshot.copy import Copier
from airflow_orchest_jobs.core.snapshot.manifest import FileRecord, LinkRecord, encode
from airflow_orchest_jobs.core.snapshot.objects import ObjectStore
from airflow_orchest_jobs.core.snapshot.packs import PACK_MAX
from airflow_orchest_jobs.core.snapshot.selection import stamp
from airflow_orchest_jobs.core.snapshot.statcache import StatCache

SRC = Path(__file__).resolve().parents[2] / "src"
OLD = 1_600_000_000  # a 2020 timestamp: files the stat cache may trust at once


def write(root: Path, rel: str, data: bytes | str = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def settle(root: Path) -> None:
    """Backdate mtimes, as for files edited long ago (fresh ones are re-read: racy)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(folder, name), (OLD, OLD), follow_symlinks=False)
        os.utime(folder, (OLD, OLD))


def snapshot_paths(store: SnapshotStore, snapshot_id: str, where: Path) -> set[str]:
    store.checkout(snapshot_id, where)
    return set(tree(where))


def make_project(root: Path) -> Path:
    write(root, "main.py", "print('hi')\n")
    write(root, "pkg/util.py", "X = 1\n")
    write(root, "pkg/same_a.txt", "same content")
    write(root, "pkg/same_b.txt", "same content")
    write(root, "empty.txt", b"")
    write(root, "data/big.bin", os.urandom(PACK_MAX + 12345))  # a single-file object
    write(root, "data/big_copy.bin", (root / "data/big.bin").read_bytes())
    run = write(root, "run.sh", "#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    (root / "link").symlink_to("main.py")
    (root / "outside").symlink_to("/etc/hostname")
    return root


def tree(root: Path) -> dict[str, tuple]:
    """path -> (kind, content or target, exec bit) of everything under root."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            else:
                out[rel] = ("file", Path(path).read_bytes(),
                            bool(os.stat(path).st_mode & stat.S_IXUSR))
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "store" / "snapshots")


def test_checkout_reproduces_the_project(project: Path, store: SnapshotStore,
                                          tmp_path: Path) -> None:
    snap = store.create(project)
    assert snap.file_count == 8 and snap.link_count == 2
    assert snap.total_bytes == sum(p.stat().st_size for p in project.rglob("*")
                                   if p.is_file() and not p.is_symlink())
    assert snap.project_dir == project
    store.checkout(snap.id, tmp_path / "run")
    assert tree(tmp_path / "run") == tree(project)
    assert os.readlink(tmp_path / "run" / "outside") == "/etc/hostname"


def test_executable_bits_are_kept_and_files_writable(project: Path, store: SnapshotStore,
                                                     tmp_path: Path) -> None:
    (project / "main.py").chmod(0o444)  # read-only in the project
    (project / "tool").write_text("#!/bin/sh\n")
    (project / "tool").chmod(0o700)
    snap = store.create(project)
    old = os.umask(0o077)  # a strict umask must not strip the stored bits
    try:
        store.checkout(snap.id, tmp_path / "run")
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE(os.stat(tmp_path / "run" / name).st_mode)
             for name in ("run.sh", "tool", "main.py", "pkg/util.py", "data/big.bin")}
    assert modes == {"run.sh": 0o755, "tool": 0o755, "main.py": 0o644,
                     "pkg/util.py": 0o644, "data/big.bin": 0o644}


def test_writing_to_a_checkout_changes_nothing_else(project: Path, store: SnapshotStore,
                                                    tmp_path: Path) -> None:
    snap = store.create(project)
    store.checkout(snap.id, tmp_path / "run1")
    store.checkout(snap.id, tmp_path / "run2")
    for name in ("main.py", "data/big.bin", "pkg/same_a.txt"):
        with open(tmp_path / "run1" / name, "r+b") as handle:
            handle.write(b"CHANGED")
        with open(tmp_path / "run1" / name, "ab") as handle:
            handle.write(b"more")
    (tmp_path / "run1" / "new.txt").write_text("new")
    assert tree(tmp_path / "run2") == tree(project)
    store.checkout(snap.id, tmp_path / "run3")
    assert tree(tmp_path / "run3") == tree(project)
    objects = [p for p in (store.root / "objects").rglob("*") if p.is_file()]
    objects += list((store.root / "packs").iterdir())
    assert objects and all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in objects)


def test_each_content_is_stored_once(project: Path, store: SnapshotStore,
                                     tmp_path: Path) -> None:
    write(project, "data/blob.bin", os.urandom(3 << 20))
    first = store.create(project)
    one = store.disk_usage()
    ids = {first.id, store.create(project).id, store.create(project).id}
    three = store.disk_usage()
    assert len(ids) == 3 and three.snapshots == 3
    # 9 files, 2 pairs with equal content: 7 distinct contents, stored once each
    assert three.objects == one.objects == 7 == ObjectStore(store.root).count()
    assert three.bytes < one.bytes * 1.05
    plain = subprocess.run(["du", "-s", "--block-size=1", str(project)], check=True,
                           capture_output=True, text=True).stdout.split()[0]
    assert three.bytes < int(plain) * 1.1


def test_unchanged_files_are_not_read_again(project: Path, store: SnapshotStore,
                                            monkeypatch) -> None:
    settle(project)
    reads: list[int] = []
    real_ingest = ObjectStore.ingest

    def counting(self, src, size, pack=None):
        reads.append(size)
        return real_ingest(self, src, size, pack)

    monkeypatch.setattr(ObjectStore, "ingest", counting)
    store.create(project)
    assert len(reads) == 8
    reads.clear()
    again = store.create(project)
    assert reads == []
    write(project, "pkg/util.py", "X = 2\n")  # a real change is seen
    changed = store.create(project)
    assert reads == [6]
    assert again.id != changed.id


def test_unchanged_folders_are_not_listed_again(project: Path, store: SnapshotStore,
                                                 tmp_path: Path, monkeypatch) -> None:
    write(project, "deep/.gitignore", "*.tmp\n")
    write(project, "deep/a/b/keep.txt", "k")
    write(project, "deep/a/b/drop.log", "d")
    write(project, ".orchestignore", "# nothing yet\n")
    settle(project)
    store.create(project)
    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(str(path))
                        or real_scandir(path))
    again = store.create(project)
    assert listed == []  # every folder replayed from what the last snapshot saw
    assert "deep/a/b/drop.log" in snapshot_paths(store, again.id, tmp_path / "r1")

    # pattern files edited in place (their folder's stat unchanged) apply below them
    (project / "deep/.gitignore").write_text("*.log\n")
    (project / ".orchestignore").write_text("keep.txt\n")
    edited = snapshot_paths(store, store.create(project).id, tmp_path / "r2")
    assert "deep/a/b/drop.log" not in edited and "deep/a/b/keep.txt" not in edited
    assert listed  # the folders below the changed patterns were listed again

    # a file added deep down shows up; a folder replaced by a file too
    write(project, "deep/a/b/new.txt", "n")
    shutil.rmtree(project / "pkg")
    write(project, "pkg", "now a file")
    changed = snapshot_paths(store, store.create(project).id, tmp_path / "r3")
    assert "deep/a/b/new.txt" in changed and "pkg" in changed
    assert not any(path.startswith("pkg/") for path in changed)


def test_a_stale_folder_memory_falls_back_to_listing(project: Path, store: SnapshotStore,
                                                     tmp_path: Path, monkeypatch) -> None:
    settle(project)
    store.create(project)
    (project / "pkg" / "util.py").unlink()  # a file became a folder, and the memory
    write(project, "pkg/util.py/inner.py", "y = 2\n")  # is made to believe nothing did
    real_recall = StatCache.recall

    def stale(self, rel):
        found = real_recall(self, rel)
        return found and (stamp(os.lstat(project / rel)), *found[1:])

    monkeypatch.setattr(StatCache, "recall", stale)
    paths = snapshot_paths(store, store.create(project).id, tmp_path / "run")
    assert "pkg/util.py" not in paths and "pkg/util.py/inner.py" in paths
    assert "pkg/same_a.txt" in paths


def test_same_size_same_mtime_change_is_still_seen(project: Path, store: SnapshotStore,
                                                   tmp_path: Path) -> None:
    settle(project)
    store.create(project)
    write(project, "pkg/util.py", "X = 9\n")  # same size ...
    os.utime(project / "pkg/util.py", (OLD, OLD))  # ... and mtime put back: ctime moved
    snap = store.create(project)
    store.checkout(snap.id, tmp_path / "run")
    assert (tmp_path / "run" / "pkg/util.py").read_text() == "X = 9\n"


def test_recently_written_files_are_read_again(project: Path, store: SnapshotStore,
                                               monkeypatch) -> None:
    # files changed within the racy window are not trusted from their stat alone
    reads: list[int] = []
    real_ingest = ObjectStore.ingest
    monkeypatch.setattr(ObjectStore, "ingest",
                        lambda self, src, size, pack=None: reads.append(size)
                        or real_ingest(self, src, size, pack))
    store.create(project)
    store.create(project)
    assert len(reads) == 16


def test_unreadable_file_is_a_clear_error(project: Path, store: SnapshotStore,
                                          monkeypatch) -> None:
    target = str(project / "pkg" / "util.py")
    real_open = os.open

    # Tests run as root, which reads anything: simulate a file without permission.
    def fake_open(path, flags, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    with pytest.raises(OrchestError) as error:
        store.create(project)
    assert target in str(error.value) and "Permission denied" in str(error.value)
    assert store.list() == []


def test_failure_midway_leaves_no_snapshot(project: Path, store: SnapshotStore,
                                           monkeypatch) -> None:
    before = store.create(project)
    write(project, "new1.bin", os.urandom(PACK_MAX * 2))
    write(project, "new2.txt", "fresh")
    calls = []
    real_ingest = ObjectStore.ingest

    def failing(self, src, size, pack=None):
        calls.append(size)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_ingest(self, src, size, pack)

    monkeypatch.setattr(ObjectStore, "ingest", failing)
    with pytest.raises(OrchestError, match="No space left"):
        store.create(project)
    monkeypatch.undo()
    assert [s.id for s in store.list()] == [before.id]
    after = store.create(project)
    assert [s.id for s in store.list()] == [before.id, after.id]


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from airflow_orchest_jobs.core.snapshot import SnapshotStore
    from airflow_orchest_jobs.core.snapshot.objects import ObjectStore
    store_dir, project, marker = map(Path, sys.argv[1:])
    real = ObjectStore.ingest
    count = [0]
    def slow(self, src, size, pack=None):
        result = real(self, src, size, pack)
        count[0] += 1
        if count[0] == 3:   # some contents written, manifest not yet
            marker.write_text("writing")
            time.sleep(60)
        return result
    ObjectStore.ingest = slow
    SnapshotStore(store_dir, workers=1).create(project)
""")


def test_killed_create_leaves_no_snapshot(project: Path, store: SnapshotStore,
                                          tmp_path: Path) -> None:
    before = store.create(project)
    for index in range(6):
        write(project, f"more/{index}.bin", os.urandom(PACK_MAX + index + 1))
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(store.root),
                              str(project), str(marker)], env={**os.environ,
                             "PYTHONPATH": str(SRC)})
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert child.poll() is None, "the snapshot process ended early"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert [s.id for s in store.list()] == [before.id]
    after = store.create(project)
    assert [s.id for s in store.list()] == [before.id, after.id]
    # what the killed run stored is used now; its half-written temp files are freed
    stale = sum(p.stat().st_size for p in (store.root / "tmp").iterdir())
    assert store.collect_garbage() == stale
    assert list((store.root / "tmp").iterdir()) == []
    store.checkout(after.id, tmp_path / "run")
    assert tree(tmp_path / "run") == tree(project)


CONCURRENT_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from airflow_orchest_jobs.core.snapshot import SnapshotStore
    from airflow_orchest_jobs.core.snapshot.objects import ObjectStore
    store_dir, project, gate = map(Path, sys.argv[1:])
    real_packing = ObjectStore.packing
    def packing(self):  # both processes have looked at the store before either writes
        (gate / str(os.getpid())).touch()
        while len(list(gate.iterdir())) < 2:
            time.sleep(0.001)
        return real_packing(self)
    ObjectStore.packing = packing
    print(SnapshotStore(store_dir).create(project).id)
""")


def test_two_processes_snapshot_at_once(project: Path, store: SnapshotStore,
                                        tmp_path: Path) -> None:
    for index in range(150):
        write(project, f"many/{index}.py", f"value = {index}\n")
    for index in range(4):
        write(project, f"blobs/{index}.bin", os.urandom(PACK_MAX * 3))
    twin = tmp_path / "twin"  # mostly the same contents, one file of its own each
    shutil.copytree(project, twin, symlinks=True)
    write(project, "own.txt", "only in the project")
    write(twin, "own.txt", "only in the twin")
    gate = tmp_path / "gate"
    gate.mkdir()
    children = [subprocess.Popen([sys.executable, "-c", CONCURRENT_SCRIPT, str(store.root),
                                  str(folder), str(gate)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(SRC)})
                for folder in (project, twin)]
    ids = [child.communicate(timeout=60)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert len(set(ids)) == 2 and {s.id for s in store.list()} == set(ids)
    # 9 + 150 + 4 files, 2 pairs with equal content, and the twin's own file:
    # every content stored exactly once
    assert ObjectStore(store.root).count() == 162
    for snapshot_id, folder in zip(ids, (project, twin), strict=True):
        store.checkout(snapshot_id, tmp_path / snapshot_id)
        assert tree(tmp_path / snapshot_id) == tree(folder)


def test_unknown_ids_say_how_to_list(store: SnapshotStore, tmp_path: Path) -> None:
    for call in (lambda: store.checkout("0123456789abcdef0123", tmp_path / "x"),
                 lambda: store.delete("0123456789abcdef0123"),
                 lambda: store.get("../../etc/passwd")):
        with pytest.raises(OrchestError) as error:
            call()
        message = str(error.value)
        assert "no such snapshot" in message and "snapshot list" in message
    assert not store.exists("0123456789abcdef0123")
    assert not (tmp_path / "x").exists()


def test_delete_then_gc_frees_only_unshared_content(project: Path, store: SnapshotStore,
                                                    tmp_path: Path) -> None:
    keep = store.create(project)
    write(project, "only_in_second.bin", os.urandom(PACK_MAX + 1000))
    write(project, "small_only_in_second.txt", "tiny and unique")
    second = store.create(project)
    assert store.collect_garbage() == 0
    store.delete(second.id)
    assert not store.exists(second.id) and store.exists(keep.id)
    assert store.collect_garbage() >= PACK_MAX + 1000 + len("tiny and unique")
    assert ObjectStore(store.root).count() == 6
    store.checkout(keep.id, tmp_path / "run")
    (tmp_path / "run" / "only_in_second.bin").write_bytes(
        (project / "only_in_second.bin").read_bytes())
    (tmp_path / "run" / "small_only_in_second.txt").write_text("tiny and unique")
    assert tree(tmp_path / "run") == tree(project)
    store.delete(keep.id)
    store.collect_garbage()
    assert store.disk_usage().objects == 0 and store.list() == []


def test_large_snapshots_log_a_warning(project: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="airflow_orchest_jobs.snapshot")
    SnapshotStore(tmp_path / "big", warn_bytes=10 << 20).create(project)
    assert not caplog.records
    snap = SnapshotStore(tmp_path / "small", warn_bytes=1000).create(project)
    assert [r.name for r in caplog.records] == ["airflow_orchest_jobs.snapshot"]
    assert snap.id in caplog.text and ".orchestignore" in caplog.text


def test_checkout_destination_rules(project: Path, store: SnapshotStore,
                                    tmp_path: Path) -> None:
    snap = store.create(project)
    (tmp_path / "empty").mkdir()
    store.checkout(snap.id, tmp_path / "empty")  # an existing empty folder is fine
    assert tree(tmp_path / "empty") == tree(project)
    with pytest.raises(OrchestError, match="not empty"):
        store.checkout(snap.id, tmp_path / "empty")
    write(tmp_path, "a_file")
    with pytest.raises(OrchestError, match="not a folder"):
        store.checkout(snap.id, tmp_path / "a_file")
    store.checkout(snap.id, tmp_path / "new" / "nested" / "run")
    assert tree(tmp_path / "new" / "nested" / "run") == tree(project)


def test_damage_is_reported_and_a_failed_checkout_leaves_nothing(
        project: Path, store: SnapshotStore, tmp_path: Path) -> None:
    snap = store.create(project)
    big = next(p for p in (store.root / "objects").rglob("*") if p.is_file())
    big.unlink()
    with pytest.raises(OrchestError, match="damaged"):
        store.checkout(snap.id, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []
    manifest = store.root / "manifests" / f"{snap.id}.json"
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b"main.py", b"mein.py"))
    with pytest.raises(OrchestError, match="does not match its id"):
        store.checkout(snap.id, tmp_path / "run")


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/evil", "a/../../b", "link/inside"])
def test_manifest_paths_cannot_escape_the_checkout(store: SnapshotStore, tmp_path: Path,
                                                   bad: str) -> None:
    # a manifest that hashes to its id but names a path outside (or through a link)
    files = [FileRecord(bad, 0o644, 0, "0" * 64)]
    manifest, data = encode(tmp_path, files, [LinkRecord("link", "/tmp")])
    folder = store.root / "manifests"
    folder.mkdir(parents=True)
    (folder / f"{manifest.snapshot.id}.json").write_bytes(data)
    with pytest.raises(OrchestError, match="damaged"):
        store.checkout(manifest.snapshot.id, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "escape.txt").exists()


def test_view_is_a_reused_checkout_removed_with_its_snapshot(
        project: Path, store: SnapshotStore) -> None:
    snap = store.create(project)
    view = store.view(snap.id)
    assert view.snapshot == snap and tree(view.root) == tree(project)
    marker_ino = os.stat(view.root / "main.py").st_ino
    assert os.stat(store.view(snap.id).root / "main.py").st_ino == marker_ino
    store.delete(snap.id)
    assert not view.root.exists()


def test_gc_rewrites_a_partly_dead_pack(project: Path, store: SnapshotStore,
                                        tmp_path: Path, monkeypatch) -> None:
    write(project, "gone.txt", "soon deleted")
    first = store.create(project)
    (project / "gone.txt").unlink()
    second = store.create(project)  # every content already stored: no new pack
    packs = sorted((store.root / "packs").iterdir())
    assert len(packs) == 1
    store.delete(first.id)
    assert store.collect_garbage() >= len("soon deleted")
    rewritten = sorted((store.root / "packs").iterdir())
    assert len(rewritten) == 1 and rewritten != packs
    assert ObjectStore(store.root).count() == 6
    store.checkout(second.id, tmp_path / "run")
    assert tree(tmp_path / "run") == tree(project)
    # many packs are merged into one
    for index in range(3):
        write(project, f"gen{index}.py", f"generated = {index}\n")
        store.create(project)
    assert len(list((store.root / "packs").iterdir())) == 4
    monkeypatch.setattr("airflow_orchest_jobs.core.snapshot.objects.MAX_PACKS", 2)
    store.collect_garbage()
    assert len(list((store.root / "packs").iterdir())) == 1
    assert ObjectStore(store.root).count() == 9
    store.checkout(store.list()[-1].id, tmp_path / "run2")
    assert tree(tmp_path / "run2") == tree(project)


def test_copier_fallbacks_give_identical_copies(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    src_path = write(tmp_path, "src", data)
    for reflink, copy_range, sendfile in [(True, True, True), (False, True, True),
                                          (False, False, True), (False, False, False)]:
        copier = Copier()
        copier.reflink, copier.copy_range, copier.sendfile = reflink, copy_range, sendfile
        dst_path = tmp_path / f"dst-{reflink}-{copy_range}-{sendfile}"
        with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
            assert copier.copy(src.fileno(), dst.fileno(), len(data)) == len(data)
            assert copier.copy_at(src.fileno(), 1000, dst.fileno(), 5000) == 5000
        assert dst_path.read_bytes() == data + data[1000:6000]


def test_remove_tree_handles_read_only_folders_and_links(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write(run, "a/b/c.txt").chmod(0o444)
    (run / "a" / "b").chmod(0o500)
    (run / "a").chmod(0o000)
    kept = write(tmp_path, "elsewhere/keep.txt")
    (run / "link").symlink_to(kept.parent)
    remove_tree(run)
    assert not run.exists() and kept.exists()
    (tmp_path / "alias").symlink_to(kept.parent)
    remove_tree(tmp_path / "alias")  # removes the link, not its target
    assert kept.exists() and not (tmp_path / "alias").exists()
    remove_tree(tmp_path / "missing")


def test_the_store_never_imports_airflow() -> None:
    code = ("import sys, airflow_orchest_jobs.core.snapshot, airflow_orchest_jobs.cli.commands"
            ".snapshot; print([m for m in sys.modules if m.split('.')[0] == 'airflow'])")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(SRC)}).stdout
    assert out.strip() == "[]"
