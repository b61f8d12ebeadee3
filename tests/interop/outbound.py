"""Outbound interop: deliveries signed by hookgate verify with the official
Standard Webhooks and Svix libraries, also during a secret rotation (old and new
secret both verify in the grace period), and altered ones do not.

Usage: python outbound.py PATH/TO/hookgate
"""

import json
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks
import svix.webhooks

from gateway import free_port, running

TOKEN = "interop-admin-token"


class Receiver(BaseHTTPRequestHandler):
    got = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with Receiver.lock:
            Receiver.got.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def api(admin, method, path, body=None):
    req = urllib.request.Request(
        f"http://{admin}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def wait_for(n, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Receiver.lock:
            if len(Receiver.got) >= n:
                return list(Receiver.got)
        time.sleep(0.02)
    raise AssertionError(f"expected {n} deliveries, got {len(Receiver.got)}")


def verify_all(secret, headers, body):
    """Both official libraries must accept; returns nothing or raises."""
    standardwebhooks.Webhook(secret).verify(body, headers)
    svix.webhooks.Webhook(secret).verify(body, headers)


def refused(secret, headers, body):
    for lib in (standardwebhooks.Webhook(secret), svix.webhooks.Webhook(secret)):
        try:
            lib.verify(body, headers)
        except Exception:
            continue
        return False
    return True


def main():
    binary = sys.argv[1]
    rx = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    rx_url = f"http://127.0.0.1:{rx.server_address[1]}/hook"
    ingest, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as d, running(binary, d, (
        f'[server]\nlisten = "{ingest}"\nadmin_listen = "{admin}"\n'
        f'admin_tokens = ["{TOKEN}"]\nallow_private_destinations = true\n'
        f'[storage]\npath = "{d}/hg.db"\n'
    ), admin):
        try:
            st, dest = api(admin, "POST", "/api/v1/destinations",
                           {"name": "py", "url": rx_url, "event_types": ["*"]})
            assert st == 201, dest
            old = dest["signing_secret"]
            api(admin, "POST", "/api/v1/events", {"type": "contact.created", "payload": {"email": "a@example.com"}})
            (h, body), = wait_for(1)
            verify_all(old, h, body)
            assert refused(old, h, body + b" "), "an altered body must not verify"
            st, rot = api(admin, "POST", "/api/v1/destinations/py/rotate-secret", {"grace": "1h"})
            new = rot["signing_secret"]
            api(admin, "POST", "/api/v1/events", {"type": "contact.updated", "payload": {"n": 2}})
            h, body = wait_for(2)[1]
            assert len(h["webhook-signature"].split(" ")) == 2
            verify_all(old, h, body)
            verify_all(new, h, body)
            assert refused("whsec_" + "A" * 32, h, body), "another secret must not verify"
            print("outbound interop: standardwebhooks and svix verify hookgate's signatures, before and during a rotation")
        finally:
            rx.shutdown()


if __name__ == "__main__":
    main()
