"""``snapshot create/checkout/list/delete/gc``: the snapshot store from the shell, no Airflow.

The store defaults to ``<store_dir>/snapshots`` from the ``AIRFLOW__ORCHEST_JOBS__*``
environment (the same folder the Airflow tasks use); ``--store`` picks another.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...config import load_settings
from ...core.layout import StoreLayout
from ...core.snapshot import SnapshotStore


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "snapshot", help="create, check out, list and delete project snapshots",
        description="Snapshots hold the files git would track in a project (plus "
        ".orchestinclude, minus .orchestignore), each content stored once.")
    commands = parser.add_subparsers(dest="snapshot_command", required=True,
                                     metavar="SUBCOMMAND")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", type=Path, metavar="DIR",
                       help="snapshot store folder (default: <store_dir>/snapshots from "
                       "the AIRFLOW__ORCHEST_JOBS__STORE_DIR setting)")

    create = commands.add_parser("create", parents=[store], help="snapshot a project folder",
                                 description="Snapshot PROJECT_DIR; the last line printed "
                                 "is the new snapshot's id.")
    create.add_argument("project_dir", metavar="PROJECT_DIR", type=Path)
    create.set_defaults(func=run_create)

    checkout = commands.add_parser("checkout", parents=[store],
                                   help="copy a snapshot into a new folder")
    checkout.add_argument("snapshot_id", metavar="ID")
    checkout.add_argument("dest", metavar="DEST", type=Path,
                          help="folder to create (may exist if empty)")
    checkout.set_defaults(func=run_checkout)

    listing = commands.add_parser("list", parents=[store], help="list snapshots, oldest first")
    listing.set_defaults(func=run_list)

    delete = commands.add_parser("delete", parents=[store],
                                 help="delete a snapshot (then run gc to free its files)")
    delete.add_argument("snapshot_id", metavar="ID")
    delete.set_defaults(func=run_delete)

    gc = commands.add_parser("gc", parents=[store],
                             help="free the stored files no snapshot uses any more")
    gc.set_defaults(func=run_gc)


def open_store(args: argparse.Namespace) -> SnapshotStore:
    root = args.store or StoreLayout(load_settings().store_dir).snapshots
    return SnapshotStore(root)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def run_create(args: argparse.Namespace) -> int:
    snapshot = open_store(args).create(args.project_dir)
    print(f"{snapshot.file_count} files and {snapshot.link_count} symlinks, "
          f"{_mb(snapshot.total_bytes)}, from {snapshot.project_dir}")
    print(snapshot.id)
    return 0


def run_checkout(args: argparse.Namespace) -> int:
    open_store(args).checkout(args.snapshot_id, args.dest)
    print(f"checked out {args.snapshot_id} into {args.dest}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = open_store(args)
    snapshots = store.list()
    print(f"{'ID':<20}  {'CREATED (UTC)':<19}  {'FILES':>7}  {'SIZE':>10}  PROJECT")
    for snap in snapshots:
        print(f"{snap.id:<20}  {snap.created:%Y-%m-%d %H:%M:%S}  {snap.file_count:>7}  "
              f"{_mb(snap.total_bytes):>10}  {snap.project_dir}")
    usage = store.disk_usage()
    print(f"{len(snapshots)} snapshot(s), {usage.objects} stored file(s), "
          f"{_mb(usage.bytes)} on disk in {store.root}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    open_store(args).delete(args.snapshot_id)
    print(f"deleted {args.snapshot_id}; `airflow-orchest-jobs snapshot gc` frees its files")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    freed = open_store(args).collect_garbage()
    print(f"freed {_mb(freed)}")
    return 0
