"""A job's state: what it froze at creation, and how each of its job runs ended.

What a job froze (its snapshot and pinned images) is a small JSON file per job in
``store_dir``, written atomically under an exclusive file lock, so it survives restarts
and several workers sharing the store agree on one snapshot.

How a job run ends is Orchest's rule, decided here by pure functions (``finalize``, the
views and the notifications call the same ones): a pipeline run ends ``success``,
``failed`` or ``cancelled``; a job run ends ``success`` when every pipeline run ended and
none failed (a cancelled pipeline run does not fail it), ``failed`` when one failed (or a
task outside the runs did not succeed), and ``cancelled`` when the user cancelled it.
A cancel is recorded durably in the job run's folder (:func:`record_cancel`) by whoever
sees it happen (the views' actions, the listener of Airflow's "mark failed"), before its
tasks are stopped, so ``finalize`` on any worker reads the same answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import OrchestError
from .flock import locked
from .layout import StoreLayout
from .naming import position_of
from .snapshot.fsops import write_atomically


@dataclass(frozen=True)
class FrozenJob:
    job_key: str
    snapshot_id: str
    #: Image key (environment uuid or ``image:<ref>``) -> immutable reference.
    images: dict[str, str]
    #: Pipeline file inside the project (posix), for loading the frozen definition.
    pipeline: str
    created_at: str
    extra: dict[str, Any] = field(default_factory=dict)




class JobStates:
    """Frozen jobs under ``<store_dir>/jobs``."""

    def __init__(self, store_dir: Path):
        self.layout = StoreLayout(Path(store_dir))
        self.root = self.layout.jobs

    def _path(self, job_key: str) -> Path:
        return self.layout.job_state(job_key)

    def get(self, job_key: str) -> FrozenJob | None:
        path = self._path(job_key)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise OrchestError.single(path, "", f"job state cannot be read ({exc}); delete the "
                                      "file to let the job freeze a new snapshot") from None
        return FrozenJob(**data)

    @contextmanager
    def locked(self, job_key: str) -> Iterator[None]:
        def unwritable(exc: OSError) -> OrchestError:
            return OrchestError.single(
                self.root, "", f"store folder is not writable ({exc.strerror}); check "
                "[orchest_jobs] store_dir and its free space")

        with locked(self._path(job_key).with_suffix(".lock"), on_error=unwritable):
            yield

    def get_or_create(self, job_key: str, create: Callable[[], FrozenJob]
                      ) -> tuple[FrozenJob, bool]:
        """The job's frozen state, creating it once (under the lock) when absent."""
        with self.locked(job_key):
            existing = self.get(job_key)
            if existing is not None:
                return existing, False
            state = create()
            self.put(state)
            return state, True

    def put(self, state: FrozenJob) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = json.dumps(asdict(state), indent=2).encode()
        write_atomically(self._path(state.job_key), data, self.root, durable=True)

    def delete(self, job_key: str) -> None:
        self._path(job_key).unlink(missing_ok=True)

    def all(self) -> list[FrozenJob]:
        states = []
        for path in sorted(self.root.glob("*.json")):
            try:
                states.append(FrozenJob(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return states


# --- How a job run ended -------------------------------------------------------------

SUCCESS, FAILED, CANCELLED = "success", "failed", "cancelled"
#: The end states of a pipeline run and of a job run (Orchest's SUCCESS, FAILURE, ABORTED).
OUTCOMES = (SUCCESS, FAILED, CANCELLED)
#: The folder of cancel records inside a job run's folder (``runs/<dag>/<run>``): out of
#: every step's mounts (a step sees only its run's ``project`` copy), so no step can
#: forge one to turn its failure into a cancel.
CANCELS_DIR = "cancels"
JOB_RUN_CANCEL = "job-run.json"
#: Task states that keep a task from counting as a success, and how a verdict names them.
NOT_SUCCESS = {"failed": "failed", "upstream_failed": "not started (upstream failed)",
               "skipped": "skipped"}
_FAILED_STATES = ("failed", "upstream_failed")


@dataclass(frozen=True)
class CancelRecord:
    """Who cancelled a job run (``position`` None) or one of its pipeline runs, and when."""

    #: ISO 8601, UTC.
    at: str
    by: str
    #: How: ``pipeline-run view``, ``Airflow (marked failed)``.
    via: str
    #: The pipeline run's place in the run index (None: the whole job run).
    position: int | None = None
    #: The pipeline run's grid index (None: the whole job run).
    index: int | None = None
    #: A job-run cancel: positions of the pipeline runs that had failed before it (they
    #: stay ``failed``; the others it stopped are ``cancelled``).
    failed_before: tuple[int, ...] = ()
    #: The DAG run's ``clear_number`` when it was cancelled: a record older than the
    #: DAG run's last clear is stale (the user ran it again).
    clear_number: int = 0

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.at)

    @classmethod
    def now(cls, by: str, via: str, **fields: Any) -> CancelRecord:
        return cls(at=datetime.now(timezone.utc).isoformat(), by=by, via=via, **fields)

    def describe(self) -> str:
        what = "this job run" if self.position is None else f"pipeline run {self.index}"
        return f"{what} was cancelled by {self.by} at {self.at} ({self.via})"


@dataclass(frozen=True)
class Cancels:
    """The cancels of one job run, as recorded in its folder."""

    job_run: CancelRecord | None = None
    #: Pipeline-run cancels by position.
    runs: Mapping[int, CancelRecord] = field(default_factory=dict)


def cancel_record_path(run_root: str | Path, position: int | None = None) -> Path:
    name = JOB_RUN_CANCEL if position is None else f"run-{int(position):05d}.json"
    return Path(run_root) / CANCELS_DIR / name


def record_cancel(run_root: str | Path, record: CancelRecord) -> None:
    """Write a cancel record (atomically, durably); the first record of a run is kept."""
    path = cancel_record_path(run_root, record.position)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(record)
    data["failed_before"] = list(record.failed_before)
    write_atomically(path, json.dumps(data).encode(), path.parent, durable=True)


def forget_cancels(run_root: str | Path, positions: Iterable[int] = (),
                   job_run: bool = False) -> None:
    """Drop the records of pipeline runs (and of the job run) that run again."""
    for position in positions:
        cancel_record_path(run_root, position).unlink(missing_ok=True)
    if job_run:
        cancel_record_path(run_root).unlink(missing_ok=True)


def _read_record(path: Path) -> CancelRecord | None:
    try:
        data = json.loads(path.read_text())
        data["failed_before"] = tuple(int(p) for p in data.get("failed_before") or ())
        record = CancelRecord(**data)
        record.time  # noqa: B018 - a record with an unreadable time is no record
        return record
    except (OSError, ValueError, TypeError):
        return None


def cancel_record(run_root: str | Path, position: int | None = None) -> CancelRecord | None:
    """The cancel record of one pipeline run (or of the job run), if any."""
    return _read_record(cancel_record_path(run_root, position))


def read_cancels(run_root: str | Path, clear_number: int | None = None) -> Cancels:
    """Every cancel recorded for a job run (none when its folder does not exist).

    With ``clear_number`` (the DAG run's), the job-run record of a job run cleared since
    is left out: it runs again. (A pipeline run's record is dropped when the run itself
    runs again, see :func:`forget_cancels`.)
    """
    folder = Path(run_root) / CANCELS_DIR
    runs: dict[int, CancelRecord] = {}
    job_run = None
    with suppress(OSError):
        for path in folder.iterdir():
            if not path.name.endswith(".json") or path.name.startswith("."):
                continue
            record = _read_record(path)
            if record is None:
                continue
            if path.name == JOB_RUN_CANCEL:
                if clear_number is None or record.clear_number >= clear_number:
                    job_run = record
            elif record.position is not None:
                runs[record.position] = record
    return Cancels(job_run=job_run, runs=runs)


def pipeline_run_outcome(task_states: Iterable[str | None], *, cancelled: bool = False,
                         failed_before_cancel: bool = False) -> str:
    """How a finished pipeline run ended, from its tasks (``prepare`` and steps).

    ``cancelled``: a cancel of this run, or of its job run, was recorded (a run whose
    tasks all succeeded ended before it could stop it); ``failed_before_cancel``: it had
    failed before that cancel (then it stays failed). A
    skipped task without a failed one is a run stopped from outside (a job-run cancel, or
    ``stop_on_first_failure``): ``cancelled``, as Orchest reported aborted runs.
    """
    states = [str(s) for s in task_states]
    if all(s == "success" for s in states):
        return SUCCESS  # it ended before the cancel could stop it
    if cancelled and not failed_before_cancel:
        return CANCELLED
    if any(s in _FAILED_STATES for s in states):
        return FAILED
    if any(s == "skipped" for s in states):
        return CANCELLED
    return SUCCESS


@dataclass(frozen=True)
class JobRunVerdict:
    """A job run's outcome, each pipeline run's, and why it did not succeed."""

    outcome: str
    #: Pipeline run outcomes by position (the runs that have task instances).
    runs: Mapping[int, str]
    #: Why the job run did not succeed (None when it did), for the ``finalize`` log.
    message: str | None = None


def job_run_verdict(states: Mapping[str, Any], task_ids: Iterable[str],
                    ignored: Iterable[str], *, max_map_length: int,
                    cancels: Cancels = Cancels()) -> JobRunVerdict:
    """The job run's outcome from its task states and its cancel records.

    ``states``: ``{task_id or task_id_mapindex: state}`` (Airflow's task-states answer);
    ``task_ids``: the DAG's task ids; ``ignored``: the teardowns (their own outcome never
    decides, as in Airflow). Tasks outside the pipeline runs (``snapshot``, ``plan``)
    that did not succeed fail the job run; so does a failed pipeline run; a cancelled
    one does not; a cancelled job run is ``cancelled`` whatever its runs did.
    """
    known, skip = set(task_ids), set(ignored)
    per_run: dict[int, list[str]] = {}
    outside: dict[str, list[str]] = {}
    keys_of_run: dict[int, dict[str, list[str]]] = {}
    for key, state in states.items():
        task_id, _, index = key.rpartition("_")
        if key in known or not index.isdigit() or task_id not in known:
            task_id, index = key, ""
        if task_id in skip:
            continue
        text = str(state)
        found = position_of(task_id, int(index), max_map_length) if index else None
        if found is None:
            if text in NOT_SUCCESS:
                outside.setdefault(text, []).append(f"{task_id}[{index}]" if index else task_id)
            continue
        position = found[0]
        per_run.setdefault(position, []).append(text)
        if text in NOT_SUCCESS:
            keys_of_run.setdefault(position, {}).setdefault(text, []).append(
                f"{task_id}[{index}]")
    job_cancel = cancels.job_run
    failed_before = set(job_cancel.failed_before) if job_cancel else set()
    runs = {position: pipeline_run_outcome(
        found, cancelled=position in cancels.runs or job_cancel is not None,
        failed_before_cancel=position in failed_before)
        for position, found in per_run.items()}
    if job_cancel is not None:
        return JobRunVerdict(CANCELLED, runs, "This job run did not succeed: "
                             + job_cancel.describe() + ".")
    # A failed run fails the job run; so does a run stopped without a cancel record of its
    # own (skipped tasks: the DAG run marked failed with no record, or a failed run's
    # stop_on_first_failure, which failed it already).
    counted = [p for p, outcome in runs.items()
               if outcome == FAILED or (outcome == CANCELLED and p not in cancels.runs)]
    not_success: dict[str, list[str]] = {k: list(v) for k, v in outside.items()}
    for position in counted:
        for state, keys in keys_of_run.get(position, {}).items():
            not_success.setdefault(state, []).extend(keys)
    if not not_success:
        return JobRunVerdict(SUCCESS, runs)
    parts = []
    for state, keys in not_success.items():
        shown = ", ".join(sorted(keys)[:5]) + (", ..." if len(keys) > 5 else "")
        parts.append(f"{len(keys)} task(s) {NOT_SUCCESS[state]} ({shown})")
    hint = (" Skipped tasks: the job run was cancelled (marked failed) before they ran, or "
            "fail-fast or stop_on_first_failure stopped them." if "skipped" in not_success
            else "")
    if cancels.runs:
        hint += (f" {len(cancels.runs)} pipeline run(s) cancelled in the pipeline-run view "
                 "do not count.")
    outcome = FAILED if any(runs[p] == FAILED for p in counted) or outside else CANCELLED
    return JobRunVerdict(outcome, runs, "This job run did not succeed: " + "; ".join(parts)
                         + "." + hint)


def job_run_outcome(dag_run_state: str | None, cancelled: bool) -> str | None:
    """What the views show for a job run: Airflow's DAG run state, except ``cancelled``
    for one the user cancelled (``cancelled``: a job-run cancel record, or Airflow's log
    of it being marked failed while unfinished), which is never ``success``."""
    if cancelled and dag_run_state in ("running", "failed", "success"):
        return CANCELLED
    return None if dag_run_state is None else str(dag_run_state)
