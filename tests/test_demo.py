"""``scripts/demo`` as a new user meets it, in a clean clone of this repository's HEAD.

The demo must leave a live Airflow up with the example job already run by its scheduler,
and print links that open the product in a real headless Chromium: the pipeline-run view
with the example's 4 runs and their parameters, an executed notebook, the jobs overview.
``scripts/demo stop`` must then leave no process of the demo and no container.

The clone is of the commit checked out here (commit before running this test; without
git, a copy of the files), with the test's venv reused (DEMO_VENV), so it takes minutes,
not a fresh install. The screenshot
docs/images/demo-pipeline-runs.png (README "Try it") is taken here from the demo's own run
(written there with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.deployment import cleanup_docker, free_port
from tests.views.browser import binaries, chromium, login, screenshot, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = "demo-pipeline-runs.png"  # docs/images/, with UPDATE_SCREENSHOTS=1
DAG_ID = "orchest_job__weather-report__nightly"
CITY = "param:pipeline_parameters:city"
SEED = "param:4ed239c8-150f-41b6-a502-e67a65dab474:seed"
DEMO_TIMEOUT = 1500


def demo_processes(home: Path) -> list[int]:
    """Every process whose environment names the demo's Airflow home."""
    wanted = f"AIRFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def demo_containers(docker_client, clone: Path) -> list[str]:
    """Step containers with a mount from the clone."""
    return [c.short_id for c in docker_client.containers.list(
                all=True, filters={"label": "orchest-jobs.run-uuid"})
            if any(str(m.get("Source", "")).startswith(f"{clone}/")
                   for m in c.attrs.get("Mounts", []))]


def printed(output: str, label: str) -> str:
    found = re.search(rf"^  {label}:\s+(.+)$", output, re.M)
    assert found, f"the demo printed no {label!r} line:\n{output[-3000:]}"
    return found.group(1).strip()


@pytest.mark.skipif(binaries() is None, reason="needs chromium and chromium-driver")
def test_demo_leaves_the_ui_up_with_the_job_run_and_stop_leaves_nothing(
        tmp_path, docker_client, images):
    from selenium.webdriver.common.by import By

    clone = tmp_path / "repo"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=False,
                          capture_output=True, text=True).stdout.strip()
    if head:
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)],
                       check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    else:  # a checkout without git (an unpacked archive): its files, without local state
        shutil.copytree(REPO, clone, symlinks=True, ignore=shutil.ignore_patterns(
            ".venv", ".demo", ".cache", ".compose", "__pycache__", ".*_cache"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AIRFLOW") and k != "PYTHONPATH"}
    env.update(DEMO_VENV=str(Path(sys.executable).parent.parent), DEMO_PORT=str(free_port()))
    home = clone / ".demo" / "airflow"

    def stop() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(clone / "scripts" / "demo"), "stop"], env=env, text=True,
                              capture_output=True, timeout=180, check=False)

    try:
        demo = subprocess.run([str(clone / "scripts" / "demo")], env=env, text=True,
                              capture_output=True, timeout=DEMO_TIMEOUT, check=False)
        output = demo.stdout + demo.stderr
        logs = "\n".join(f"--- {p.name} ---\n" + p.read_text(errors="replace")[-2000:]
                         for p in sorted((clone / ".demo" / "logs").glob("*.log")))
        assert demo.returncode == 0, output[-5000:] + logs
        base_url = printed(output, "Airflow")
        user, _, password = printed(output, "login").partition(" / ")
        runs_url = printed(output, "pipeline runs")
        jobs_url = printed(output, "jobs overview")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert runs_url.startswith(f"{base_url}/dags/{DAG_ID}/runs/demo__")
        assert re.search(r"ready in \d+s", output)
        pids = [int((clone / ".demo" / "run" / f"{name}.pid").read_text()) for name in
                ("api-server", "scheduler", "dag-processor", "triggerer")]

        with chromium() as browser:
            login(browser, base_url, user, password)
            browser.get(runs_url)

            def into_view():
                browser.switch_to.default_content()
                browser.switch_to.frame(wait_for("the view's frame", lambda:
                                                 browser.find_element(By.CSS_SELECTOR,
                                                                      "iframe")))
                return wait_for("4 rows", lambda: len(browser.find_elements(
                    By.CSS_SELECTOR, "#runs tbody tr[data-index]")) == 4, timeout=60)

            into_view()
            rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-index]")
            assert [r.get_attribute("data-state") for r in rows] == ["success"] * 4
            assert browser.find_element(By.CSS_SELECTOR, "[data-count=success]").text == "4"
            parameters = {(r.find_element(By.CSS_SELECTOR, f"[data-column='{CITY}']").text,
                           r.find_element(By.CSS_SELECTOR, f"[data-column='{SEED}']").text)
                          for r in rows}
            assert parameters == {("Amsterdam", "1"), ("Amsterdam", "2"), ("Lisbon", "1"),
                                  ("Lisbon", "2")}
            browser.switch_to.default_content()
            screenshot(browser, SCREENSHOT)
            into_view()

            # The executed notebook of run 0, as a person clicks it.
            browser.find_element(By.CSS_SELECTOR, "tr[data-index='0'] a.notebook-link").click()
            wait_for("the notebook", lambda: "readings for" in
                     browser.find_element(By.TAG_NAME, "body").text, timeout=60)
            assert "Analyse the readings" in browser.find_element(By.TAG_NAME, "body").text

            browser.get(jobs_url)
            browser.switch_to.frame(wait_for("the overview's frame", lambda:
                                             browser.find_element(By.CSS_SELECTOR, "iframe")))
            row = wait_for("the job's row", lambda: browser.find_element(
                By.CSS_SELECTOR, f"#jobs tr[data-dag='{DAG_ID}']"))
            assert "weather-report" in row.text

        stopped = stop()
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
        assert demo_processes(home) == []
        assert demo_containers(docker_client, clone) == []
        assert not list((clone / ".demo" / "run").glob("*.pid"))
        with pytest.raises(requests.ConnectionError):
            requests.get(base_url, timeout=5)
    finally:
        stop()
        cleanup_docker(clone / ".demo" / "store")
