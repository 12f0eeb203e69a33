"""Compare a plan with what is there, print the table, and write (``--apply``).

A file, Variable or Connection is written when it is missing, or when it still holds what
the last import wrote (the manifest's hash) and Orchest's side changed; one that a person
edited since (or that an import never wrote) is kept and said so. Per project all or
nothing: its files are staged beside their targets, its Variables written (old values
remembered), then the files renamed into place; any failure undoes the lot.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..core.importer.plan import ImportPlan, ProjectPlan
from ..core.importer.webhooks import WEBHOOKS_VARIABLE, ConnectionSpec
from .manifest import VARIABLE as MANIFEST_VARIABLE
from .manifest import Manifest, digest


class Store(Protocol):
    def variable(self, name: str) -> str | None: ...
    def set_variable(self, name: str, value: str) -> None: ...
    def delete_variable(self, name: str) -> None: ...
    def connection(self, conn_id: str) -> str | None: ...
    def set_connection(self, spec: ConnectionSpec) -> None: ...
    def restore_connection(self, conn_id: str, canonical: str | None) -> None: ...
    def setting(self, key: str) -> str | None: ...
    def setting_from_environment(self, key: str) -> str | None: ...
    def set_setting(self, key: str, value: str) -> Path: ...
    def config_file(self) -> Path: ...


#: Orchest's own run-time leftovers inside a project: never project content.
def _skipped(rel: str) -> bool:
    parts = rel.split("/")
    return (parts[:1] == [".orchest"] and len(parts) >= 4 and parts[1] == "pipelines"
            and parts[3] in ("data", "logs")) or rel == ".orchest/plasma.sock"


@dataclass
class FileItem:
    rel: str
    data: bytes | None = None
    source: Path | None = None
    link: str | None = None
    executable: bool = False

    def content(self) -> bytes:
        if self.link is not None:
            return b"link:" + os.fsencode(self.link)
        if self.data is not None:
            return self.data
        assert self.source is not None
        return self.source.read_bytes()


@dataclass
class Decision:
    item: str
    verb: str  # create, update, unchanged, kept
    why: str = ""


@dataclass
class ProjectWork:
    plan: ProjectPlan
    files: list[tuple[FileItem, Decision]] = field(default_factory=list)
    variables: list[tuple[str, str, Decision]] = field(default_factory=list)


def _current(path: Path) -> bytes | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return b"link:" + os.fsencode(os.readlink(path))
    if not stat.S_ISREG(st.st_mode):
        return b"\0not a file"
    return path.read_bytes()


def _decide(key: str, desired: bytes | str, current: bytes | str | None,
            recorded: str | None) -> Decision:
    if current is None:
        return Decision(key, "create")
    if current == desired:
        return Decision(key, "unchanged")
    if recorded is not None and digest(current) == recorded:
        return Decision(key, "update")
    return Decision(key, "kept", "edited since the last import; not overwritten (delete it "
                    "to take Orchest's version)" if recorded else
                    "exists and was not written by an import; not overwritten (delete it "
                    "to import)")


def _source_files(source: Path) -> Iterator[FileItem]:
    for root, dirs, files in os.walk(source):
        dirs.sort()
        base = Path(root)
        for name in sorted(files) + [d for d in dirs if (base / d).is_symlink()]:
            path = base / name
            rel = path.relative_to(source).as_posix()
            if _skipped(rel):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                yield FileItem(rel, link=os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                yield FileItem(rel, source=path, executable=bool(st.st_mode & 0o111))
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]


class Importer:
    def __init__(self, plan: ImportPlan, projects_dir: Path, store: Store,
                 out: TextIO | None = None, err: TextIO | None = None):
        self.plan, self.projects_dir, self.store = plan, projects_dir, store
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.manifest = Manifest.load(projects_dir, store.variable(MANIFEST_VARIABLE))
        self.kept: list[str] = []
        self.problems: list[str] = list(plan.problems)
        self.counts: dict[str, int] = {}

    # -- deciding ----------------------------------------------------------------------
    def project_work(self, plan: ProjectPlan) -> ProjectWork:
        work = ProjectWork(plan)
        items: dict[str, FileItem] = {}
        if plan.source is not None and plan.source.is_dir():
            for item in _source_files(plan.source):
                items[item.rel] = item
        for rel, text in plan.files.items():
            items[rel] = FileItem(rel, data=text.encode())
        target = self.projects_dir / plan.folder
        for rel, item in items.items():
            key = f"{plan.folder}/{rel}"
            decision = _decide(key, item.content(), _current(target / rel),
                               self.manifest.files.get(key))
            work.files.append((item, decision))
        for name, value in sorted(plan.variables.items()):
            decision = _decide(f"Variable {name}", value, self.store.variable(name),
                               self.manifest.variables.get(name))
            work.variables.append((name, value, decision))
        return work

    # -- the table ---------------------------------------------------------------------
    def _row(self, project: str, item: str, action: str, detail: str = "") -> None:
        self.rows.append((project, item, action, detail))

    def report_project(self, work: ProjectWork) -> None:
        plan = work.plan
        copied = [(i, d) for i, d in work.files if i.rel not in plan.files]
        if copied:
            verbs: dict[str, int] = {}
            for _, decision in copied:
                verbs[decision.verb] = verbs.get(decision.verb, 0) + 1
            self._row(plan.folder, f"project folder ({len(copied)} files)",
                      ", ".join(f"{v} {n}" for v, n in sorted(verbs.items())),
                      f"from {plan.source}")
        decisions = {i.rel: d for i, d in work.files}
        for job in plan.jobs:
            decision = decisions[job.file]
            self._row(plan.folder, job.file, decision.verb,
                      f"{job.dag_id}; {job.state}" + (f"; runs {job.runs}" if job.runs
                                                      else ""))
        for name, _, decision in work.variables:
            self._row(plan.folder, f"Variable {name}", decision.verb)
        for _, decision in work.files + [(None, d) for _, _, d in work.variables]:
            if decision.verb == "kept":
                self.kept.append(f"{plan.folder}: {decision.item}: {decision.why}")

    def print_table(self) -> None:
        if not self.rows:
            print("nothing to import", file=self.out)
            return
        widths = [max(len(r[i]) for r in [*self.rows, self.HEADER]) for i in range(3)]
        for row in [self.HEADER, *self.rows]:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
                  + "  " + row[3], file=self.out)

    HEADER = ("PROJECT", "WRITES", "ACTION", "DETAIL")

    # -- running -----------------------------------------------------------------------
    def run(self, apply: bool) -> int:
        self.rows: list[tuple[str, str, str, str]] = []
        works = []
        for plan in self.plan.projects:
            work = self.project_work(plan)
            works.append(work)
            self.report_project(work)
        global_work = self.global_work()
        self.print_table()
        for work in works:
            self.problems += work.plan.problems
        for line in self.problems:
            print(f"problem: {line}", file=self.err)
        for line in self.kept:
            print(f"kept: {line}", file=self.err)
        notes = [n for w in works for n in w.plan.notes] + self.plan.notes
        for line in notes:
            print(f"note: {line}", file=self.err)
        if not apply:
            print("dry run: nothing was written; run again with --apply to write what the "
                  "table says (create, update)", file=self.out)
            return 1 if self.problems else 0
        written, blocked = 0, []
        for work in works:
            if work.plan.problems:
                blocked.append(work.plan.folder)
                continue
            written += self.apply_project(work)
        if self.plan.problems:
            blocked.append("webhooks and settings")
        else:
            written += self.apply_global(global_work)
        self.save_manifest()
        done = f"applied: {written} item(s) written"
        if blocked:
            done += f"; NOT written because of the problems above: {', '.join(blocked)}"
        print(done, file=self.out)
        return 1 if self.problems else 0

    def apply_project(self, work: ProjectWork) -> int:
        target = self.projects_dir / work.plan.folder
        files = [(i, d) for i, d in work.files if d.verb in ("create", "update")]
        variables = [(n, v, d) for n, v, d in work.variables if d.verb in ("create", "update")]
        staged: list[tuple[Path, Path]] = []
        created: list[Path] = []
        previous: dict[str, str | None] = {}
        try:
            for item, _ in files:
                final = target / item.rel
                self._mkdirs(final.parent, created)
                staged.append((self._stage(item, final), final))
            for name, value, _ in variables:
                previous[name] = self.store.variable(name)
                self.store.set_variable(name, value)
            for tmp, final in staged:
                os.replace(tmp, final)
        except BaseException:
            for tmp, _ in staged:
                if tmp.exists() or tmp.is_symlink():
                    tmp.unlink()
            for name, old in previous.items():
                if old is None:
                    self.store.delete_variable(name)
                else:
                    self.store.set_variable(name, old)
            for folder in reversed(created):
                with _quiet():
                    folder.rmdir()
            raise
        for item, decision in work.files:
            if decision.verb != "kept":
                self.manifest.files[decision.item] = digest(item.content())
        for name, value, decision in work.variables:
            if decision.verb != "kept":
                self.manifest.variables[name] = digest(value)
        for uuid, rel in work.plan.job_files.items():
            self.manifest.jobs[uuid] = f"{work.plan.folder}/{rel}"
        return len(files) + len(variables)

    @staticmethod
    def _mkdirs(folder: Path, created: list[Path]) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir()
            created.append(path)

    @staticmethod
    def _stage(item: FileItem, final: Path) -> Path:
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".orchest-import-")
        tmp = Path(tmp_name)
        if item.link is not None:
            os.close(fd)
            tmp.unlink()
            os.symlink(item.link, tmp)
            return tmp
        with os.fdopen(fd, "wb") as out:
            if item.source is not None:
                with open(item.source, "rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                out.write(item.data or b"")
        os.chmod(tmp, 0o755 if item.executable else 0o644)
        if item.source is not None:
            shutil.copystat(item.source, tmp)
        return tmp

    # -- installation-wide: webhooks and the parallelism setting ----------------------
    def global_work(self) -> dict[str, Any]:
        work: dict[str, Any] = {"connections": [], "webhooks": None, "settings": []}
        for conn_id, spec in self.plan.connections.items():
            current = self.store.connection(conn_id)
            decision = _decide(f"Connection {conn_id}", spec.canonical(), current,
                               self.manifest.connections.get(conn_id))
            work["connections"].append((spec, current, decision))
            self._row("-", f"Connection {conn_id}", decision.verb,
                      f"{_shown_url(spec.host)}; {len(spec.extra['subscriptions'])} "
                      "subscription(s)")
            if decision.verb == "kept":
                self.kept.append(f"{decision.item}: {decision.why}")
        if self.plan.webhook_ids:
            raw = self.store.variable(WEBHOOKS_VARIABLE)
            try:
                listed = json.loads(raw) if raw else []
                if not isinstance(listed, list):
                    raise ValueError
            except ValueError:
                self.problems.append(f"Airflow Variable {WEBHOOKS_VARIABLE} is not a JSON "
                                     "list of conn ids; fix or delete it")
                self.plan.problems.append("webhooks Variable")
                listed = []
            wanted = [*listed, *[c for c in self.plan.webhook_ids if c not in listed]]
            verb = "unchanged" if wanted == listed else ("create" if raw is None
                                                         else "update")
            work["webhooks"] = (raw, json.dumps(wanted), verb)
            self._row("-", f"Variable {WEBHOOKS_VARIABLE}", verb, ", ".join(wanted))
        for key, value in self.plan.settings.items():
            current = self.store.setting(key)
            from_env = self.store.setting_from_environment(key)
            recorded = self.manifest.settings.get(key)
            if current == value:
                verb, detail = "unchanged", ""
            elif from_env is not None:
                verb = "kept"
                detail = (f"AIRFLOW__ORCHEST_JOBS__{key.upper()}={from_env} is set in the "
                          f"environment; set it to {value} for Orchest's behaviour")
            elif current not in (None, "", "0") and recorded != digest(current):
                verb = "kept"
                detail = f"set to {current} by hand; set it to {value} for Orchest's behaviour"
            else:
                verb, detail = "update", (f"in {self.store.config_file()}; restart Airflow's "
                                          "components to apply it")
            work["settings"].append((key, value, verb))
            self._row("-", f"setting [orchest_jobs] {key} = {value}", verb, detail)
            if verb == "kept":
                self.kept.append(f"setting {key}: {detail}")
        return work

    def apply_global(self, work: dict[str, Any]) -> int:
        written = 0
        done: list[Callable[[], None]] = []
        try:
            for spec, current, decision in work["connections"]:
                if decision.verb in ("create", "update"):
                    self.store.set_connection(spec)
                    done.append(self._undo_connection(spec.conn_id, current))
                    written += 1
            if work["webhooks"] and work["webhooks"][2] != "unchanged":
                raw, value, _ = work["webhooks"]
                self.store.set_variable(WEBHOOKS_VARIABLE, value)
                done.append(self._undo_variable(WEBHOOKS_VARIABLE, raw))
                written += 1
        except BaseException:
            for undo in reversed(done):
                undo()
            raise
        for spec, _, decision in work["connections"]:
            if decision.verb != "kept":
                self.manifest.connections[spec.conn_id] = digest(spec.canonical())
        for key, value, verb in work["settings"]:
            if verb == "update":
                self.store.set_setting(key, value)
                written += 1
            if verb != "kept":
                self.manifest.settings[key] = digest(value)
        return written

    def _undo_connection(self, conn_id: str, old: str | None) -> Callable[[], None]:
        return lambda: self.store.restore_connection(conn_id, old)

    def _undo_variable(self, name: str, old: str | None) -> Callable[[], None]:
        def undo() -> None:
            if old is None:
                self.store.delete_variable(name)
            else:
                self.store.set_variable(name, old)
        return undo

    def save_manifest(self) -> None:
        text = self.manifest.files_text()
        path = self.projects_dir / ".orchest-import.json"
        if not path.is_file() or path.read_text() != text:
            self.manifest.save_files(self.projects_dir)
        value = self.manifest.variable_text()
        if self.store.variable(MANIFEST_VARIABLE) != value:
            self.store.set_variable(MANIFEST_VARIABLE, value)


def _shown_url(url: str) -> str:
    """Scheme and host only: a webhook URL's path often is its secret (Slack, Discord)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}/..." if parts.scheme else "(no URL)"


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]
