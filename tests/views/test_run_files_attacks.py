"""Attacks on the run-files app and the folder listings of the session's real api-server.

Two projects run once: ``...open...`` (readable by every user with a role) and
``...forbidden...`` (denied to ``RESTRICTED`` by the per-DAG auth manager of
tests/auth_manager.py). Their one step plants what a hostile step can: a FIFO, a link
to the deployment's ``airflow.cfg``, a link to its home folder. Requests are sent raw
(a socket, not ``requests``, which would normalise ``..`` away) with dot segments,
percent-, double- and overlong encodings, backslashes, NULs and over-long names in every
segment; then a link race and a hypothesis fuzz of the URL space. Nothing may answer
500, and nothing served may contain ``airflow.cfg`` (a marker appended to it), the
password file, or, for ``RESTRICTED``, the forbidden DAG's files. Every target is first
shown reachable by the straight URL or path (so a refusal is the boundary at work, not a
wrong path).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_orchest_jobs.core.layout import StoreLayout
from tests.deployment import (
    DENIED,
    PASSWORD,
    RESTRICTED,
    RESTRICTED_PASSWORD,
    USER,
    Deployment,
)
from tests.orchest_factory import pipeline_doc, step, write_project

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

STEP = """\
import os
root = "/project-dir"
open(f"{root}/out.txt", "w").write(os.environ["CONTENT"])
open(f"{root}/race.txt", "w").write("public race file")
os.makedirs(f"{root}/swap", exist_ok=True)
open(f"{root}/swap/airflow.cfg", "w").write("public copy")
os.mkfifo(f"{root}/fifo")
os.symlink(os.environ["CFG"], f"{root}/cfg-link")
os.symlink(os.environ["HOME_DIR"], f"{root}/home-link")
print("planted")
"""
#: Every way of spelling "up one folder" or a separator an attacker might try.
TRAVERSALS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..%2f..",
              "..%2F..%2F..%2F..", "%2f", "%2F..", "%5c..%5c..", "..\\..", "...",
              "%c0%ae%c0%ae", "..;", "%2e%2e%2f", "%00", "..%00", "x" * 300, "y" * 5000]


@dataclass(frozen=True)
class Planted:
    open_dag: str
    open_run: str
    forbidden_dag: str
    forbidden_run: str
    #: The forbidden run's out.txt (RESTRICTED must never see it).
    forbidden_content: str
    #: Appended to airflow.cfg: must never be served.
    leak: str
    home: Path

    def folder(self, dag_id: str, run_id: str) -> Path:
        return StoreLayout(self.home / "store").job_run(dag_id, run_id)


def token(base_url: str, user: str, password: str) -> str:
    response = requests.post(f"{base_url}/auth/token",
                             json={"username": user, "password": password}, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


def raw_get(base_url: str, path: str | bytes, bearer: str,
            timeout: float = 30) -> tuple[int, bytes]:
    """One GET with the path sent exactly as given (no normalisation, no re-encoding)."""
    address = urlparse(base_url)
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: " + address.netloc.encode()
                     + b"\r\nAuthorization: Bearer " + bearer.encode()
                     + b"\r\nConnection: close\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


@pytest.fixture(scope="module")
def planted(deployment: Deployment) -> Planted:
    """Both projects run once; the marker is appended to the deployment's airflow.cfg."""
    cfg = deployment.home / "airflow.cfg"
    assert cfg.is_file(), "the deployment's airflow.cfg (written by airflow db migrate)"
    leak = f"leak-marker-{uuid.uuid4().hex}"
    with cfg.open("a") as out:
        out.write(f"\n# {leak}\n")
    runs = {}
    for name in ("websecopen", f"websec{DENIED}"):
        doc = pipeline_doc([step("plant", "plant.py", title="plant")], uuid=f"pipe-{name}")
        write_project(deployment.projects_dir / name, doc, files={"plant.py": STEP})
    for name in ("websecopen", f"websec{DENIED}"):
        dag_id = f"orchest__{name}__main"
        deployment.wait_for_dag(dag_id)
        content = f"content of {name} {uuid.uuid4().hex}"
        run_id = deployment.trigger(dag_id, {"env_variables": {
            "CONTENT": content, "CFG": str(cfg), "HOME_DIR": str(deployment.home)}},
            prefix="websec")
        runs[name] = (dag_id, run_id, content)
    for dag_id, run_id, _ in runs.values():
        state = deployment.wait_finished(dag_id, run_id)["state"]
        assert state == "success", deployment.task_states(dag_id, run_id)
    (open_dag, open_run, _), (forbidden_dag, forbidden_run, forbidden_content) = runs.values()
    return Planted(open_dag, open_run, forbidden_dag, forbidden_run, forbidden_content, leak,
                   deployment.home)


@pytest.fixture(scope="module")
def bearers(deployment: Deployment) -> dict[str, str]:
    return {USER: token(deployment.base_url, USER, PASSWORD),
            RESTRICTED: token(deployment.base_url, RESTRICTED, RESTRICTED_PASSWORD)}


def leaked(body: bytes, planted: Planted, user: str, status: int = 200) -> str | None:
    """What a response must never carry, if it carries it (names of the Airflow home's
    files only in a 200: a 404 names the path it was asked for)."""
    text = body.decode("utf-8", "replace")
    names = ("passwords.json", "airflow.db", "api-server.log") if status == 200 else ()
    for secret in (planted.leak, PASSWORD, RESTRICTED_PASSWORD, "sql_alchemy_conn", *names):
        if secret in text:
            return secret
    if user == RESTRICTED and planted.forbidden_content in text:
        return "the forbidden DAG's file"
    return None


def attack_paths(planted: Planted) -> list[str]:
    """URLs aiming, by every traversal spelling in every segment, at airflow.cfg (four
    folders above a run folder) and at the forbidden DAG's run file."""
    fdag, frun = planted.forbidden_dag, quote(planted.forbidden_run, safe="")
    odag, orun = planted.open_dag, quote(planted.open_run, safe="")
    secret_file = f"{fdag}/{frun}/run-00000/project/out.txt"
    paths = []
    for t in TRAVERSALS:
        up4 = "/".join([t] * 4)
        for prefix, tail in (("/orchest-jobs/runs", ""),
                             ("/orchest-jobs/ui/dags", "files")):
            def url(dag: str, run: str, rest: str, prefix=prefix, tail=tail) -> str:
                if tail:
                    return f"{prefix}/{dag}/runs/{run}/files/{rest}"
                return f"{prefix}/{dag}/{run}/{rest}"

            paths += [
                url(odag, orun, f"{up4}/airflow.cfg"),                 # the file part
                url(odag, orun, f"{t}/{t}/{secret_file}"),
                url(odag, orun, f"run-00000/{t}/{t}/{t}/{secret_file}"),
                url(odag, t, f"{t}/{t}/{t}/airflow.cfg"),                # the run id
                url(odag, t, secret_file.split("/", 1)[1]),
                url(odag, f"{t}%2f{t}%2f{t}", "airflow.cfg"),
                url(t, t, "airflow.cfg"),                                # the DAG id
                url(t, t, f"{t}/{t}/airflow.cfg"),
                url(t, fdag, secret_file.split("/", 1)[1]),
                url(f"{odag}%2f{t}%2f{fdag}", frun, "run-00000/project/out.txt"),
                url(f"{t}%2f{fdag}", frun, "run-00000/project/out.txt"),
            ]
    return paths


def test_the_targets_are_reachable_by_their_straight_names(deployment, planted, bearers):
    """The controls: what the attacks aim at exists, at the paths they aim at."""
    folder = planted.folder(planted.open_dag, planted.open_run)
    assert (folder / "../../../../airflow.cfg").resolve() == planted.home / "airflow.cfg"
    assert planted.leak in (folder / "../../../../airflow.cfg").read_text()
    target = f"/orchest-jobs/runs/{planted.forbidden_dag}/{quote(planted.forbidden_run)}/" \
             "run-00000/project/out.txt"
    status, body = raw_get(deployment.base_url, target, bearers[USER])
    assert (status, body.decode()) == (200, planted.forbidden_content)
    assert raw_get(deployment.base_url, target, bearers[RESTRICTED])[0] == 403
    mine = f"/orchest-jobs/runs/{planted.open_dag}/{quote(planted.open_run)}/" \
           "run-00000/project/out.txt"
    assert raw_get(deployment.base_url, mine, bearers[RESTRICTED])[0] == 200


def test_traversal_in_every_segment_and_encoding_is_refused(deployment, planted, bearers):
    paths = attack_paths(planted)
    log = deployment.home / "api-server.log"
    log_start = log.stat().st_size
    answers: dict[int, int] = {}
    for user in (USER, RESTRICTED):
        for path in paths:
            status, body = raw_get(deployment.base_url, path, bearers[user])
            answers[status] = answers.get(status, 0) + 1
            assert status in (400, 403, 404), (user, path[:300], status, body[:300])
            assert leaked(body, planted, user, status) is None, (user, path[:300])
    # A raw NUL in the request line, an over-long file name, an over-long DAG id.
    odag, orun = planted.open_dag, quote(planted.open_run, safe="")
    for path in (f"/orchest-jobs/runs/{odag}/{orun}/a\x00b".encode(),
                 f"/orchest-jobs/runs/{odag}/{orun}/{'n' * 256}",
                 f"/orchest-jobs/runs/{odag}/{orun}/{'d/' * 3000}x",
                 f"/orchest-jobs/runs/{'D' * 3000}/{orun}/run-00000/project/out.txt",
                 f"/orchest-jobs/ui/dags/{odag}/runs/{orun}/files/{'n' * 256}/",
                 f"/orchest-jobs/static/{'s' * 300}", "/orchest-jobs/static/a%00b",
                 "/orchest-jobs/static/..%2fpages.py", "/orchest-jobs/static/%2e%2e",
                 f"/orchest-jobs/api/v1/dags/{odag}/dagRuns/{'r' * 3000}/pipelineRuns",
                 f"/orchest-jobs/api/v1/dags/{odag}/dagRuns/a%00b/pipelineRuns"):
        status, body = raw_get(deployment.base_url, path, bearers[USER])
        assert status in (400, 404), (path[:100], status, body[:300])
    print(f"{len(paths) * 2} traversal requests: {answers}")
    text = log.read_bytes()[log_start:].decode("utf-8", "replace")
    assert "File name too long" not in text and "airflow_orchest_jobs" not in text, text[-3000:]


def test_a_run_folder_airflow_does_not_know_is_not_served(deployment, planted, bearers):
    real = planted.folder(planted.open_dag, planted.open_run) / "run-00000/project/out.txt"
    ghost = planted.folder(planted.open_dag, "ghost__1") / "run-00000" / "project"
    ghost.mkdir(parents=True)
    (ghost / "out.txt").write_text(real.read_text())
    for path in (f"/orchest-jobs/runs/{planted.open_dag}/ghost__1/run-00000/project/out.txt",
                 f"/orchest-jobs/ui/dags/{planted.open_dag}/runs/ghost__1/files/"):
        assert raw_get(deployment.base_url, path, bearers[USER])[0] == 404
    # The run of another DAG under this DAG's name: the pair must exist, not each id.
    path = f"/orchest-jobs/runs/{planted.open_dag}/{quote(planted.forbidden_run)}/" \
           "run-00000/project/out.txt"
    assert raw_get(deployment.base_url, path, bearers[RESTRICTED])[0] == 404


def test_fifos_and_links_are_listed_never_followed_or_served(deployment, planted, bearers):
    base = f"/orchest-jobs/runs/{planted.open_dag}/{quote(planted.open_run)}/run-00000/project"
    for name in ("fifo", "cfg-link", "home-link/airflow.cfg", "home-link/passwords.json"):
        started = time.monotonic()
        status, body = raw_get(deployment.base_url, f"{base}/{name}", bearers[USER])
        assert status == 404 and leaked(body, planted, USER, status) is None, (name, status)
        assert time.monotonic() - started < 20, f"{name} kept the request waiting"
    files = f"/orchest-jobs/ui/dags/{planted.open_dag}/runs/{quote(planted.open_run)}/files/" \
            "run-00000/project/"
    status, body = raw_get(deployment.base_url, files, bearers[USER])
    page = body.decode()
    assert status == 200, page[:500]
    assert "fifo <span class=muted>(not a regular file)</span>" in page
    assert "cfg-link <span class=muted>(link, not followed)</span>" in page
    assert "home-link <span class=muted>(link, not followed)</span>" in page
    assert 'href="' in page and "cfg-link\"" not in page and "home-link/\"" not in page
    assert raw_get(deployment.base_url, files + "home-link/", bearers[USER])[0] == 404


def test_a_link_race_leaks_nothing(deployment, planted, bearers):
    """A step's race, for 20 s: race.txt swapped for a link to airflow.cfg and the folder
    swap/ for a link to the deployment's home (which holds airflow.cfg) as fast as a
    thread can, while three clients read them and list swap/."""
    project = planted.folder(planted.open_dag, planted.open_run) / "run-00000" / "project"
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        pairs = (("race.txt", planted.home / "airflow.cfg"), ("swap", planted.home))
        while not stop.is_set():
            for name, target in pairs:
                link, keep = project / f".{name}.link", project / f".{name}.keep"
                link.unlink(missing_ok=True)
                link.symlink_to(target)
                os.rename(project / name, keep)
                os.rename(link, project / name)
                time.sleep(0.0005)
                os.rename(project / name, link)
                os.rename(keep, project / name)
            swaps += 1

    base = f"/orchest-jobs/runs/{planted.open_dag}/{quote(planted.open_run)}/run-00000/project"
    listing = (f"/orchest-jobs/ui/dags/{planted.open_dag}/runs/{quote(planted.open_run)}/"
               "files/run-00000/project/swap/")
    counts = {"served": 0, "refused": 0, "leaks": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + 20

    def client() -> None:
        while time.monotonic() < deadline:
            for path in (f"{base}/race.txt", f"{base}/swap/airflow.cfg", listing):
                status, body = raw_get(deployment.base_url, path, bearers[USER])
                bad = leaked(body, planted, USER, status)
                with lock:
                    counts["leaks"] += bool(bad)
                    counts["served" if status == 200 else "refused"] += 1
                assert status in (200, 404), (path, status, body[:300])

    swapping = threading.Thread(target=swapper, daemon=True)
    swapping.start()
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            client()
        except BaseException as exc:  # reported below
            errors.append(exc)

    clients = [threading.Thread(target=guarded) for _ in range(3)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(120)
    stop.set()
    swapping.join(10)
    print(f"link race: {swaps} swaps, {counts}")
    assert not errors, errors[0]
    assert counts["leaks"] == 0, counts
    assert counts["served"] > 0 and swaps > 100, (counts, swaps)
    with contextlib.suppress(OSError):
        assert (project / "race.txt").read_text() == "public race file"


SEGMENTS = st.sampled_from([
    "..", ".", "", "%2e%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%252e%252e", "%25",
    "%ff", "%c0%ae", "~", ";", "run-00000", "project", "out.txt", "fifo", "cfg-link",
    "home-link", "swap", "airflow.cfg", "passwords.json", "store", "runs", "x" * 300,
])


DOTS = st.sampled_from(["..", "..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..%00",
                        "%c0%ae%c0%ae"])
SEPARATORS = st.sampled_from(["/"] * 6 + ["%2f", "%2F", "%5c", "\\", "%252f", "//"])


def aimed_paths(planted: Planted) -> st.SearchStrategy[str]:
    """Paths aimed at airflow.cfg or the forbidden DAG's file, spelled every way: each
    ``..`` and each separator drawn from their encodings, one segment maybe dropped or
    added (a straight URL to the forbidden file is among them: 403 for RESTRICTED)."""
    odag, orun = planted.open_dag, quote(planted.open_run, safe="")
    fdag, frun = planted.forbidden_dag, quote(planted.forbidden_run, safe="")
    secret = [fdag, frun, "run-00000", "project", "out.txt"]
    templates = [
        ["runs", odag, orun, "..", "..", "..", "..", "airflow.cfg"],
        ["runs", odag, orun, "..", "..", *secret],
        ["runs", odag, "..", *secret],
        ["runs", "..", "runs", *secret],
        ["runs", "..", "..", "airflow.cfg"],
        ["runs", "..", "..", "passwords.json"],
        ["runs", odag, orun, "run-00000", "project", "home-link", "airflow.cfg"],
        ["runs", odag, orun, "run-00000", "project", "cfg-link"],
        ["ui", "dags", odag, "runs", orun, "files", "..", "..", "..", "..", ""],
        ["ui", "dags", odag, "runs", "..", "files", fdag, frun, "run-00000", ""],
        ["ui", "dags", "..", "runs", fdag, "files", frun, ""],
        ["ui", "dags", "..", "runs", "..", "files", ""],
        ["ui", "dags", odag, "runs", orun, "files", "run-00000", "project", "home-link", ""],
    ]

    @st.composite
    def spelled(draw) -> str:
        segments = list(draw(st.sampled_from(templates)))
        edit = draw(st.integers(0, 3))
        where = draw(st.integers(1, len(segments) - 1))
        if edit == 1:
            del segments[where]
        elif edit == 2:
            segments.insert(where, "..")
        segments = [draw(DOTS) if s == ".." else s for s in segments]
        path = "/orchest-jobs/" + segments[0]
        for segment in segments[1:]:
            path += draw(SEPARATORS) + segment
        return path

    return spelled()


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_the_run_files_url_space(deployment, planted, bearers, data):
    """Never a 500, never anything from outside the run folder, never the forbidden DAG's
    files for RESTRICTED: half the URLs aimed (``aimed_paths``), half drawn freely over
    DAG id, run id and path segments from the pieces attacks are made of."""
    ids = st.sampled_from([planted.open_dag, planted.forbidden_dag,
                           quote(planted.open_run, safe=""),
                           quote(planted.forbidden_run, safe="")])
    piece = st.one_of(ids, SEGMENTS)
    if data.draw(st.booleans()):
        path = data.draw(aimed_paths(planted))
    else:
        dag = data.draw(st.lists(piece, min_size=1, max_size=3).map("%2f".join))
        run = data.draw(st.lists(piece, min_size=1, max_size=3).map("%2f".join))
        rest = data.draw(st.lists(piece, min_size=0, max_size=6).map("/".join))
        path = (f"/orchest-jobs/ui/dags/{dag}/runs/{run}/files/{rest}"
                if data.draw(st.booleans()) else f"/orchest-jobs/runs/{dag}/{run}/{rest}")
    user = data.draw(st.sampled_from([USER, RESTRICTED]))
    status, body = raw_get(deployment.base_url, path, bearers[user])
    assert status < 500, (path, status, body[:300])
    assert leaked(body, planted, user, status) is None, (user, path, status)
