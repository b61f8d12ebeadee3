"""Measures the Svix-compatible API on the real binary (figures in
docs/performance.md; not a CI check):

1. isolation: a healthy tenant's delivery lag (message create -> its receiver
   got it) at a steady rate, alone, then while a second tenant sends as many
   messages to five endpoints that fail every attempt (500 after 100 ms,
   retried every second);
2. throughput: messages created through the Svix API as fast as 16 clients
   can (Svix's Python SDK's request shape: POST /api/v1/app/{app}/msg with an
   idempotency-key), to one endpoint: acks/s, API latency, and how long until
   every message was delivered.

Usage: python isolation.py PATH/TO/hookgate [--rate 200] [--seconds 10] [--total 20000]
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "svix-measure-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


class Receiver:
    """Records when each message arrived (by its `sent` field); or fails."""

    def __init__(self, fail_after=None):
        self.arrivals = {}
        self.lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if fail_after is not None:
                    time.sleep(fail_after)
                    self.send_response(500)
                else:
                    p = json.loads(body)
                    with me.lock:
                        me.arrivals.setdefault(p["k"], time.time() - p["sent"])
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


class Api:
    """One keep-alive connection to the admin listener."""

    def __init__(self, admin):
        host, port = admin.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method, path, body=None):
        headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
        if method == "POST":
            headers["idempotency-key"] = f"auto_{uuid.uuid4()}"
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                # The listener closed an idle keep-alive connection: a new one.
                self.conn.close()
                if attempt == 2:
                    raise
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data) if data else None


def steady(admin, app, rate, seconds, tag):
    """Sends `rate` messages a second for `seconds` to `app`; returns their keys."""
    api = Api(admin)
    keys = []
    start = time.time()
    n = 0
    while time.time() - start < seconds:
        due = start + n / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        k = f"{tag}-{n}"
        api.call("POST", f"/api/v1/app/{app}/msg", {"eventType": "e", "payload": {"k": k, "sent": time.time()}})
        keys.append(k)
        n += 1
    return keys


def wait_all(rx, keys, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with rx.lock:
            if all(k in rx.arrivals for k in keys):
                return [rx.arrivals[k] * 1000 for k in keys]
        time.sleep(0.05)
    raise AssertionError("not every message arrived")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    ingest, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "hookgate.toml")
        with open(cfg, "w") as f:
            f.write(
                f'[server]\nlisten = "{ingest}"\nadmin_listen = "{admin}"\n'
                f'admin_tokens = ["{TOKEN}"]\nallow_private_destinations = true\n'
                f'[storage]\npath = "{d}/hg.db"\nmax_pending = 10000000\n'
            )
        proc = subprocess.Popen([args.binary, "serve", "--config", cfg], stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://{admin}/healthz", timeout=1)
                    break
                except Exception:
                    time.sleep(0.05)
            measure(admin, args)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def measure(admin, args):
    api = Api(admin)
    healthy = api.call("POST", "/api/v1/app", {"name": "healthy"})["id"]
    failing = api.call("POST", "/api/v1/app", {"name": "failing"})["id"]
    rx = Receiver()
    api.call("POST", f"/api/v1/app/{healthy}/endpoint", {"url": rx.url})
    bad = Receiver(fail_after=0.1)
    for _ in range(5):
        api.call("POST", f"/api/v1/app/{failing}/endpoint", {"url": bad.url, "retrySchedule": [1] * 20})

    results = {}
    alone = steady(admin, healthy, args.rate, args.seconds, "alone")
    results["alone"] = wait_all(rx, alone)
    noise = threading.Thread(target=steady, args=(admin, failing, args.rate, args.seconds + 2, "noise"))
    noise.start()
    time.sleep(1)
    beside = steady(admin, healthy, args.rate, args.seconds, "beside")
    noise.join()
    results["beside"] = wait_all(rx, beside)
    for name, lags in results.items():
        print(f"isolation {name:6}: {len(lags)} messages at {args.rate:.0f}/s, lag p50 {pct(lags, 50):.1f} ms, p99 {pct(lags, 99):.1f} ms")
    print(f"isolation ratio p99 beside/alone: {pct(results['beside'], 99) / pct(results['alone'], 99):.2f}")

    # Throughput through the API path, to one fast endpoint.
    app = api.call("POST", "/api/v1/app", {"name": "throughput"})["id"]
    rx2 = Receiver()
    api.call("POST", f"/api/v1/app/{app}/endpoint", {"url": rx2.url})
    per = args.total // args.clients
    latencies = []
    lock = threading.Lock()

    def client(c):
        mine = Api(admin)
        out = []
        for n in range(per):
            t = time.time()
            mine.call("POST", f"/api/v1/app/{app}/msg", {"eventType": "e", "payload": {"k": f"t{c}-{n}", "sent": t}})
            out.append((time.time() - t) * 1000)
        with lock:
            latencies.extend(out)

    start = time.time()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked = time.time() - start
    keys = [f"t{c}-{n}" for c in range(args.clients) for n in range(per)]
    wait_all(rx2, keys, timeout=600)
    delivered = time.time() - start
    total = per * args.clients
    print(f"throughput: {total} messages by {args.clients} clients: {total / acked:.0f} acks/s, "
          f"API p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms; "
          f"all delivered after {delivered:.1f} s = {total / delivered:.0f} messages/s ingest+delivery")


if __name__ == "__main__":
    main()
