"""One Orchest pipeline step as a Docker container (the docker provider's DockerOperator).

The operator is created at DAG-parse time inside a mapped task group, so what differs
per pipeline run arrives at run time in two templated fields: ``run`` (the mapped
:class:`~airflow_orchest_jobs.core.rundesc.RunKey`) and ``job_run`` (the shared
:class:`~airflow_orchest_jobs.core.rundesc.JobRun`, the ``snapshot`` task's XCom). A
hand-built DAG may instead give ``run`` whole (the flat form of
:func:`~airflow_orchest_jobs.core.rundesc.describe`). ``execute`` turns the description
into the run contract (:mod:`airflow_orchest_jobs.core.contract`): the run's project copy
at /project-dir, /data, the runner mounted read-only, Orchest's variables, the job's
pinned image. A first step of a run without a ``prepare`` task makes the run's project
copy itself (``checkout_peers``), once, under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator

from ..config import load_settings
from ..core.contract import (
    DATA_DIR,
    DEFINITION_PATH,
    ORCHEST_NAMES,
    PROJECT_DIR,
    RUNNER_DIR,
    RUNNER_IMAGE_VARIABLE,
    stage_runner,
    step_command,
    step_environment,
    step_log_path,
    step_working_dir,
)
from ..core.failfast import (
    FailedRun,
    FailedStep,
    clear_failure,
    failed_run,
    failed_step,
    mark_failed,
    mark_run_failed,
)
from ..core.flock import locked
from ..core.labels import LABEL_JOB, LABEL_PIPELINE, LABEL_PROJECT, LABEL_RUN, LABEL_STEP
from ..core.plan import run_started_at
from ..core.rundesc import RunDescription, describe
from ..core.schedule import format_duration
from ..core.services import holder_name
from ..core.settings import step_owner
from ..engine.hosts import claim_engine
from ..engine.images import describe_key, image_key, unreachable_message
from ..engine.registry import missing_image_message
from .context import name_map_index
from .errors import user_error
from .links import NotebookHtmlLink
from .variables import run_variables

if TYPE_CHECKING:
    from airflow.sdk import Context
    from docker.types import Mount

    from ..core.model import Pipeline, Step

#: The names of the step's secret variables, for the notebook runner (not the values).
SECRET_NAMES_VARIABLE = "ORCHEST_JOBS_SECRET_NAMES"
#: Seconds a step stopped by fail-fast gets after SIGTERM before the engine kills it.
STOP_TIMEOUT = 5
#: The same for a killed task (a cancel): well inside Airflow's 5 s between the task
#: process's SIGTERM and its SIGKILL, so the container is removed before that.
ON_KILL_STOP_TIMEOUT = 2
#: Seconds between two looks at the run's fail-fast marker while a step runs.
WATCH_INTERVAL = 0.5
#: Keys a mapped run key needs; a run given whole needs these too.
RUN_KEYS = ("index", "label", "run_uuid")
FLAT_RUN_KEYS = ("index", "label", "run_uuid", "run_dir", "images")


class OrchestStepOperator(DockerOperator):
    """Run one step of one pipeline run in its environment's (pinned) image."""

    template_fields: Sequence[str] = ("run", "job_run")
    # DockerOperator reads templated strings ending in .sh as template files: not here.
    template_ext: Sequence[str] = ()
    ui_color = "#e6f0ff"
    operator_extra_links = (NotebookHtmlLink(),)
    # Narrower than DockerOperator's: this operator takes one URL (never a list), and
    # ``_configure`` sets the others before anything reads them.
    docker_url: str
    command: list[str]
    user: str
    labels: dict[str, str]

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        step: Step,
        project_uuid: str,
        run: Any,
        data_dir: str,
        job_run: Any = None,
        checkout_peers: Sequence[str] | None = None,
        network_mode: str = "bridge",
        docker_url: str | None = None,
        max_steps_parallelism: int | None = None,
        step_user: str = "",
        fail_fast: bool = True,
        joins_run_namespace: bool = False,
        step_retries: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("auto_remove", "force")
        kwargs.setdefault("do_xcom_push", False)
        super().__init__(
            image=kwargs.pop("image", ""),  # the run's pinned image, set in execute
            network_mode=network_mode,
            docker_url=docker_url,
            mount_tmp_dir=False,
            tty=False,
            **kwargs,
        )
        self.pipeline = pipeline
        self.step = step
        self.project_uuid = project_uuid
        self.run = run
        self.job_run = job_run
        #: Set on a run's first steps when no task makes the run's copy before them: the
        #: task ids of all of them (whichever starts first makes it).
        self.checkout_peers = list(checkout_peers) if checkout_peers is not None else None
        self.data_dir = data_dir
        self.max_steps_parallelism = max_steps_parallelism
        self.step_user = step_user
        self.fail_fast = fail_fast
        #: The run has services: join its holder's network namespace (see operators.run).
        self.joins_run_namespace = joins_run_namespace
        self.image_key = image_key(step)
        #: Tries again of the step's own failure (``step_retries``); Airflow's ``retries``
        #: (at least this many) also covers infrastructure failures (a lost worker).
        self.step_retries = step_retries
        self._killed = False

    def execute(self, context: Context) -> Any:
        run = _describe(self.run, self.job_run)
        name_map_index(context, run.label)
        self._dag_run = context.get("dag_run")  # on_kill tells the webhooks (no context)
        self.container = None  # type: ignore[assignment]
        self._aborted_by: FailedStep | None = None
        self._stopped_by: FailedRun | None = None
        self._timed_out = False
        self._run_desc = run
        self._generation = int(getattr(context.get("dag_run"), "clear_number", 0) or 0)
        run_dir = str(run.run_dir)
        if self.checkout_peers is not None:
            self._check_out(run, context)
        self._deadline = _deadline(run)
        if self.fail_fast:
            self._skip_if_run_failed(run_dir, context)
        self._skip_if_job_run_stopped(run)
        if self._deadline is not None and time.time() >= self._deadline:
            self._timed_out = True
            self._raise_if_stopped(context)
        self._configure(run)
        self.log.info("Step %r (%s), run %s: %s in %s", self.step.title, self.step.uuid,
                      run.label, self.command[-1], self.image)
        self._connect()
        self.labels.update(claim_engine(self.cli, self.docker_url, run.run_dir, run.run_uuid,
                                        self.step.uuid, context.get("ti"), self.log))
        with _step_slot(run_dir, self.max_steps_parallelism, self.log), \
                self._watching_for_failure(run_dir):
            try:
                return self._run_step(context)
            except DockerContainerFailedException as exc:
                self._raise_if_stopped(context)
                message = self._failure(run, exc)
                if self._retried(context):
                    message += f"; it is tried again ({self._tries(context)}, step_retries)"
                    self.log.warning("%s", message)
                    raise DockerContainerFailedException(message, logs=exc.logs) from None
                self._record_failure(run_dir, context)
                if (self.retries or 0) > self.step_retries:  # no deployment retry of user code
                    from airflow.sdk.exceptions import AirflowFailException

                    raise AirflowFailException(message) from None
                raise DockerContainerFailedException(message, logs=exc.logs) from None
            except Exception:
                self._raise_if_stopped(context)
                self._record_failure(run_dir, context)
                raise
            finally:
                self._remove_container(stop=False)

    def _tries(self, context: Context) -> str:
        ti = context["ti"]
        return f"try {ti.try_number} of {self.step_retries + 1}"

    def _retried(self, context: Context) -> bool:
        """Whether this failure of the step's own code gets another try (``step_retries``)."""
        ti = context.get("ti")
        return bool(self.step_retries) and ti is not None and \
            int(ti.try_number or 1) <= self.step_retries

    def _skip_if_job_run_stopped(self, run: RunDescription) -> None:
        """``stop_on_first_failure``: no step starts once a pipeline run of the job run failed."""
        if not run.job.stop_on_first_failure:
            return
        failed = failed_run(run.job.run_root, self._generation)
        if failed is not None and failed.index != run.key.index:
            raise _skip(f"Not started: {failed.describe()}, and the job stops at its first "
                        "failed pipeline run (stop_on_first_failure)")

    def _raise_if_stopped(self, context: Context) -> None:
        """The step was stopped from outside its container: say why, as the right state."""
        if self._timed_out:
            run = self._run_desc
            limit = format_duration(run.job.pipeline_run_timeout or 0)
            message = (f"Stopped: pipeline run {run.label} passed its time limit of {limit} "
                       f"(pipeline_run_timeout); step {self.step.title!r} did not finish")
            self.log.error("%s", message)
            self._record_failure(str(run.run_dir), context)
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(message)
        if self._stopped_by is not None:
            raise _skip(f"Stopped: {self._stopped_by.describe()}, and the job stops at its "
                        "first failed pipeline run (stop_on_first_failure)")
        self._abort_if_stopped()

    def _check_out(self, run: RunDescription, context: Context) -> None:
        from .run import check_out

        check_out(load_settings(), run, step_owner(self.step_user, os.geteuid(), os.getegid()),
                  context["dag_run"], context["ti"], peers=self.checkout_peers or [])

    def _skip_if_run_failed(self, run_dir: str, context: Context) -> None:
        """Fail-fast: a step of a run that already failed never starts.

        A marker left by this very step is its own earlier try (a retry or a clear):
        removed. One whose failing task has since been cleared is stale: removed too.
        """
        failed = failed_step(run_dir)
        if failed is None:
            return
        if failed.step_uuid != self.step.uuid and _still_failed(context, failed):
            raise _skip(f"Not started: {failed.describe()} of this pipeline run failed "
                        "(fail-fast; set \"fail_fast\": false in the job file to keep "
                        "independent steps running)")
        clear_failure(run_dir)

    @contextlib.contextmanager
    def _watching_for_failure(self, run_dir: str | None) -> Iterator[None]:
        """While the container runs, stop it as soon as another step of the run fails
        (fail-fast), another pipeline run of the job run fails (``stop_on_first_failure``)
        or the run passes its time limit (``pipeline_run_timeout``)."""
        run = self._run_desc
        stop_job = run.job.stop_on_first_failure
        if not ((self.fail_fast and run_dir) or stop_job or self._deadline is not None):
            yield
            return
        done = threading.Event()

        def why() -> str | None:
            if self.fail_fast and run_dir:
                failed = failed_step(run_dir)
                if failed is not None and failed.step_uuid != self.step.uuid:
                    self._aborted_by = failed
                    return f"{failed.describe()} of this pipeline run failed (fail-fast)"
            if stop_job:
                other = failed_run(run.job.run_root, self._generation)
                if other is not None and other.index != run.key.index:
                    self._stopped_by = other
                    return f"{other.describe()} (stop_on_first_failure)"
            if self._deadline is not None and time.time() >= self._deadline:
                self._timed_out = True
                return "this pipeline run passed its time limit (pipeline_run_timeout)"
            return None

        def watch() -> None:
            while not done.wait(WATCH_INTERVAL):
                reason = why()
                if reason is None:
                    continue
                while not done.is_set() and not self.container:
                    done.wait(0.1)  # the container is being created: stop it once it is
                self.log.info("Stopping: %s", reason)
                self._remove_container(stop=True)
                return

        watcher = threading.Thread(target=watch, name="orchest-fail-fast", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join(timeout=STOP_TIMEOUT + 5)
        if self._stopped_by is not None or self._timed_out:
            return  # execute's handlers raise with the reason (the container failed)
        self._abort_if_stopped()

    def _abort_if_stopped(self) -> None:
        if self._aborted_by is not None:
            raise _skip(f"Stopped: {self._aborted_by.describe()} of this pipeline run failed "
                        "(fail-fast)")

    def _record_failure(self, run_dir: str | None, context: Context) -> None:
        """The run failed here: stop its other steps (fail-fast) and, with
        ``stop_on_first_failure``, the other pipeline runs (never for a killed task: a
        cancel is no failure)."""
        if self._killed:
            return
        run = self._run_desc
        if run.job.stop_on_first_failure and mark_run_failed(run.job.run_root, FailedRun(
                run.key.index, run.label, self.step.title, self._generation)):
            self.log.info("stop_on_first_failure: stopping the job run's other pipeline runs")
        if not (self.fail_fast and run_dir):
            return
        self._notify_failure(context)
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1  # -1: not mapped
        if mark_failed(run_dir, FailedStep(self.step.uuid, self.step.title, ti.task_id,
                                           map_index)):
            self.log.info("Fail-fast: stopping the other steps of this pipeline run")

    def _notify_failure(self, context: Context) -> None:
        """Webhooks: with fail-fast, a step's last try failing decides its run (the
        outbox only; a cancelled step's failure is not one)."""
        ti = context["ti"]
        if self._killed or int(getattr(ti, "try_number", 1) or 1) <= int(self.retries or 0):
            return
        from .notify import step_failed

        step_failed(load_settings().store_dir, _describe(self.run, self.job_run),
                    self.step.uuid, context["dag_run"])

    def _failure(self, run: RunDescription, exc: Exception) -> str:
        """Which step failed, how, and where its output is kept."""
        found = re.search(r"'StatusCode': (-?\d+)", str(exc))
        code = int(found.group(1)) if found else None
        log_file = run.project_dir / step_log_path(self.pipeline.uuid, self.step.uuid)
        how = f"exited with code {code}" if code is not None else str(exc)
        if code == 127:
            how += " (a program it needs is missing from the image, see above)"
        return (f"Step {self.step.title!r} ({self.step.uuid}) of run {run.label} {how}; "
                f"its output is above and in {log_file}")

    def on_kill(self) -> None:
        """Stop and remove the step's container at once (a killed task leaves nothing).

        Airflow kills the task process ``KILL_GRACE`` seconds after its SIGTERM, so the
        step gets a shorter grace (``ON_KILL_STOP_TIMEOUT``) before the engine kills it,
        then the container is removed; one still being created is removed by
        ``_run_container``; the job run's ``finalize`` sweeps whatever is left.
        """
        self._killed = True
        self._remove_container(stop=True, timeout=ON_KILL_STOP_TIMEOUT)
        self._notify_killed()

    def _notify_killed(self) -> None:
        """Webhooks: this run was stopped by a cancel, whatever its tasks end as."""
        dag_run = getattr(self, "_dag_run", None)
        if dag_run is not None:
            from .notify import step_killed

            step_killed(load_settings().store_dir, _describe(self.run, self.job_run), dag_run)

    def _configure(self, run: RunDescription) -> None:
        """The run contract as DockerOperator settings."""
        from docker.types import Mount

        self._limits = load_settings()
        image = run.images.get(self.image_key)
        if not image:
            raise user_error(f"this run has no image for {describe_key(self.image_key)} "
                             f"(the job froze {sorted(run.images)}); re-create the job so it "
                             "freezes one")
        self.image = image
        if self.joins_run_namespace:
            self.network_mode = f"container:{holder_name(run.run_uuid)}"
        plain, private = run_variables(run)
        env = step_environment(plain, pipeline=self.pipeline, step=self.step,
                               project_uuid=self.project_uuid, run_uuid=run.run_uuid)
        env[RUNNER_IMAGE_VARIABLE] = f"{describe_key(self.image_key)} ({image})"
        uid, gid = step_owner(self.step_user, os.geteuid(), os.getegid())
        self.user = f"{uid}:{gid}"  # never root unless step_user says 0:0
        if uid != 0:
            env.setdefault("HOME", "/tmp")  # a writable home (tmpfs) for any uid
        self.environment = env
        for name in ORCHEST_NAMES:  # Orchest's own names win over user ones
            private.pop(name, None)
        self._private_environment = {**self._private_environment, **private}
        #: Kept out of the step's log file (its output is redacted on the worker) and,
        #: by name, out of an executed notebook's outputs (runtime/notebook.py).
        self._secret_values = [value for value in private.values() if value]
        env[SECRET_NAMES_VARIABLE] = ",".join(sorted(name for name, value in private.items()
                                                     if value))
        self.command = step_command(self.pipeline, self.step)
        self.working_dir = step_working_dir(self.pipeline, self.step)
        runner = stage_runner(run.run_dir / "runner")
        ensure_data_dir(Path(self.data_dir), (uid, gid))
        definition = [Mount(DEFINITION_PATH, str(run.definition), type="bind",
                            read_only=True)] if run.definition.is_file() else []
        self._step_mounts: list[Mount] = [
            *definition,
            Mount(PROJECT_DIR, str(run.project_dir), type="bind"),
            Mount(DATA_DIR, str(self.data_dir), type="bind"),
            Mount(RUNNER_DIR, str(runner), type="bind", read_only=True),
            Mount("/tmp", None, type="tmpfs", tmpfs_size=self._limits.step_tmp_size or None),
        ]
        self.mounts = list(self._step_mounts)
        self.labels = {LABEL_RUN: run.run_uuid, LABEL_STEP: self.step.uuid,
                       LABEL_PIPELINE: self.pipeline.uuid, LABEL_PROJECT: self.project_uuid,
                       LABEL_JOB: run.job.job_run_key}
        self._project_dir = run.project_dir
        self._log_relative = step_log_path(self.pipeline.uuid, self.step.uuid)

    def _connect(self) -> None:
        """Reach the engine now, with a message naming the URL (Airflow retries apply)."""
        from airflow.sdk.exceptions import AirflowException

        try:
            self.cli  # noqa: B018 - connects and pings
        except AirflowException as exc:
            raise AirflowException(unreachable_message(self.docker_url, exc)) from exc

    def _run_step(self, context: Context) -> Any:
        """Run the container; an image present locally is never pulled.

        An image id (``sha256:...``) never matches a pull; a registry digest is pulled
        first (docker-py's ``pull``), then run like a local one.
        """
        import docker.errors

        try:
            self.cli.inspect_image(self.image)
        except docker.errors.ImageNotFound:
            if self.image.startswith("sha256:"):
                raise user_error(missing_image_message(
                    self.image, describe_key(self.image_key), self.docker_url)) from None
            self.log.info("Pulling %s", self.image)
            self.cli.pull(self.image)
        self._run_container()

    def _run_container(self) -> None:
        """Create, start and follow the step's container (docker-py's API, with the limits
        of ``[orchest_jobs]``); its output goes to the task log and, redacted, to the
        step's log file in the run's project copy."""

        limits = self._limits
        host_config = self.cli.create_host_config(
            auto_remove=False, mounts=self._step_mounts, network_mode=self.network_mode,
            mem_limit=limits.step_memory_limit or None,
            memswap_limit=limits.step_memory_limit or None,
            pids_limit=limits.step_pids_limit or None)
        if self._killed:
            raise RuntimeError("Killed before the step's container was created")
        self.container = self.cli.create_container(
            image=self.image, command=self.command, user=self.user,
            environment={**self.environment, **self._private_environment},
            working_dir=self.working_dir, labels=self.labels, tty=False,
            host_config=host_config)
        if self._killed:  # on_kill ran while the container was being created
            self._remove_container(stop=False)
            raise RuntimeError("Killed while the step's container was being created")
        # stdout and stderr apart: each is redacted by whole lines of its own (the engine
        # may interleave a line of one inside a half-written line of the other).
        stream = self.cli.attach(container=self.container["Id"], stdout=True, stderr=True,
                                 stream=True, demux=True)
        tail: deque[str] = deque(maxlen=100)

        def show(lines: list[bytes]) -> None:
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r\n")
                self.log.info("%s", text)
                tail.append(text)

        from .steplog import step_log

        uid, gid = (int(part) for part in self.user.split(":"))
        with step_log(self._project_dir, self._log_relative, self._secret_values,
                      self.log, (uid, gid)) as (redactors, log_file):
            self.cli.start(self.container["Id"])
            for frame in stream:
                for redactor, chunk in zip(redactors, frame, strict=True):
                    if chunk:
                        lines = redactor.feed(chunk)
                        log_file.write(lines)
                        show(lines)
            for redactor in redactors:
                rest = redactor.finish()
                log_file.write(rest)
                show(rest)
        result = self.cli.wait(self.container["Id"])
        if result["StatusCode"] != 0:
            raise DockerContainerFailedException(f"Docker container failed: {result!r}",
                                                 logs=list(tail))

    def _remove_container(self, *, stop: bool, timeout: int = STOP_TIMEOUT) -> None:
        import docker.errors

        container = self.container
        if not container:
            return
        try:
            if stop:
                self.log.info("Stopping step container %s", container["Id"][:12])
                with contextlib.suppress(docker.errors.APIError):
                    self.cli.stop(container["Id"], timeout=timeout)
            self.cli.remove_container(container["Id"], force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                self.log.warning("Could not remove step container %s: %s",
                                 container["Id"][:12], exc)


def _describe(run: Any, job_run: Any) -> RunDescription:
    """The run this task is for (a plain failure, never a retry, when it is malformed)."""
    if not isinstance(run, Mapping) or (job_run is not None and not isinstance(job_run,
                                                                                 Mapping)):
        raise user_error(f"the run description must be a dict, got {type(run).__name__}")
    required = RUN_KEYS if job_run is not None else FLAT_RUN_KEYS
    missing = [key for key in required if key not in run]
    if missing:
        raise user_error(f"the run description lacks {', '.join(missing)}")
    return describe(run, job_run)


def _deadline(run: RunDescription) -> float | None:
    """When the run passes its time limit (epoch seconds), None without a limit."""
    limit = run.job.pipeline_run_timeout
    started = run_started_at(run.run_dir) if limit else None
    return started + float(limit) if started is not None and limit else None


def _still_failed(context: Context, failed: FailedStep) -> bool:
    """Whether the task that failed the run is still failed (not cleared since)."""
    ti = context["ti"]
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, map_index=failed.map_index,
                                    task_ids=[failed.task_id], run_ids=[ti.run_id])
    except Exception as exc:  # the API unreachable: trust the marker
        logging.getLogger(__name__).warning(
            "Cannot read the failed step's state (%s); trusting the marker", exc)
        return True
    state = states.get(ti.run_id, {}).get(f"{failed.task_id}_{failed.map_index}")
    return str(state) in ("failed", "running", "up_for_retry")


def _skip(message: str) -> Exception:
    """A step that did not run because its pipeline run failed elsewhere (not success)."""
    from airflow.sdk.exceptions import AirflowSkipException

    logging.getLogger(__name__).info(message)  # the reason, in the task log itself
    return AirflowSkipException(message)


@contextlib.contextmanager
def _step_slot(run_dir: str | None, limit: int | None, log: Any) -> Iterator[None]:
    """At most ``limit`` steps of one pipeline run at a time (Orchest's
    ``max_steps_parallelism``): one lock file per slot in the run folder."""
    if not limit or not run_dir:
        yield
        return
    folder = Path(run_dir) / "step-slots"
    waited = False
    while True:
        for slot in range(limit):
            with locked(folder / f"{slot}.lock", blocking=False) as held:
                if held:
                    yield
                    return
        if not waited:
            log.info("Waiting: %d step(s) of this run already running "
                     "(max_steps_parallelism)", limit)
            waited = True
        time.sleep(1)


def ensure_data_dir(path: Path, owner: tuple[int, int]) -> None:
    """Create ``/data``'s host folder (ours belongs to the step user); refuse one the step
    user cannot write, before a step fails half-way with "permission denied"."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and owner[0] != 0:
            os.chown(path, *owner)
    elif owner[0] != 0 and not writable_by(path, *owner):
        raise user_error(f"the data folder {path} (mounted at /data) is not writable by the "
                         f"step user {owner[0]}:{owner[1]}; give that user write access "
                         "(chown or chmod) or set [orchest_jobs] step_user")


def writable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid:gid`` may create files in ``path`` (mode bits; ACLs are not read)."""
    st = path.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & 0o200)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o020)
    return bool(st.st_mode & 0o002)
