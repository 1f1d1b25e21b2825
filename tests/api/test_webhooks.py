"""Webhooks: signed by the Standard Webhooks scheme (verified here with the reference `standardwebhooks`
package), delivered when an async job ends, retried with backoff, refused for private addresses."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from tests.api.helpers import SMALL, set_plan, set_workspace
from tests.support import wait_until as wait_for


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []
    fail_first = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        failing = len(Receiver.received) <= Receiver.fail_first
        self.send_response(500 if failing else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver():
    Receiver.received, Receiver.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/image-studio"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hooks(client, engine, user_and_key, auth):
    """A key with a webhook secret, on a roomy plan, on an install that allows its intranet (127.0.0.1)."""
    set_plan(engine, user_and_key[0])
    set_workspace(engine, user_and_key[0], credits=100)
    engine.webhooks.allow_private = True
    engine.webhooks.retry_delays_s = (0.2, 0.2, 0.2)
    created = client.post("/api/v1/webhooks", headers=auth, json={})
    assert created.status_code == 200, created.text
    return created.json()["data"]["secret"]



def verified(secret: str, index: int = -1) -> dict:
    headers, body = Receiver.received[index]
    return Webhook(secret).verify(body, headers)  # raises on a bad signature or a stale timestamp


def test_a_job_that_succeeds_is_delivered_signed(client, auth, hooks, receiver):
    secret = hooks
    assert secret.startswith("whsec_")
    accepted = client.post("/api/v1/generate", headers=auth, json={"prompt": "hooked", **SMALL, "async": True,
                                                                   "callback_url": receiver})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["data"]["job_id"]
    assert wait_for(lambda: Receiver.received)
    event = verified(secret)
    assert event["type"] == "job.succeeded" and event["data"]["job_id"] == job_id
    assert event["data"]["status"] == "succeeded" and event["data"]["result"]["prompt"] == "hooked"
    assert client.get(event["data"]["result"]["image_url"].replace("http://testserver", "")).status_code == 200
    headers = Receiver.received[-1][0]
    assert headers["webhook-id"].startswith("msg_") and headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception):  # noqa: B017  (the reference library's own error type)
        Webhook("whsec_" + "A" * 32).verify(Receiver.received[-1][1], headers)


def test_a_job_that_fails_is_delivered_too(client, auth, hooks, receiver, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("the pipeline broke")

    monkeypatch.setattr("engine.generation.jobs.run_pipeline", broken)
    client.post("/api/v1/image-studio", headers=auth, json={"prompt": "doomed", "model": "tiny-sd",
                                                            "aspect_ratio": "1:1", "async": True,
                                                            "callback_url": receiver})
    assert wait_for(lambda: Receiver.received)
    event = verified(hooks)
    assert event["type"] == "job.failed" and event["data"]["status"] == "failed"
    assert "internal error" in event["data"]["error"] and "pipeline broke" not in event["data"]["error"]


def test_a_receiver_that_fails_twice_gets_it_on_the_third_try(client, auth, hooks, receiver):
    Receiver.fail_first = 2
    client.post("/api/v1/generate", headers=auth, json={"prompt": "retried", **SMALL, "async": True,
                                                        "callback_url": receiver})
    assert wait_for(lambda: len(Receiver.received) >= 3)
    ids = {headers["webhook-id"] for headers, _ in Receiver.received}
    assert len(ids) == 1 and verified(hooks)["type"] == "job.succeeded"  # the same message, retried
    assert wait_for(lambda: client.get("/api/v1/webhooks/deliveries", headers=auth).json()["data"][
        "deliveries"][0]["status"] == "delivered")
    delivery = client.get("/api/v1/webhooks/deliveries", headers=auth).json()["data"]["deliveries"][0]
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 204 and delivery["event"] == "job.succeeded"
    logged = [entry for entry in client.get("/api/v1/logs", headers=auth).json()["data"]["logs"]
              if entry["method"] == "WEBHOOK"]
    assert [entry["status"] for entry in logged] == [204, 500, 500]  # newest first


def test_a_default_url_per_key(client, auth, engine, user_and_key, receiver):
    set_plan(engine, user_and_key[0])
    engine.webhooks.allow_private = True
    secret = client.post("/api/v1/webhooks", headers=auth, json={"url": receiver}).json()["data"]["secret"]
    client.post("/api/v1/generate", headers=auth, json={"prompt": "by default", **SMALL, "async": True})
    assert wait_for(lambda: Receiver.received)
    assert verified(secret)["data"]["result"]["prompt"] == "by default"


def test_private_addresses_and_misuse_are_refused(client, auth, engine, user_and_key, receiver):
    set_plan(engine, user_and_key[0])
    assert client.post("/api/v1/webhooks", headers=auth, json={}).status_code == 200
    for url in (receiver, "http://10.0.0.7/hook", "http://169.254.169.254/latest", "file:///etc/passwd"):
        response = client.post("/api/v1/generate", headers=auth, json={"prompt": "x", **SMALL, "async": True,
                                                                       "callback_url": url})
        assert response.status_code == 400 and response.json()["error"]["field"] == "callback_url", response.text
    sync = client.post("/api/v1/generate", headers=auth, json={"prompt": "x", **SMALL, "callback_url": receiver})
    assert sync.status_code == 400 and "async" in sync.json()["error"]["message"]
    assert client.post("/api/v1/webhooks", headers=auth, json={"url": "http://10.0.0.7/"}).status_code == 400
    assert Receiver.received == []


def test_an_unreadable_secret_fails_the_delivery_not_the_sender(client, auth, hooks, receiver, engine):
    from engine.data.db import session_scope
    from engine.data.tables import ApiKey

    with session_scope(engine.db) as session:  # as if the server secret had changed since
        for key in session.query(ApiKey).all():
            key.webhook_secret = "enc:v1:not-decryptable"
            session.add(key)
        session.commit()
    client.post("/api/v1/generate", headers=auth, json={"prompt": "lost", **SMALL, "async": True,
                                                        "callback_url": receiver})
    assert wait_for(lambda: (client.get("/api/v1/webhooks/deliveries", headers=auth).json()["data"]["deliveries"]
                             or [{}])[0].get("last_error"))
    delivery = client.get("/api/v1/webhooks/deliveries", headers=auth).json()["data"]["deliveries"][0]
    assert "can't be decrypted" in delivery["last_error"] and Receiver.received == []
    assert engine.webhooks._thread.is_alive()
