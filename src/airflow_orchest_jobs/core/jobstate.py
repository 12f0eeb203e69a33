"""What a job froze at creation: its snapshot and pinned images, kept in ``store_dir``.

The state is a small JSON file per job, written atomically under an exclusive file lock,
so it survives restarts and several workers sharing the store agree on one snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import OrchestError
from .flock import locked
from .layout import StoreLayout
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
