"""Run a notebook step as Orchest's job runner did: execute it in place, keep an HTML copy.

Started by runner.sh inside the step container (``python3 notebook.py FILE``), with the
image's own Python: it uses only the standard library, nbformat, nbclient and nbconvert,
and keeps to syntax Python 3.6 understands.

What Orchest did, and this does too:

* the kernel follows the notebook's *language*, not its kernelspec name (Orchest's
  webserver renamed every kernelspec to ``orchest-kernel-<environment uuid>``, a kernel
  that existed only inside Orchest);
* cells tagged ``skip`` are not executed (nor ``skip-execution``, nbclient's own tag);
* the executed notebook is written back in place, with an HTML copy beside it (images
  embedded, so it renders when served alone); an HTML failure is only a warning.

Cell output is printed as it arrives so the task log shows progress. A failing cell
fails the step with its traceback; a kernel that is missing (exit 127), cannot start or
dies (exit 1) fails it with one line naming the kernel asked for and those the image has.
Nothing may hang a job: nbclient runs in a worker thread so that SIGTERM/SIGINT reach this
process's own handler (nbclient's would only start a clean-up), which kills the kernel's
process group (its own session: runner.sh's TERM misses it) and exits 143; every kernel
shutdown is bounded in time, and the process exits without interpreter teardown.
"""

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
import time

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MISSING = 127  # what a shell reports for a missing program (runner.sh does the same)
FAILED = 1
STOPPED = 128 + signal.SIGTERM  # what a shell reports for a step ended by SIGTERM
#: Seconds a kernel gets to be ready (a kernel that dies at start is noticed sooner).
STARTUP_TIMEOUT = 20
#: Seconds a kernel gets to exit by itself (shutdown request, SIGTERM) before SIGKILL.
GRACE = 1.0
#: Seconds the whole kernel shutdown may take before the kernel is killed regardless.
SHUTDOWN_LIMIT = 10
SKIP_TAGS = ("skip", "skip-execution")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: The kernel Orchest's job runner started for a notebook's language. Another installed
#: kernel of that language serves when this one is not in the image.
KERNEL_FOR_LANGUAGE = {
    "python": "python3",
    "r": "ir",
    "julia": "julia-1.7",
    "javascript": "javascript",
}
#: A notebook that names no language runs with its kernelspec's kernel, else this one.
DEFAULT_KERNEL = "python3"

#: What the signal handler needs: the kernel manager once it exists, the current cell.
STATE = {"km": None, "cell": None, "path": None}


def say(message):
    print("orchest-runner: " + message, file=sys.stderr, flush=True)


def image():
    return os.environ.get("ORCHEST_RUNNER_IMAGE") or "this image"


def plain(text):
    return ANSI.sub("", text)


def notebook_language(metadata):
    """The notebook's language, lower-cased: kernelspec first, then language_info."""
    spec = metadata.get("kernelspec") or {}
    info = metadata.get("language_info") or {}
    return str(spec.get("language") or info.get("name") or "").strip().lower()


def choose_kernel(metadata, installed):
    """The kernel to run a notebook with, or None when the image has none for its language.

    ``installed`` maps kernel names to their languages. As in Orchest the language
    decides: Orchest's kernel for it, else any kernel of that language (the notebook's
    own kernelspec name first). Without a language: the kernelspec name, then python3.
    """
    asked = (metadata.get("kernelspec") or {}).get("name") or ""
    language = notebook_language(metadata)
    if not language:
        candidates = [asked, DEFAULT_KERNEL]
    else:
        same = sorted(name for name, lang in installed.items()
                      if str(lang).strip().lower() == language)
        candidates = [KERNEL_FOR_LANGUAGE.get(language), asked if asked in same else None]
        candidates += [*same, asked]  # a kernel the notebook names exactly still serves
    for name in candidates:
        if name and name in installed:
            return name
    return None


def installed_kernels():
    """{kernel name: language} of the kernelspecs this image has."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        specs = KernelSpecManager().get_all_specs()
    except Exception:  # a broken kernelspec folder: as if there were none
        return {}
    return {name: (found.get("spec") or {}).get("language") or ""
            for name, found in specs.items()}


def describe_asked(metadata):
    spec = metadata.get("kernelspec") or {}
    return (f"kernelspec name '{spec.get('name') or ''}', "
            f"language '{notebook_language(metadata) or 'not set'}'")


def describe_installed(installed):
    if not installed:
        return "no Jupyter kernels"
    return ", ".join(f"{name} ({lang or 'no language'})"
                     for name, lang in sorted(installed.items()))


def output_text(output):
    """The readable text of one cell output (what a person would look for in a log)."""
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("text", "")
    if kind == "error":
        return plain("\n".join(output.get("traceback") or [])) + "\n"
    data = output.get("data") or {}
    text = data.get("text/plain")
    if text is None:
        return ""
    return (text if isinstance(text, str) else "".join(text)) + "\n"


def skip_tag(cell):
    tags = (cell.get("metadata") or {}).get("tags") or []
    for tag in SKIP_TAGS:
        if tag in tags:
            return tag
    return None


def client_class():
    """nbclient's NotebookClient: skips Orchest's tagged cells, logs outputs as they come."""
    from nbclient import NotebookClient

    class OrchestNotebookClient(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                     store_history=True):
            tag = skip_tag(cell) if cell.get("cell_type") == "code" else None
            if tag:
                # Not run in this job: no outputs (a stale one would pass for this run's).
                cell["outputs"] = []
                cell["execution_count"] = None
                print(f"orchest-runner: cell {cell_index + 1} skipped (tagged '{tag}')",
                      flush=True)
                return cell
            STATE["cell"] = cell_index + 1
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)

        def output(self, outs, msg, display_id, cell_index):
            # Each output to the log as it arrives, as Orchest did (a long cell shows
            # its progress).
            out = super().output(outs, msg, display_id, cell_index)
            text = output_text(out) if out is not None else ""
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
            return out

    return OrchestNotebookClient


def kernel_manager(kernel, runtime_dir):
    """An asynchronous manager for a local kernel, IPC sockets in the runtime folder.

    Asynchronous: with a blocking client nbclient waits for output in a blocking call
    and never notices a dead kernel. IPC, not TCP: no network needed, and the sockets go
    to the runtime folder, not to the working folder (the project copy).
    """
    from jupyter_client.manager import AsyncKernelManager

    return AsyncKernelManager(kernel_name=kernel, transport="ipc",
                              ip=os.path.join(runtime_dir, "kernel-ipc"),
                              shutdown_wait_time=2 * GRACE)


def kernel_process(km):
    """The kernel's Popen (jupyter_client 7+ keeps it in the provisioner), or None."""
    if km is None:
        return None
    provisioner = getattr(km, "provisioner", None)
    return getattr(provisioner, "process", None) or getattr(km, "kernel", None)


def wait_exit(process, seconds):
    deadline = time.monotonic() + seconds
    while process.poll() is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def signal_kernel(process, signum):
    """Signal the kernel's whole process group (it runs in a session of its own)."""
    try:
        os.killpg(os.getpgid(process.pid), signum)
    except OSError:
        with contextlib.suppress(OSError):
            process.send_signal(signum)


def kill_kernel(km):
    """End the kernel from any thread in bounded time: SIGTERM, GRACE seconds, SIGKILL."""
    process = kernel_process(km)
    if process is None or process.poll() is not None:
        return
    signal_kernel(process, signal.SIGTERM)
    if not wait_exit(process, GRACE):
        signal_kernel(process, signal.SIGKILL)
        wait_exit(process, GRACE)
    with contextlib.suppress(AttributeError, OSError, TypeError):
        os.remove(km.connection_file)


def on_stop_signal(signum, _frame):
    """SIGTERM/SIGINT (docker stop): kill the kernel whatever it is doing, exit 143."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)  # once is enough
    try:
        where = f" in cell {STATE['cell']}" if STATE["cell"] else ""
        with contextlib.suppress(Exception):  # e.g. a print this signal interrupted
            say(f"stopped by {signal.Signals(signum).name}{where} of {STATE['path']}; "
                "killing the kernel")
        kill_kernel(STATE["km"])
    finally:
        finish(STOPPED)


def finish(status):
    """Exit now: interpreter teardown (zmq contexts, stray threads) could block."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def execute(client, km):
    """Run the notebook in a worker thread; its outcome is None or the exception raised.

    nbclient's event loop then has no signal handlers of its own (they can only be set
    in the main thread), so the main thread, waiting here, keeps ours. The worker then
    shuts the kernel down (on its loop, where the kernel's sockets live): a shutdown
    request after success (the kernel's atexit hooks run), a kill after an error. The
    main thread gives that SHUTDOWN_LIMIT seconds, then kills the kernel itself.
    """
    from jupyter_core.utils import run_sync

    errors: list[BaseException] = []  # handed from the worker to the main thread
    done_at: list[float] = []

    def work() -> None:
        try:
            client.execute()
        except BaseException as exc:
            errors.append(exc)
        done_at.append(time.monotonic())
        with contextlib.suppress(Exception):
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=bool(errors))

    worker = threading.Thread(target=work, name="nbclient", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)  # timed: a signal is handled within 0.2 s
        if done_at and time.monotonic() - done_at[0] > SHUTDOWN_LIMIT:
            say("warning: the kernel did not shut down in time; killing it")
            break
    kill_kernel(km)  # whatever the worker did, no kernel outlives the step
    return errors[0] if errors else None


def failure(error, kernel, path, asked, installed):
    """(exit status, one-line message) for an execution that raised ``error``."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    context = f"(the notebook asks for {asked}; the image {image()} has {installed})"
    if isinstance(error, CellExecutionError):
        return FAILED, f"a cell failed in {path}:\n{plain(str(error))}"
    if isinstance(error, DeadKernelError):
        where = f"while running cell {STATE['cell']}" if STATE["cell"] else "at start"
        return FAILED, f"the kernel {kernel} died {where} of {path} {context}"
    if isinstance(error, NoSuchKernel):
        return MISSING, f"no Jupyter kernel '{kernel}' to run {path} {context}"
    if isinstance(error, FileNotFoundError):
        return MISSING, (f"the kernel {kernel} could not start for {path}, its program is "
                         f"missing ({error}) {context}")
    reason = " ".join(plain(str(error)).split()) or type(error).__name__
    what = "could not start for" if STATE["cell"] is None else "failed running"
    return FAILED, f"the kernel {kernel} {what} {path}: {reason} {context}"


#: Names of the step's variables whose values are secrets (set by the step operator):
#: those values never reach the saved notebook or its HTML copy (the run folder).
SECRET_NAMES = "ORCHEST_JOBS_SECRET_NAMES"
#: Shorter values are left alone, as Airflow's masker does by default.
MIN_SECRET_LENGTH = 5


def redact_secrets(nb):
    """Replace every secret value (and each line of a multi-line one) in cell outputs."""
    found: set[str] = set()
    for name in os.environ.get(SECRET_NAMES, "").split(","):
        value = os.environ.get(name, "") if name else ""
        found.update(p for p in [value, *value.splitlines()] if len(p) >= MIN_SECRET_LENGTH)
    values = sorted(found, key=len, reverse=True)

    def clean(obj):
        if isinstance(obj, str):
            for value in values:
                obj = obj.replace(value, "***")
            return obj
        if isinstance(obj, list):
            return [clean(item) for item in obj]
        if isinstance(obj, dict):
            for key in list(obj):
                obj[key] = clean(obj[key])
        return obj

    if values:
        for cell in nb.cells:
            if "outputs" in cell:
                cell["outputs"] = clean(cell["outputs"])


def write_html(nb, path):
    """``name.ipynb`` -> ``name.html`` beside it, images inline; a failure only warns."""
    target = os.path.splitext(path)[0] + ".html"
    try:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter()
        if exporter.has_trait("embed_images"):
            exporter.embed_images = True  # markdown images too; outputs are data: URIs
        body, _ = exporter.from_notebook_node(nb)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(body)
    except Exception as exc:  # any exporter problem is only a warning
        say(f"warning: could not write {target} ({type(exc).__name__}: {exc})")


def main(argv):
    if len(argv) != 2:
        say("usage: notebook.py NOTEBOOK")
        return 2
    path = os.path.abspath(argv[1])
    STATE["path"] = path
    for signum in STOP_SIGNALS:
        signal.signal(signum, on_stop_signal)
    try:
        import nbclient  # noqa: F401 - checked here for the message below
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager  # noqa: F401
    except ImportError as exc:
        say(f"the image {image()} has no '{exc.name}' (needed to run notebook {path}); "
            "install nbclient, nbconvert and ipykernel in the environment")
        return MISSING

    runtime_dir = os.environ.get("JUPYTER_RUNTIME_DIR")
    if not runtime_dir:
        # Kernel connection files: somewhere writable whatever the user and HOME.
        runtime_dir = os.environ["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(
            prefix="jupyter-runtime-")

    nb = nbformat.read(path, as_version=4)
    installed = installed_kernels()
    asked = describe_asked(nb.metadata)
    kernel = choose_kernel(nb.metadata, installed)
    if kernel is None:
        say(f"the image {image()} has no Jupyter kernel for the language of {path} "
            f"(the notebook asks for {asked}; the image has "
            f"{describe_installed(installed)}); install one in the environment")
        return MISSING

    km = kernel_manager(kernel, runtime_dir)
    STATE["km"] = km
    client = client_class()(nb, km=km, timeout=None, startup_timeout=STARTUP_TIMEOUT,
                            shutdown_kernel="immediate",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    print(f"orchest-runner: executing {path} with kernel {kernel} ({asked})", flush=True)

    error = execute(client, km)
    status = 0
    if error is not None:
        status, message = failure(error, kernel, path, asked, describe_installed(installed))
        say(message)
        if status == MISSING or STATE["cell"] is None:
            return status  # nothing ran: the notebook stays as it was
    # Executed (or partly executed) notebook back in place, as Orchest kept it.
    redact_secrets(nb)
    nbformat.write(nb, path)
    write_html(nb, path)
    return status


if __name__ == "__main__":
    finish(main(sys.argv))
