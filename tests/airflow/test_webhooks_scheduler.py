"""Webhooks on the real scheduler: a 4-run job with one failing run notifies a local
receiver (127.0.0.1, a thread of this test) that answers 500 to the first three attempts.

Every event arrives, each under one delivery id, with Orchest's body layers and a
signature that verifies; pausing and unpausing a cron job notifies too; ``webhooks list``
and ``webhooks test`` work against it. Deliveries pending when the scheduler is killed
are delivered by the next one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import uuid
from collections import Counter

import pytest

from airflow_orchest_jobs.core.notifications.outbox import Outbox
from airflow_orchest_jobs.core.notifications.pauses import PauseRecord
from tests.core.test_notifications import Receiver, validate_event
from tests.deployment import Deployment

pytestmark = [pytest.mark.docker, pytest.mark.airflow, pytest.mark.slow]

STEP = """\
import orchest
if orchest.get_pipeline_param("n") == 2:
    raise SystemExit("run with n=2 fails")
print("ok")
"""
VARIABLE = "orchest_jobs_webhooks"
SECRET = "webhook-s3cret-value"


def test_a_job_run_notifies_as_orchest_did(deployment: Deployment) -> None:
    from tests.orchest_factory import pipeline_doc, step, write_project

    name = f"hooks{uuid.uuid4().hex[:6]}"
    doc = pipeline_doc([step("one", "work.py", title="one"),
                        step("two", "done.py", title="two", incoming=["one"])],
                       parameters={"n": 0}, uuid=f"pipe-{name}")
    write_project(deployment.projects_dir / name, doc,
                  files={"work.py": STEP, "done.py": "print('done')\n"})
    (deployment.projects_dir / name / "nightly.job.json").write_text(json.dumps({
        "pipeline": "main.orchest", "parameters": {"pipeline_parameters": {"n": [0, 1, 2, 3]}}}))
    (deployment.projects_dir / name / "yearly.job.json").write_text(json.dumps({
        "pipeline": "main.orchest", "schedule": "0 3 1 1 *",  # a cron job (never due here)
        "parameters": {"pipeline_parameters": {"n": [0, 1]}}}))
    dag_id, cron_id = f"orchest_job__{name}__nightly", f"orchest_job__{name}__yearly"
    receiver = Receiver([500, 500, 500])
    conn_id = f"hook_{name}"
    types = [f"project:one-off-job:{e}" for e in ("started", "succeeded", "failed",
                                                  "cancelled")]
    types += [f"project:one-off-job:pipeline-run:{e}" for e in ("started", "succeeded",
                                                                "failed", "cancelled")]
    types += ["project:cron-job:paused", "project:cron-job:unpaused"]
    response = deployment.api("POST", "/connections", json={
        "connection_id": conn_id, "conn_type": "orchest_webhook", "host": receiver.url,
        "password": SECRET, "extra": json.dumps({
            "name": "alerts", "content_type": "application/json", "verify_ssl": True,
            "subscriptions": [{"event_type": t, "project": name} for t in types]})})
    assert response.status_code in (200, 201), response.text
    _set_webhooks(deployment, [*_webhooks(deployment), conn_id])
    try:
        cli = [sys.executable, "-m", "airflow_orchest_jobs.cli", "webhooks"]
        listed = subprocess.run([*cli, "list"], env=deployment.env, capture_output=True,
                                text=True, timeout=120)
        assert f"{conn_id}: 'alerts' -> http://127.0.0.1:" in listed.stdout, listed
        assert SECRET not in listed.stdout + listed.stderr
        deployment.wait_for_dag(dag_id)
        run_id = deployment.trigger(dag_id, prefix="hooks")
        run = deployment.wait_finished(dag_id, run_id)
        assert run["state"] == "failed"

        outbox = Outbox(deployment.store_dir)

        def delivered() -> bool:
            mine = [d for d in outbox.all() if d.conn_id == conn_id]
            return not mine and len(receiver.requests) >= 13

        deployment.wait("every delivery answered 2xx", delivered, timeout=180)
        requests = list(receiver.requests)
        ids = Counter(h["X-Orchest-Delivery"] for h, _ in requests)
        assert len(requests) == 13 and len(ids) == 10  # 10 events, 3 retried once each
        accepted: dict[str, dict] = {}
        for headers, body in requests:
            assert headers["X-Hub-Signature"] == hmac.new(
                SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["User-Agent"] == "Orchest"
            data = json.loads(body)
            assert data["delivered_for"]["name"] == "alerts" and "url" not in \
                data["delivered_for"]
            validate_event(data["event"])
            assert headers["X-Orchest-Event"] == data["event"]["type"]
            previous = accepted.setdefault(headers["X-Orchest-Delivery"], data["event"])
            assert previous["uuid"] == data["event"]["uuid"]  # a retry is the same event
        events = list(accepted.values())
        assert len({e["uuid"] for e in events}) == 10
        assert Counter(e["type"] for e in events) == {
            "project:one-off-job:started": 1,
            "project:one-off-job:pipeline-run:started": 4,
            "project:one-off-job:pipeline-run:succeeded": 3,
            "project:one-off-job:pipeline-run:failed": 1,
            "project:one-off-job:failed": 1}
        [failed] = [e for e in events if e["type"].endswith("pipeline-run:failed")]
        pipeline_run = failed["project"]["job"]["pipeline_run"]
        assert pipeline_run["failed_steps"] == [{"uuid": "one", "title": "one"}]
        assert pipeline_run["parameters"]["pipeline_parameters"] == {"parameters": {"n": 2}}
        assert pipeline_run["url_path"] == f"/orchest-jobs/ui/dags/{dag_id}/runs/{run_id}"
        [end] = [e for e in events if e["type"] == "project:one-off-job:failed"]
        assert end["project"]["job"]["status"] == "FAILURE"
        assert end["project"]["name"] == name and end["project"]["job"]["total_runs"] == 4

        # A cron job paused and unpaused (through Airflow's API, as the UI does).
        deployment.wait_for_dag(cron_id)
        deployment.wait("the scheduler to see the cron job", lambda: cron_id in PauseRecord(
            deployment.store_dir).load(), timeout=60)
        kind = "project:cron-job:{}paused"

        def pause_events(count: int) -> list[dict]:
            found = [json.loads(b)["event"] for h, b in receiver.requests
                     if h["X-Orchest-Event"].startswith("project:cron-job:")]
            return found if len(found) >= count else []

        for count, paused in ((1, True), (2, False)):
            deployment.api("PATCH", f"/dags/{cron_id}", json={"is_paused": paused}
                           ).raise_for_status()
            found = deployment.wait("the pause event",
                                    lambda n=count: pause_events(n), 60)
        paused_event, unpaused_event = found
        assert [paused_event["type"], unpaused_event["type"]] == [kind.format(""),
                                                                  kind.format("un")]
        validate_event(paused_event)
        job = paused_event["project"]["job"]
        assert job["status"] == "PAUSED" and job["name"] == "yearly" and job["total_runs"] == 2
        assert unpaused_event["project"]["job"]["status"] == "STARTED"

        ping = subprocess.run([*cli, "test", "alerts"], env=deployment.env,
                              capture_output=True, text=True, timeout=120)
        assert ping.returncode == 0 and "HTTP 200" in ping.stdout, ping
        headers, body = receiver.requests[-1]
        assert headers["X-Orchest-Event"] == "ping"
        assert json.loads(body)["event"]["type"] == "ping"
    finally:
        _set_webhooks(deployment, [c for c in _webhooks(deployment) if c != conn_id])
        deployment.api("DELETE", f"/connections/{conn_id}")
        receiver.close()


def _webhooks(deployment: Deployment) -> list[str]:
    """The conn ids in the Variable ``orchest_jobs_webhooks`` (other tests of the session's
    deployment, e.g. the import's, may have set it)."""
    response = deployment.api("GET", f"/variables/{VARIABLE}")
    return json.loads(response.json()["value"]) if response.status_code == 200 else []


def _set_webhooks(deployment: Deployment, conn_ids: list[str]) -> None:
    body = {"key": VARIABLE, "value": json.dumps(conn_ids)}
    exists = deployment.api("GET", f"/variables/{VARIABLE}").status_code == 200
    response = deployment.api("PATCH", f"/variables/{VARIABLE}", json=body) if exists \
        else deployment.api("POST", "/variables", json=body)
    assert response.status_code in (200, 201), response.text


def _restart_scheduler(deployment: Deployment) -> None:
    """Kill the scheduler (SIGKILL, its whole process group) and start a new one."""
    import os
    import signal

    old = deployment.processes["scheduler"]
    os.killpg(old.pid, signal.SIGKILL)
    old.wait(timeout=30)
    with open(deployment.home / "scheduler.log", "ab") as out:
        deployment.processes["scheduler"] = subprocess.Popen(
            [sys.executable, "-m", "airflow", "scheduler"], env=deployment.env,
            cwd=deployment.home, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)


def test_pending_deliveries_survive_a_scheduler_kill(deployment: Deployment) -> None:
    """Deliveries pending in the outbox (the receiver down) when the scheduler is killed
    are all delivered by the restarted scheduler, each under its one delivery id."""
    import time

    from airflow_orchest_jobs.core.notifications.events import ONE_OFF, JobFacts, job_event
    from airflow_orchest_jobs.core.notifications.outbox import Delivery

    receiver = Receiver([500] * 1000)  # down until told otherwise
    conn_id = f"hook_restart_{uuid.uuid4().hex[:6]}"
    response = deployment.api("POST", "/connections", json={
        "connection_id": conn_id, "conn_type": "orchest_webhook", "host": receiver.url,
        "password": SECRET, "extra": json.dumps({"name": "restart"})})
    assert response.status_code in (200, 201), response.text
    outbox = Outbox(deployment.store_dir)
    try:
        ids = []
        for i in range(3):  # what a task writes: the event, for this webhook
            facts = JobFacts(project="p", project_uuid="u", dag_id=f"orchest__p__{i}",
                             run_id=conn_id, kind=ONE_OFF, job_uuid="j", job_name="n",
                             pipeline_name="main", total_runs=1)
            event = job_event(facts, "failed")
            ids.append(f"{conn_id}-{i}")
            assert outbox.add(Delivery(ids[-1], event["uuid"], event["type"], conn_id, event,
                                       time.time(), time.time()))
        deployment.wait("a first attempt", lambda: len(receiver.requests) >= 1, timeout=60,
                        interval=0.2)
        _restart_scheduler(deployment)
        assert sorted(d.delivery_id for d in outbox.all() if d.conn_id == conn_id) == ids
        receiver.statuses.clear()  # the receiver is back
        deployment.wait("the restarted scheduler to deliver", lambda: not [
            d for d in outbox.all() if d.conn_id == conn_id], timeout=120)
        answered = Counter(h["X-Orchest-Delivery"] for h, _ in receiver.requests)
        assert set(answered) == set(ids)
        assert all(outbox.is_delivered(i) for i in ids)
    finally:
        deployment.api("DELETE", f"/connections/{conn_id}")
        receiver.close()
