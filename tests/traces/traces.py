"""Traces end to end: the real binary with `[telemetry] otlp_endpoint` set,
an OTLP/HTTP receiver (otlp_receiver.py, OpenTelemetry's protobuf messages)
and a destination that records the headers it gets.

1. A webhook sent with a `traceparent` and `tracestate` is delivered; the
   destination's `traceparent` has the sent trace id and the attempt span as
   its parent; the spans `ingest` (child of the sent span), `verify` and
   `store.commit` (children of `ingest`), `delivery.attempt` (child of
   `ingest`) and `store.lease` (linked to the message's trace) arrive.
2. A webhook whose delivery waits (a route `delay`) is stored, the gateway is
   stopped and started again, and the attempt made by the second process is
   still a child of the first process's `ingest` span.
3. A webhook without a `traceparent` starts a trace of its own, continued the
   same way.

Usage: python traces.py PATH/TO/hookgate
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from otlp_receiver import Receiver  # noqa: E402

TOKEN = "traces-admin-token"
SOURCE_TOKEN = "traces-source-token"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Destination(BaseHTTPRequestHandler):
    got = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with Destination.lock:
            Destination.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def poll(what, f, timeout=15.0):
    """f() until it returns something true, at most `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def delivered(body):
    with Destination.lock:
        return next((h for h, b in Destination.got if b == body), None)


class Gateway:
    def __init__(self, binary, cfg, log):
        self.binary, self.cfg, self.log = binary, cfg, log
        self.admin = None
        self.proc = None

    def start(self, admin):
        self.admin = admin
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.cfg],
            stderr=open(self.log, "a"),
        )

        def healthy():
            try:
                urllib.request.urlopen(f"http://{self.admin}/healthz", timeout=1)
                return True
            except Exception:
                assert self.proc.poll() is None, open(self.log).read()
                return False

        poll("the gateway to start", healthy)

    def stop(self):
        """SIGTERM, and the exit: the last spans are exported on the way out."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        assert code == 0, f"exit code {code}: {open(self.log).read()}"


def post(ingest, path, body, headers):
    req = urllib.request.Request(
        f"http://{ingest}{path}",
        method="POST",
        data=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {SOURCE_TOKEN}", **headers},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.status
        return r.headers["hookgate-message-id"]


def spans_of_trace(rx, trace_id, names):
    """The spans of `trace_id` by name, once each of `names` is there."""
    spans = [s for s in rx.spans() if s["trace_id"] == trace_id]
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    return by_name if all(n in by_name for n in names) else None


def one(by_name, name):
    assert len(by_name[name]) == 1, (name, by_name[name])
    return by_name[name][0]


def check_message_trace(rx, trace_id, parent_span, dest_headers, message_id, source="app"):
    names = ["ingest", "verify", "store.commit", "delivery.attempt"]
    by_name = poll(f"the spans of trace {trace_id}", lambda: spans_of_trace(rx, trace_id, names))
    ingest = one(by_name, "ingest")
    verify = one(by_name, "verify")
    commit = one(by_name, "store.commit")
    attempt = one(by_name, "delivery.attempt")
    if parent_span is None:
        assert ingest["parent_span_id"] == "", ingest
    else:
        assert ingest["parent_span_id"] == parent_span, (ingest, parent_span)
    for child in (verify, commit, attempt):
        assert child["parent_span_id"] == ingest["span_id"], (child, ingest)
    # Children start within their parent.
    for child in (verify, commit):
        assert ingest["start_ns"] <= child["start_ns"] <= child["end_ns"] <= ingest["end_ns"], child
    assert ingest["attributes"]["hookgate.source"] == source, ingest
    assert ingest["attributes"]["hookgate.outcome"] == "stored", ingest
    assert ingest["attributes"]["http.response.status_code"] == 200, ingest
    assert ingest["attributes"]["hookgate.message_id"] == message_id, ingest
    assert ingest["resource"]["service.name"] == "hookgate-traces-check", ingest["resource"]
    assert attempt["attributes"]["hookgate.message_id"] == message_id, attempt
    assert attempt["attributes"]["hookgate.attempt"] == 1, attempt
    assert attempt["attributes"]["http.response.status_code"] == 200, attempt
    assert attempt["attributes"]["hookgate.outcome"] == "delivered", attempt
    assert isinstance(attempt["attributes"]["hookgate.delivery_id"], int), attempt
    # What the destination got: the same trace, the attempt as the parent.
    m = TRACEPARENT.match(dest_headers["traceparent"])
    assert m, dest_headers["traceparent"]
    assert m.group(1) == trace_id, (m.group(1), trace_id)
    assert m.group(2) == attempt["span_id"], (m.group(2), attempt["span_id"])
    assert m.group(3) == "01", "sampled"
    assert "hookgate-traceparent" not in dest_headers, "the stored context is never forwarded"
    # The lease that handed the delivery over is linked to the message's trace.
    leases = [
        s for s in rx.spans()
        if s["name"] == "store.lease" and any(l["trace_id"] == trace_id for l in s["links"])
    ]
    assert leases, "a store.lease span linked to the trace"
    assert all(l["attributes"]["hookgate.count"] >= 1 for l in leases), leases
    assert leases[0]["attributes"]["hookgate.destination"] in ("svc", "later"), leases
    return ingest, attempt


def main():
    binary = sys.argv[1]
    dest = ThreadingHTTPServer(("127.0.0.1", 0), Destination)
    threading.Thread(target=dest.serve_forever, daemon=True).start()
    dest_url = f"http://127.0.0.1:{dest.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as d:
        rx = Receiver(os.path.join(d, "spans.jsonl"))
        otlp_port = rx.start()
        ingest, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        cfg = os.path.join(d, "hookgate.toml")
        with open(cfg, "w") as f:
            f.write(f"""
[server]
listen = "{ingest}"
admin_listen = "{admin}"
admin_tokens = ["{TOKEN}"]
shutdown_grace = "2s"

[storage]
path = "{d}/hg.db"

[telemetry]
otlp_endpoint = "http://127.0.0.1:{otlp_port}"
sample_ratio = 1.0
service_name = "hookgate-traces-check"

[[sources]]
name = "app"
verify = {{ type = "bearer", secret = "{SOURCE_TOKEN}" }}

[[sources]]
name = "slow"
verify = {{ type = "bearer", secret = "{SOURCE_TOKEN}" }}

[[destinations]]
name = "svc"
url = "{dest_url}"

[[destinations]]
name = "later"
url = "{dest_url}"

[[routes]]
source = "app"
to = "svc"

[[routes]]
source = "slow"
to = "later"
delay = "3s"
""")
        gw = Gateway(binary, cfg, os.path.join(d, "log"))
        gw.start(admin)

        # 1. A trace continued from the provider to the destination.
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        body1 = b'{"n":1}'
        id1 = post(ingest, "/in/app", body1, {
            "traceparent": f"00-{trace_id}-{parent}-01",
            "tracestate": "provider=abc",
        })
        h1 = poll("the first delivery", lambda: delivered(body1))
        assert h1.get("tracestate") == "provider=abc", h1

        # 3. No traceparent: a new trace, continued the same way.
        body3 = b'{"n":3}'
        id3 = post(ingest, "/in/app", body3, {})
        h3 = poll("the third delivery", lambda: delivered(body3))

        # 2. Stored before a restart, delivered after it.
        trace2, parent2 = secrets.token_hex(16), secrets.token_hex(8)
        body2 = b'{"n":2}'
        id2 = post(ingest, "/in/slow", body2, {"traceparent": f"00-{trace2}-{parent2}-01"})
        gw.stop()
        assert delivered(body2) is None, "the delayed delivery waits for the restart"
        gw.start(admin)
        h2 = poll("the delivery after the restart", lambda: delivered(body2))
        gw.stop()

        check_message_trace(rx, trace_id, parent, h1, id1)
        print(f"traces: trace {trace_id} runs from the sender through ingest, verify, store.commit, store.lease and delivery.attempt to the destination")

        check_message_trace(rx, trace2, parent2, h2, id2, source="slow")
        print("traces: an attempt made after a restart continues the trace of the message's ingest span")

        trace3 = TRACEPARENT.match(h3["traceparent"]).group(1)
        assert trace3 not in (trace_id, trace2)
        check_message_trace(rx, trace3, None, h3, id3)
        print("traces: a webhook without traceparent starts its own trace, continued to the destination")
        print(f"traces: {len(rx.spans())} spans in {rx.requests} OTLP requests")
        rx.stop()
    dest.shutdown()


if __name__ == "__main__":
    main()
