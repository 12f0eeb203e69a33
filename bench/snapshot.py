"""Benchmark the snapshot store against what Orchest did (rsync, then ``cp -r`` per run).

Run: ``.venv/bin/python bench/snapshot.py`` (needs rsync, cp, du). Generates a project of
about 4,000 source files plus 250 MB of data files, half of the data git-ignored by the
top-level .gitignore, in a temp folder on the same filesystem as the stores. Prints a
table of ratios (median of several repetitions, warm page cache) and writes the
"## Snapshots" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from airflow_orchest_jobs.core.snapshot import SnapshotStore, remove_tree
from airflow_orchest_jobs.core.snapshot.fsops import RACY_NS

logging.getLogger("airflow_orchest_jobs.snapshot").setLevel(logging.ERROR)  # size warnings

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
COMMAND = ".venv/bin/python bench/snapshot.py"
SOURCE_FILES = 4000
DATA_BYTES = 250 * 1024 * 1024
DATA_FILES = 100
GITIGNORE = "/data/raw/\n__pycache__/\n*.pyc\n"


def reflink_works(folder: Path) -> bool:
    """Whether the filesystem can share blocks (FICLONE), which changes what we measure."""
    import fcntl

    from airflow_orchest_jobs.core.snapshot.copy import FICLONE

    (folder / "probe-src").write_bytes(b"x" * 4096)
    with open(folder / "probe-src", "rb") as src, open(folder / "probe-dst", "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return True
        except OSError:
            return False


def generate(project: Path, seed: int = 1) -> None:
    """A project shaped like a real one: nested packages, notebooks, data, caches."""
    rnd = random.Random(seed)
    project.mkdir(parents=True, exist_ok=True)
    (project / ".gitignore").write_text(GITIGNORE)
    for index in range(SOURCE_FILES):
        folder = project / "src" / f"pkg{index % 40:02d}" / f"sub{index % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = rnd.choice([".py", ".py", ".py", ".ipynb", ".sql", ".md"])
        body = os.urandom(rnd.randint(100, 4000)).hex()  # ~4 KB of text on average
        (folder / f"module{index}{suffix}").write_text(body)
        if index % 20 == 0:  # ignored build artefacts
            cache = folder / "__pycache__"
            cache.mkdir(exist_ok=True)
            (cache / f"module{index}.cpython-311.pyc").write_bytes(os.urandom(2000))
    each = DATA_BYTES // DATA_FILES
    for index in range(DATA_FILES):
        kind = "raw" if index % 2 else "processed"  # half of the data is git-ignored
        folder = project / "data" / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part{index:03d}.parquet").write_bytes(os.urandom(each))


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def du(path: Path) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def run(work: Path, repeat: int) -> list[tuple[str, float, float, float, str]]:
    """Each repetition times ours and the baseline back to back (order alternating), so
    load from other processes on a shared machine hits both alike."""
    project = work / "project"
    generate(project)
    # As in real use, the files were written before the stat cache's racy window (files
    # changed in the last 2 s are always read again; see statcache.py).
    time.sleep(RACY_NS / 1e9 + 0.1)
    warm = SnapshotStore(work / "warm")
    snapshot = warm.create(project)
    plain = work / "plain"  # the snapshotted files, as a plain folder
    warm.checkout(snapshot.id, plain)
    times: dict[str, list[float]] = {name: [] for name in
                                     ("rsync", "first", "again", "checkout", "cp")}

    def rsync(index: int) -> float:
        return timed(lambda: subprocess.run(
            ["rsync", "-aWHAX", f"--exclude-from={project}/.gitignore", f"{project}/",
             f"{work}/rsync{index}/"], check=True))

    def first(index: int) -> float:
        store = SnapshotStore(work / f"cold{index}")  # a fresh store: nothing cached
        return timed(lambda: store.create(project))

    def checkout(index: int) -> float:
        return timed(lambda: warm.checkout(snapshot.id, work / f"co{index}"))

    def copy(index: int) -> float:
        return timed(lambda: subprocess.run(["cp", "-r", str(plain), str(work / f"cp{index}")],
                                            check=True))

    def again(index: int) -> float:
        return timed(lambda: warm.create(project))

    for index in range(repeat):
        # rsync, first, again / first, again, rsync; checkout, cp / cp, checkout
        order = [("rsync", rsync), ("first", first), ("again", again)]
        copies = [("checkout", checkout), ("cp", copy)]
        if index % 2:
            order, copies = [*order[1:], order[0]], copies[::-1]
        for name, measure in order + copies:
            times[name].append(measure(index))
        for name in (f"rsync{index}", f"cold{index}", f"co{index}", f"cp{index}"):
            remove_tree(work / name)

    three = SnapshotStore(work / "three")
    for _ in range(3):
        three.create(project)
    store_bytes, plain_bytes = du(work / "three"), du(plain)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"snapshot: {snapshot.file_count} files, {snapshot.total_bytes / 1e6:.1f} MB; "
          f"raw times: " + ", ".join(f"{k}={[round(v, 3) for v in vs]}"
                                      for k, vs in times.items()))

    def paired(ours: str, base: str) -> float:
        """Median of the per-repetition ratios: each pair ran back to back."""
        return statistics.median(a / b for a, b in zip(times[ours], times[base], strict=True))

    return [
        ("first snapshot vs rsync -aWHAX (Orchest)", med["first"], med["rsync"],
         paired("first", "rsync"), "<= 1.0"),
        ("re-snapshot (unchanged) vs first snapshot", med["again"], med["first"],
         paired("again", "first"), "<= 0.25"),
        ("checkout vs cp -r", med["checkout"], med["cp"], paired("checkout", "cp"),
         "<= 1.2"),
        ("disk: 3 snapshots vs 1 plain copy (du)", store_bytes / 1e6, plain_bytes / 1e6,
         store_bytes / plain_bytes, "<= 1.1"),
    ]


def table(rows: list[tuple[str, float, float, float, str]]) -> str:
    lines = ["| measure | ours (median) | baseline (median) | ratio (median of pairs) | goal |",
             "|---|---:|---:|---:|---|"]
    for name, ours, base, ratio, goal in rows:
        unit = " MB" if name.startswith("disk") else " s"
        lines.append(f"| {name} | {ours:.3f}{unit} | {base:.3f}{unit} | {ratio:.2f}x | "
                     f"{goal} |")
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    section = re.compile(r"^## Snapshots\n.*?(?=^## |\Z)", re.S | re.M)
    if section.search(current):
        current = section.sub(lambda _: text, current)
    else:
        current = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where to generate (same filesystem as the stores)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aoj-bench-", dir=args.dir) as tmp:
        rows = run(Path(tmp), args.repeat)
        fs = subprocess.run(["df", "--output=fstype", tmp], capture_output=True,
                            text=True).stdout.split()[-1]
        fs += " with reflink" if reflink_works(Path(tmp)) else " (no reflink)"
    result = table(rows)
    print(result)
    if not args.no_write:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        write_results(
            "## Snapshots\n\n"
            f"`{COMMAND}` ({when}; {os.cpu_count()} cores, {platform.machine()}, Linux "
            f"{platform.release()}, {fs}, Python {platform.python_version()}; "
            f"{args.repeat} repetitions, warm page cache; each first snapshot uses a fresh "
            "store; ours and the baseline run back to back in each repetition, order "
            "alternating, and the ratio is the median of those paired ratios, as other "
            "work on the shared machine made single timings vary up to 10x). Project: "
            f"{SOURCE_FILES} source files plus {DATA_BYTES >> 20} MB of data in "
            f"{DATA_FILES} files, half of the data git-ignored by the top-level "
            ".gitignore.\n\n"
            f"{result}\n\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
