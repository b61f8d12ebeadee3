"""The Svix-compatible API through Svix's official Python client, unchanged,
with its server_url pointed at the real binary.

Three applications, their event types and nine endpoints (local receivers
that verify every delivery with svix.webhooks.Webhook); 1,000 messages across
them; every listing paged to its end; a resend; a secret rotation; recovery
after an endpoint's outage; and a tenant token that cannot reach another
tenant's message (404), revoked by logout (401).

Usage: python svix_client.py PATH/TO/hookgate
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import svix.webhooks
from svix.api import (
    ApplicationIn,
    AppPortalAccessIn,
    EndpointIn,
    EndpointSecretRotateIn,
    EventTypeIn,
    MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions,
    MessageIn,
    MessageListOptions,
    RecoverIn,
    Svix,
    SvixOptions,
)
from svix.api.errors.http_error import HttpError

TOKEN = "svix-client-admin-token"
MESSAGES = 1000
EVENT_TYPES = ["order.created", "order.paid", "user.signup"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoint:
    """A receiver on 127.0.0.1 that verifies every delivery with Svix's
    Webhook class against the secrets it is told, and can be made to fail."""

    def __init__(self, app, name):
        self.app, self.name = app, name
        self.secrets = []
        self.got = []  # (svix-id, payload)
        self.bad = []
        self.failing = False
        self.lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with me.lock:
                    failing, secrets = me.failing, list(me.secrets)
                if failing:
                    self.send_response(500)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                ok = False
                for secret in secrets:
                    try:
                        svix.webhooks.Webhook(secret).verify(body, headers)
                        payload = json.loads(body)
                        ok = True
                        break
                    except Exception:
                        continue
                with me.lock:
                    if ok:
                        me.got.append((headers["svix-id"], payload))
                    else:
                        me.bad.append(headers)
                self.send_response(204 if ok else 400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self):
        with self.lock:
            return [i for i, _ in self.got]


def wait(what, cond, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def page_all(fetch):
    """Every item of a listing, following `iterator` until `done`."""
    items, iterator, pages = [], None, 0
    while True:
        page = fetch(iterator)
        items.extend(page.data)
        pages += 1
        if page.done:
            return items, pages
        assert page.iterator, "a page that is not the last gives an iterator"
        iterator = page.iterator


def status_of(call):
    try:
        call()
    except HttpError as e:
        return e.status_code
    return 200


def main():
    binary = sys.argv[1]
    ingest, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "hookgate.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[server]\nlisten = "{ingest}"\nadmin_listen = "{admin}"\n'
                f'admin_tokens = ["{TOKEN}"]\nallow_private_destinations = true\n'
                f'[storage]\npath = "{d}/hg.db"\n'
            )
        log = open(os.path.join(d, "log"), "w")
        proc = subprocess.Popen([binary, "serve", "--config", cfg], stderr=log)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://{admin}/healthz", timeout=1)
                    break
                except Exception:
                    time.sleep(0.05)
            run(f"http://{admin}")
        except BaseException:
            log.flush()
            print(open(os.path.join(d, "log")).read()[-4000:], file=sys.stderr)
            raise
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def run(server):
    client = Svix(TOKEN, SvixOptions(server_url=server))
    client.health.get()

    for et in EVENT_TYPES:
        client.event_type.create(EventTypeIn(name=et, description=f"{et} happened"))
    names = {e.name for e in page_all(lambda it: client.event_type.list())[0]}
    assert set(EVENT_TYPES) <= names, names

    apps = []
    for i in range(3):
        app = client.application.create(ApplicationIn(name=f"Customer {i}", uid=f"customer-{i}"))
        assert app.id.startswith("app_") and app.uid == f"customer-{i}"
        apps.append(app)
    # The uid is an alias of the id.
    assert client.application.get("customer-1").id == apps[1].id
    listed, _ = page_all(lambda it: client.application.list())
    assert {a.id for a in apps} <= {a.id for a in listed}

    # Per application: every event type; order events only; channel "vip" only.
    endpoints = {}
    for app in apps:
        specs = [
            ("all", EndpointIn(url="", description="everything")),
            ("orders", EndpointIn(url="", event_types=["order.created", "order.paid"])),
            ("vip", EndpointIn(url="", channels=["vip"], uid=f"vip-{app.uid}")),
        ]
        for name, spec in specs:
            rx = Endpoint(app.id, name)
            spec.url = rx.url
            ep = client.endpoint.create(app.id, spec)
            assert ep.id.startswith("ep_")
            rx.id = ep.id
            rx.secrets.append(client.endpoint.get_secret(app.id, ep.id).key)
            endpoints[(app.id, name)] = rx
    assert len(endpoints) == 9
    got = client.endpoint.get(apps[0].id, f"vip-{apps[0].uid}")
    assert got.channels == ["vip"], got

    expected = {k: set() for k in endpoints}
    sent = {app.id: [] for app in apps}
    started = time.time()
    for n in range(MESSAGES):
        app = apps[n % 3]
        et = EVENT_TYPES[n % len(EVENT_TYPES)]
        channels = ["vip"] if n % 5 == 0 else None
        msg = client.message.create(
            app.id,
            MessageIn(event_type=et, payload={"n": n, "app": app.id}, channels=channels),
        )
        assert msg.id.startswith("msg_")
        sent[app.id].append(msg.id)
        expected[(app.id, "all")].add(msg.id)
        if et.startswith("order."):
            expected[(app.id, "orders")].add(msg.id)
        if channels:
            expected[(app.id, "vip")].add(msg.id)
    send_s = time.time() - started

    for key, rx in endpoints.items():
        wait(f"deliveries to {key}", lambda rx=rx, key=key: expected[key] <= set(rx.ids()))
    delivered_s = time.time() - started
    for key, rx in endpoints.items():
        assert not rx.bad, f"{key}: deliveries that did not verify: {rx.bad[:1]}"
        # Exactly what was routed there: nothing of another tenant, type or channel.
        assert set(rx.ids()) == expected[key], key
        assert all(p["app"] == key[0] for _, p in rx.got), key
    total = sum(len(v) for v in expected.values())
    print(f"{MESSAGES} messages sent in {send_s:.1f} s; {total} deliveries verified in {delivered_s:.1f} s")

    # Listings to their end.
    for app in apps:
        msgs, pages = page_all(
            lambda it, app=app: client.message.list(app.id, MessageListOptions(limit=50, iterator=it))
        )
        assert sorted(m.id for m in msgs) == sorted(sent[app.id]), app.id
        assert pages > 1
    app0, rx0 = apps[0], endpoints[(apps[0].id, "all")]
    attempts, pages = page_all(
        lambda it: client.message_attempt.list_by_endpoint(
            app0.id, rx0.id, MessageAttemptListByEndpointOptions(limit=40, iterator=it)
        )
    )
    assert pages > 1
    assert {a.msg_id for a in attempts} == expected[(app0.id, "all")]
    assert all(a.status == 0 and a.response_status_code == 204 for a in attempts)
    first = sent[app0.id][0]
    by_msg, _ = page_all(
        lambda it: client.message_attempt.list_by_msg(
            app0.id, first, MessageAttemptListByMsgOptions(iterator=it)
        )
    )
    assert {a.endpoint_id for a in by_msg} >= {rx0.id}, by_msg
    one = client.message_attempt.get(app0.id, first, by_msg[0].id)
    assert one.msg_id == first

    # Resend: the endpoint gets the message once more.
    before = rx0.ids().count(first)
    client.message_attempt.resend(app0.id, first, rx0.id)
    wait("the resent message", lambda: rx0.ids().count(first) == before + 1)

    # Rotation: deliveries after it verify with the new secret.
    rotated = client.endpoint.rotate_secret(app0.id, rx0.id, EndpointSecretRotateIn())
    new_secret = client.endpoint.get_secret(app0.id, rx0.id).key
    assert new_secret == rotated.key and new_secret not in rx0.secrets
    rx0.secrets = [new_secret]
    after = client.message.create(app0.id, MessageIn(event_type="user.signup", payload={"after": "rotation", "app": app0.id}))
    wait("a delivery signed with the new secret", lambda: after.id in rx0.ids())
    assert not rx0.bad

    # Outage and recovery: an endpoint with a short retry schedule (hookgate's
    # extra field) fails until its messages are dead, then comes back.
    app1 = apps[1]
    down = Endpoint(app1.id, "down")
    down.failing = True
    req = urllib.request.Request(
        f"{server}/api/v1/app/{app1.id}/endpoint",
        method="POST",
        data=json.dumps({"url": down.url, "eventTypes": ["user.signup"], "retrySchedule": [1]}).encode(),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        down.id = json.loads(r.read())["id"]
    down.secrets.append(client.endpoint.get_secret(app1.id, down.id).key)
    outage_start = datetime.now(timezone.utc)
    lost = [
        client.message.create(app1.id, MessageIn(event_type="user.signup", payload={"k": k, "app": app1.id})).id
        for k in range(5)
    ]
    wait("the outage's messages to fail", lambda: client.endpoint.get_stats(app1.id, down.id).fail == 5, 60)
    failed = client.message_attempt.list_by_endpoint(app1.id, down.id).data
    assert failed and all(a.status == 2 and a.response_status_code == 500 for a in failed)
    down.failing = False
    client.endpoint.recover(app1.id, down.id, RecoverIn(since=outage_start))
    wait("recovered messages", lambda: set(lost) <= set(down.ids()), 60)
    assert client.endpoint.get_stats(app1.id, down.id).success == 5

    # A tenant token reaches its own application only.
    access = client.authentication.app_portal_access(app0.id, AppPortalAccessIn())
    tenant = Svix(access.token, SvixOptions(server_url=server))
    assert tenant.message.get(app0.id, first).id == first
    other = sent[apps[1].id][0]
    assert status_of(lambda: tenant.message.get(apps[1].id, other)) == 404
    assert status_of(lambda: tenant.message.get(app0.id, other)) == 404
    assert status_of(lambda: tenant.application.get(apps[2].id)) == 404
    assert [a.id for a in tenant.application.list().data] == [app0.id]
    tenant.authentication.logout()
    assert status_of(lambda: tenant.message.get(app0.id, first)) == 401
    print("svix client: ok")


if __name__ == "__main__":
    main()
