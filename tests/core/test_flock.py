"""core.flock: the one lock-file helper (job states, run slots, checkouts, the snapshot
store, engine records and the layer cache all lock through it)."""

from __future__ import annotations

import fcntl
import os

import pytest

from airflow_orchest_jobs.core.flock import locked, locked_all


def held(path) -> bool:
    """Whether another open file description cannot take ``path``'s exclusive lock."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_lock_is_held_inside_the_block_only(tmp_path):
    path = tmp_path / "deep" / "folder" / "x.lock"
    with locked(path):
        assert held(path)
    assert not held(path)
    with pytest.raises(ValueError), locked(path):
        raise ValueError("the block's error passes unchanged, the lock is released")
    assert not held(path)


def test_shared_locks_share(tmp_path):
    path = tmp_path / "lock"
    with locked(path, shared=True), locked(path, shared=True):
        assert held(path)  # an exclusive one waits


def test_an_unwritable_store_raises_the_callers_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RuntimeError, match="store"), \
            locked(tmp_path / "file" / "x.lock", on_error=lambda e: RuntimeError("store")):
        pass


def test_several_locks_at_once(tmp_path):
    paths = [tmp_path / "b.lock", tmp_path / "a.lock", tmp_path / "b.lock"]
    with locked_all(paths):
        assert held(tmp_path / "a.lock") and held(tmp_path / "b.lock")
    assert not held(tmp_path / "a.lock")


def test_a_lock_held_elsewhere_is_not_waited_for_when_not_blocking(tmp_path):
    path = tmp_path / "slot.lock"
    with locked(path) as first:
        assert first is True
        with locked(path, blocking=False) as second:
            assert second is False
    with locked(path, blocking=False) as again:
        assert again is True and held(path)
