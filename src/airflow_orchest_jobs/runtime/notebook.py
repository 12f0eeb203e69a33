"""Run a notebook step as Orchest did: execute it in place, keep an HTML copy beside it.

Started by runner.sh inside the step container (``python3 notebook.py FILE``), with the
image's own Python: it uses only the standard library, nbformat, nbclient and nbconvert,
and keeps to syntax Python 3.6 understands. Cell output is printed as each cell finishes
so the task log shows progress; a failing cell fails the step with its traceback; an
HTML export failure is only a warning (the executed notebook is what matters).
"""

import os
import re
import sys
import tempfile

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MISSING = 127


def say(message):
    print("orchest-runner: " + message, file=sys.stderr, flush=True)


def image():
    return os.environ.get("ORCHEST_RUNNER_IMAGE") or "this image"


def plain(text):
    return ANSI.sub("", text)


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


def print_outputs(cell, **_):
    for output in cell.get("outputs", []):
        text = output_text(output)
        if text:
            sys.stdout.write(text)
    sys.stdout.flush()


def local_kernel_manager():
    from jupyter_client.manager import KernelManager

    class LocalKernelManager(KernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return LocalKernelManager


def write_html(nb, path):
    """``name.ipynb`` -> ``name.html`` beside it; a failure is a warning only."""
    target = os.path.splitext(path)[0] + ".html"
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(body)
    except Exception as exc:  # any exporter problem is only a warning
        say(f"warning: could not write {target} ({type(exc).__name__}: {exc})")


def main(argv):
    if len(argv) != 2:
        say("usage: notebook.py NOTEBOOK")
        return 2
    path = os.path.abspath(argv[1])
    try:
        import nbformat
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as exc:
        say(f"the image {image()} has no '{exc.name}' (needed to run notebook {path}); "
            "install nbclient, nbconvert and ipykernel in the environment")
        return MISSING

    if not os.environ.get("JUPYTER_RUNTIME_DIR"):
        # Kernel connection files: somewhere writable whatever the user and HOME.
        os.environ["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="jupyter-runtime-")

    nb = nbformat.read(path, as_version=4)
    kernel = (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    client = NotebookClient(nb, kernel_name=kernel, timeout=None,
                            resources={"metadata": {"path": os.path.dirname(path)}})
    # The kernel is local: IPC sockets, not TCP (no network needed, no TCP warning).
    client.kernel_manager_class = local_kernel_manager()
    if client.has_trait("on_cell_executed"):
        client.on_cell_executed = print_outputs
    print(f"orchest-runner: executing {path} with kernel {kernel}", flush=True)

    status = 0
    try:
        client.execute()
    except NoSuchKernel:
        say(f"the image {image()} has no Jupyter kernel '{kernel}' (the notebook's "
            f"kernelspec) to run {path}")
        return MISSING
    except CellExecutionError as exc:
        say(f"a cell failed in {path}:\n{plain(str(exc))}")
        status = 1
    # Executed (or partly executed) notebook back in place, as Orchest kept it.
    nbformat.write(nb, path)
    write_html(nb, path)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
