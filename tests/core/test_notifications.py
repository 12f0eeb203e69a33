"""Webhook notifications, pure parts: Orchest's payload layers, signature, request shapes,
subscription matching, backoff and the outbox (files in a temporary store)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.notifications.events import (
    CRON,
    ONE_OFF,
    JobFacts,
    PipelineRunFacts,
    job_event,
    ping_event,
    pipeline_run_event,
)
from airflow_orchest_jobs.core.notifications.notices import (
    JobRunNotices,
    Subscriber,
    emit_run_event,
    run_outcomes,
)
from airflow_orchest_jobs.core.notifications.outbox import Delivery, Outbox, backoff
from airflow_orchest_jobs.core.notifications.webhook import (
    FORM,
    Subscription,
    Webhook,
    build_request,
    webhook_from_connection,
)

# The field lists of Orchest's event models (services/orchest-api/app/app/models/_events.py
# at 560103a5c), layer by layer, that a receiver written for Orchest reads.
EVENT = {"uuid", "type", "timestamp", "project"}  # Event + ProjectEvent
PROJECT = {"uuid", "name", "job"}  # ProjectEvent + JobEvent
JOB = {"uuid", "name", "status", "pipeline_name", "url_path", "total_runs"}  # JobEvent,
# OneOffJobEvent (CronJobEvent merged the same one-off layer: total_runs, no schedule)
RUN = {"status", "number", "total_pipeline_runs"}  # CronJobRunEvent
PIPELINE_RUN = {"uuid", "parameters", "status", "number", "url_path"}  # _prepare_job_...
DELIVERED_FOR = {"uuid", "type", "name", "verify_ssl", "content_type"}  # schema.webhook
RUN_STATUSES = {"PENDING", "STARTED", "SUCCESS", "FAILURE", "ABORTED"}
JOB_STATUSES = {"DRAFT", "PENDING", "STARTED", "PAUSED", "SUCCESS", "FAILURE", "ABORTED"}


def validate_event(event: dict) -> None:
    """Raise AssertionError unless ``event`` has exactly Orchest's layers and fields."""
    assert set(event) == EVENT, event.keys()
    assert event["timestamp"].endswith("+00:00") and " " in event["timestamp"]
    project = event["project"]
    assert set(project) == PROJECT
    job = project["job"]
    kind = event["type"].split(":")[1]
    extra = set(job) - JOB
    assert job["status"] in JOB_STATUSES
    pipeline_run = None
    if event["type"].startswith("project:cron-job:run:"):
        assert extra == {"run"}, extra
        run = job["run"]
        assert set(run) - RUN in (set(), {"pipeline_run"})
        assert run["status"] in {"STARTED", "SUCCESS", "FAILURE"}
        pipeline_run = run.get("pipeline_run")
        assert (pipeline_run is not None) == (":pipeline-run:" in event["type"])
    elif ":pipeline-run:" in event["type"]:
        assert extra == {"pipeline_run"}, extra
        pipeline_run = job["pipeline_run"]
    else:
        assert extra == set(), extra
    if pipeline_run is not None:
        optional = set(pipeline_run) - PIPELINE_RUN
        assert set(pipeline_run) >= PIPELINE_RUN
        assert pipeline_run["status"] in RUN_STATUSES
        assert optional <= {"number_in_run", "failed_steps"}
        assert ("number_in_run" in optional) == (kind == "cron-job")
        if "failed_steps" in optional:
            assert pipeline_run["status"] == "FAILURE"
            assert all(set(s) == {"uuid", "title"} for s in pipeline_run["failed_steps"])
        for key, group in pipeline_run["parameters"].items():
            if key == "pipeline_parameters":
                assert set(group) == {"parameters"}
            else:
                assert set(group) == {"step", "parameters"}
                assert set(group["step"]) == {"uuid", "title"}


def facts(kind: str = ONE_OFF, **extra) -> JobFacts:
    values = dict(project="weather", project_uuid="p-uuid", dag_id="orchest_job__weather__n",
                  run_id="manual__1", kind=kind, job_uuid="j-uuid", job_name="nightly",
                  pipeline_name="Weather", total_runs=4, job_run_number=2,
                  step_titles={"s1": "fetch", "s2": "report"})
    values.update(extra)
    return JobFacts(**values)


RUN0 = PipelineRunFacts(position=1, run_uuid="r-uuid",
                        parameters={"pipeline_parameters": {"city": "Oslo"}, "s1": {"n": 2}})


def test_one_off_events_have_orchests_layers():
    for what in ("started", "succeeded", "failed", "cancelled"):
        event = job_event(facts(), what)
        validate_event(event)
        assert event["type"] == f"project:one-off-job:{what}"
    assert job_event(facts(), "cancelled")["project"]["job"]["status"] == "ABORTED"
    event = pipeline_run_event(facts(), PipelineRunFacts(1, "r", RUN0.parameters, ("s1",)),
                               "failed")
    validate_event(event)
    pipeline_run = event["project"]["job"]["pipeline_run"]
    assert pipeline_run["failed_steps"] == [{"uuid": "s1", "title": "fetch"}]
    assert pipeline_run["parameters"] == {
        "pipeline_parameters": {"parameters": {"city": "Oslo"}},
        "s1": {"step": {"uuid": "s1", "title": "fetch"}, "parameters": {"n": 2}}}
    assert pipeline_run["number"] == 1 and pipeline_run["status"] == "FAILURE"
    assert pipeline_run["url_path"] == \
        "/orchest-jobs/ui/dags/orchest_job__weather__n/runs/manual__1"
    ok = pipeline_run_event(facts(), RUN0, "succeeded")
    assert "failed_steps" not in ok["project"]["job"]["pipeline_run"]


def test_cron_events_have_the_batch_layer():
    cron = facts(CRON)
    started = job_event(cron, "started")
    validate_event(started)
    assert started["type"] == "project:cron-job:run:started"
    assert started["project"]["job"]["run"] == {"status": "STARTED", "number": 2,
                                                "total_pipeline_runs": 4}
    event = pipeline_run_event(cron, RUN0, "cancelled", batch_status="FAILURE")
    validate_event(event)
    run = event["project"]["job"]["run"]
    assert run["status"] == "FAILURE" and run["pipeline_run"]["status"] == "ABORTED"
    assert run["pipeline_run"]["number_in_run"] == 1
    assert run["pipeline_run"]["number"] == 2 * 4 + 1


def test_event_ids_are_stable_and_a_clear_makes_new_ones():
    assert job_event(facts(), "started")["uuid"] == job_event(facts(), "started")["uuid"]
    assert job_event(facts(), "started")["uuid"] != \
        job_event(facts(clear_number=1), "started")["uuid"]


def hook(**extra) -> Webhook:
    values = dict(conn_id="alerts", url="http://127.0.0.1:1/hook", name="alerts",
                  secret="s3cret", subscriptions=(Subscription("project:one-off-job:failed"),))
    values.update(extra)
    return Webhook(**values)


def test_signature_is_hmac_sha256_of_the_exact_body():
    request = build_request(hook(), job_event(facts(), "failed"), "d-1")
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Hub-Signature"] == expected
    assert request.headers["X-Orchest-Event"] == "project:one-off-job:failed"
    assert request.headers["X-Orchest-Delivery"] == "d-1"
    assert request.headers["User-Agent"] == "Orchest"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert set(body) == {"delivered_for", "event"}
    assert set(body["delivered_for"]) == DELIVERED_FOR
    assert body["delivered_for"]["type"] == "webhook"
    assert "url" not in body["delivered_for"] and b"127.0.0.1" not in request.body
    validate_event(body["event"])
    unsigned = build_request(hook(secret=""), job_event(facts(), "failed"), "d-1")
    assert "X-Hub-Signature" not in unsigned.headers


def test_form_encoding_is_two_json_fields():
    request = build_request(hook(content_type=FORM), job_event(facts(), "failed"), "d-1")
    assert request.headers["Content-Type"] == FORM
    fields = parse_qs(request.body.decode(), strict_parsing=True)
    assert set(fields) == {"delivered_for", "event"}
    validate_event(json.loads(fields["event"][0]))
    assert set(json.loads(fields["delivered_for"][0])) == DELIVERED_FOR
    assert request.headers["X-Hub-Signature"] == hmac.new(
        b"s3cret", request.body, hashlib.sha256).hexdigest()
    slack_form = build_request(hook(content_type=FORM, url="https://hooks.slack.com/x"),
                               job_event(facts(), "failed"), "d")
    assert set(parse_qs(slack_form.body.decode())) == {"delivered_for", "event"}


@pytest.mark.parametrize("url", ["https://hooks.slack.com/services/T/B/x",
                                 "https://acme.webhook.office.com/webhookb2/x"])
def test_slack_and_teams_get_a_text_field(url):
    body = json.loads(build_request(hook(url=url), job_event(facts(), "failed"), "d").body)
    assert set(body) == {"delivered_for", "event", "text"}
    assert body["text"] == json.dumps({"delivered_for": body["delivered_for"],
                                       "event": body["event"]}, sort_keys=True, indent=1)


def test_discord_gets_content_cut_to_2000():
    url = "https://discord.com/api/webhooks/1/x"
    body = json.loads(build_request(hook(url=url), job_event(facts(), "started"), "d").body)
    assert set(body) == {"delivered_for", "event", "content"}
    big = pipeline_run_event(facts(), PipelineRunFacts(0, "r", {"s1": {
        f"p{i}": "x" * 50 for i in range(60)}}), "succeeded")
    body = json.loads(build_request(hook(url=url), big, "d").body)
    assert len(body["content"]) == 2000 and body["content"].endswith("...")
    assert set(body["delivered_for"]) == {"uuid", "name"}


def test_ping():
    event = ping_event()
    assert set(event) == {"type", "uuid", "timestamp"} and event["type"] == "ping"


def test_subscriptions_global_project_job():
    glob = Subscription("project:one-off-job:failed")
    proj = Subscription("project:one-off-job:failed", project="weather")
    job = Subscription("project:one-off-job:failed", project="weather", job="orchest_job__a")
    assert glob.matches("project:one-off-job:failed", "other", "x")
    assert not glob.matches("project:one-off-job:succeeded", "weather", "x")
    assert proj.matches("project:one-off-job:failed", "weather", "x")
    assert not proj.matches("project:one-off-job:failed", "other", "x")
    assert job.matches("project:one-off-job:failed", "weather", "orchest_job__a")
    assert not job.matches("project:one-off-job:failed", "weather", "orchest_job__b")


def test_connection_fields_are_checked_one_message_each():
    good = webhook_from_connection("c", "https://example.com/h?a=1", "pw", json.dumps(
        {"name": "n", "content_type": FORM, "verify_ssl": False,
         "subscriptions": [{"event_type": "project:cron-job:run:failed",
                            "project": "weather", "job": "orchest_job__weather__n"}]}))
    assert good.url == "https://example.com/h?a=1" and good.content_type == FORM
    assert good.domain == "https://example.com" and not good.verify_ssl
    # Orchest's other event types (an imported webhook has them) are kept, never sent.
    other = webhook_from_connection("c", "http://x", "", '{"subscriptions": '
                                    '[{"event_type": "project:environment:image-build:failed"}]}')
    assert other.subscriptions[0].event_type == "project:environment:image-build:failed"
    bad = [("ftp://x", "{}", "host"),
           ("http://x", "{nope", "extra"),
           ("http://x", '{"content_type": "text/plain"}', "extra.content_type"),
           ("http://x", '{"subscriptions": [{"event_type": "project:*"}]}',
            "extra.subscriptions[0].event_type"),
           ("http://x", '{"subscriptions": [{"event_type": 3}]}',
            "extra.subscriptions[0].event_type"),
           ("http://x", '{"subscriptions": [{"event_type": "project:one-off-job:failed", '
            '"job": "j"}]}', "extra.subscriptions[0].project")]
    for host, extra, field in bad:
        with pytest.raises(OrchestError) as info:
            webhook_from_connection("c", host, "", extra)
        [problem] = info.value.problems
        assert "'c'" in str(problem) and field in str(problem)
        assert "Traceback" not in str(problem)


def test_backoff_is_orchests():
    assert [backoff(n) for n in (1, 2, 3, 11, 12, 40)] == [2, 4, 8, 2048, 3600, 3600]
    d = Delivery("d", "e", "t", "c", {}, created_at=0, scheduled_at=0)
    d1 = d.failed("HTTP 500", now=100)
    assert (d1.attempts, d1.scheduled_at, d1.status) == (1, 102, "RESCHEDULED")
    assert d1.failed("x", now=200).scheduled_at == 204


def test_outbox_writes_each_delivery_once(tmp_path):
    outbox = Outbox(tmp_path)
    d = Delivery("d-1", "e", "t", "c", {"type": "t"}, created_at=1, scheduled_at=1)
    assert outbox.add(d) and not outbox.add(d)
    assert [x.delivery_id for x in outbox.due(now=2)] == ["d-1"] and not outbox.due(now=0)
    with outbox.claimed("d-1") as mine, outbox.claimed("d-1") as theirs:
        assert mine == d and theirs is None
    assert outbox.all()[0].attempts == 0  # parsed once, then cached by mtime and size
    outbox.reschedule(d, "HTTP 500", now=10)
    assert outbox.get("d-1").attempts == 1 and outbox.get("d-1").scheduled_at == 12
    assert outbox.all()[0].attempts == 1  # the cache sees the rewrite
    batch = Delivery("d-2", "e", "t", "c", {"type": "t"}, created_at=1, scheduled_at=1)
    assert outbox.add(batch, sync=False) and outbox._unsynced
    outbox.sync()
    assert not outbox._unsynced and outbox.get("d-2") == batch
    outbox.mark_delivered("d-2")
    outbox.mark_delivered("d-1")
    assert outbox.all() == [] and not outbox.add(d)  # a late duplicate adds nothing


def test_notices_emit_once_and_cron_run_failed_once(tmp_path):
    cron = facts(CRON)
    notices = JobRunNotices(tmp_path, cron.dag_id, cron.run_id)
    subs = [Subscriber("all", tuple(Subscription(t) for t in (
        "project:cron-job:run:failed", "project:cron-job:run:pipeline-run:failed"))),
            Subscriber("other", (Subscription("project:cron-job:run:failed", project="x"),))]
    notices.save(cron, subs)
    loaded, loaded_subs = notices.load()
    assert loaded == cron and loaded_subs == subs
    first = PipelineRunFacts(0, "r0", {}, ("s1",))
    second = PipelineRunFacts(3, "r3", {}, ("s2",))
    assert len(emit_run_event(notices, cron, subs, first, "failed")) == 2
    assert emit_run_event(notices, cron, subs, first, "failed") == []
    assert len(emit_run_event(notices, cron, subs, second, "failed")) == 1
    types = sorted(d.event_type for d in Outbox(tmp_path).all())
    assert types == ["project:cron-job:run:failed", "project:cron-job:run:pipeline-run:failed",
                     "project:cron-job:run:pipeline-run:failed"]
    assert all(d.conn_id == "all" for d in Outbox(tmp_path).all())
    for d in Outbox(tmp_path).all():
        validate_event(dict(d.event))
        if d.event_type.endswith("pipeline-run:failed"):
            assert d.event["project"]["job"]["run"]["status"] == "FAILURE"


def test_run_outcomes_from_task_states():
    states = {"snapshot": "success", "plan": "success", "finalize": "running",
              "pipeline_run.a_0": "success", "pipeline_run.b_0": "success",
              "pipeline_run.a_1": "failed", "pipeline_run.b_1": "upstream_failed",
              "pipeline_run.a_2": "success", "pipeline_run.b_2": "skipped",
              "pipeline_run.cleanup_2": "failed", "pipeline_run_2.a_0": "success",
              "pipeline_run_2.b_0": "success"}
    assert run_outcomes(states, 16) == {0: ("succeeded", []), 1: ("failed", ["a"]),
                                        2: ("cancelled", []), 16: ("succeeded", [])}


class Receiver:
    """A local receiver answering the statuses given, then 200; records every request."""

    def __init__(self, statuses=(), delay: float = 0.0):
        self.statuses, self.delay, self.requests = list(statuses), delay, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_delivery_retries_with_backoff_until_2xx(tmp_path):
    from airflow_orchest_jobs.webhooks.delivery import deliver_due

    receiver = Receiver([500, 503])
    try:
        outbox, webhook = Outbox(tmp_path), hook(url=receiver.url)
        event = job_event(facts(), "failed")
        outbox.add(Delivery("d-1", event["uuid"], event["type"], "alerts", event, 0, 0))
        resolve = {"alerts": webhook}.__getitem__
        assert deliver_due(tmp_path, resolve, now=100).failed == 1
        assert outbox.get("d-1").scheduled_at >= 100 and outbox.get("d-1").attempts == 1
        assert deliver_due(tmp_path, resolve, now=outbox.get("d-1").scheduled_at - 1
                           ).failed == 0  # not due yet
        deliver_due(tmp_path, resolve, now=outbox.get("d-1").scheduled_at)
        assert outbox.get("d-1").attempts == 2
        assert deliver_due(tmp_path, resolve, now=time.time() + 10).delivered == 1
        assert outbox.all() == [] and outbox.is_delivered("d-1")
        assert [h["X-Orchest-Delivery"] for h, _ in receiver.requests] == ["d-1"] * 3
        for headers, body in receiver.requests:
            assert headers["X-Hub-Signature"] == hmac.new(b"s3cret", body,
                                                          hashlib.sha256).hexdigest()
    finally:
        receiver.close()


def test_a_missing_connection_reschedules(tmp_path):
    from airflow_orchest_jobs.webhooks.delivery import deliver_due

    outbox = Outbox(tmp_path)
    outbox.add(Delivery("d-1", "e", "t", "gone", {"type": "t"}, 0, 0))

    def resolve(conn_id):
        raise LookupError(conn_id)

    assert deliver_due(tmp_path, resolve, now=1).failed == 1
    assert "cannot be read" in outbox.get("d-1").last_error


DRAINER = """
import sys, threading
from pathlib import Path
from airflow_orchest_jobs.core.notifications.webhook import Webhook
from airflow_orchest_jobs.webhooks import delivery
store, url = Path(sys.argv[1]), sys.argv[2]
hook = Webhook(conn_id="alerts", url=url, name="alerts", secret="s3cret")
delivery.drain_forever(lambda: store, lambda conn_id: hook, threading.Event(), interval=0.2)
"""


def test_pending_deliveries_survive_a_restart_of_the_delivering_process(tmp_path):
    """The loop the scheduler runs, killed (SIGKILL) while deliveries are pending and
    started again: every delivery arrives, each under its one delivery id."""
    import os
    import subprocess
    import sys

    receiver = Receiver([500] * 6)  # down for the first attempts
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    try:
        outbox = Outbox(tmp_path)
        for i in range(3):
            event = job_event(facts(run_id=f"r{i}"), "failed")
            outbox.add(Delivery(f"d-{i}", event["uuid"], event["type"], "alerts", event,
                                time.time(), time.time()))
        first = subprocess.Popen([sys.executable, "-c", DRAINER, str(tmp_path), receiver.url],
                                 env=env)
        deadline = time.monotonic() + 60
        while len(receiver.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        first.kill()
        first.wait()
        assert len(outbox.all()) == 3  # nothing answered 2xx yet: all still pending
        receiver.statuses.clear()
        second = subprocess.Popen([sys.executable, "-c", DRAINER, str(tmp_path), receiver.url],
                                  env=env)
        try:
            deadline = time.monotonic() + 60
            while outbox.all() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            second.kill()
            second.wait()
        assert outbox.all() == []
        delivered = {h["X-Orchest-Delivery"] for h, _ in receiver.requests}
        assert delivered == {"d-0", "d-1", "d-2"}
        last = {}
        for headers, body in receiver.requests:
            last[headers["X-Orchest-Delivery"]] = json.loads(body)["event"]["uuid"]
        assert len(set(last.values())) == 3  # one event per delivery id
    finally:
        receiver.close()


def test_pause_changes_are_seen_once_each():
    from airflow_orchest_jobs.core.notifications.events import cron_job_event
    from airflow_orchest_jobs.core.notifications.pauses import changes

    record, found = changes({}, {"a": False})
    assert found == []  # first seen: recorded only
    record, found = changes(record, {"a": True, "b": True})
    assert found == [("a", True, 1)]
    record, found = changes(record, {"a": True, "b": True})
    assert found == []
    record, found = changes(record, {"a": False, "b": True})
    assert found == [("a", False, 2)]
    event = cron_job_event(project="p", project_uuid="u", dag_id="a", job_name="j",
                           pipeline_name="P", total_runs=3, paused=True, serial=1)
    validate_event(event)
    assert event["type"] == "project:cron-job:paused"
    assert event["project"]["job"]["status"] == "PAUSED"
    assert event["uuid"] != cron_job_event(project="p", project_uuid="u", dag_id="a",
                                           job_name="j", pipeline_name="P", total_runs=3,
                                           paused=True, serial=3)["uuid"]
