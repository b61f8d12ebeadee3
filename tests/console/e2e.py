"""Browser tests of the web console: the real `hookgate` binary on free
loopback ports, a small receiver whose answers the tests switch from failing to
succeeding, and Debian's Chromium driven by Playwright.

Usage: python e2e.py PATH/TO/hookgate [SCREENSHOT_DIR]

Exits non-zero when a check fails; prints "N passed, N failed" at the end.
Waits are on state (Playwright's auto-waiting `expect`, or the admin API polled
until it shows what a step needs), never a fixed sleep.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from playwright.sync_api import expect, sync_playwright

ADMIN_TOKEN = "e2e-admin-token"
READ_TOKEN = "e2e-read-token"
SIGNATURE = "sha256=e2e-very-secret-signature"
TWILIO_TOKEN = "e2e-twilio-auth-token"
TWILIO_URL = "https://hooks.example.test/sms"
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver(BaseHTTPRequestHandler):
    """Answers each path as `answers[path]` says; counts the 2xx it gave."""

    lock = threading.Lock()
    answers = {
        "/app": (422, "invalid payload: field <amount> is missing"),
        "/batch": (410, "gone for now"),
        "/hooks": (200, "ok"),
        "/runtime": (200, "ok"),
    }
    delivered = {"/app": 0, "/batch": 0}

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        with Receiver.lock:
            status, body = Receiver.answers.get(self.path, (404, "no such path"))
            if 200 <= status < 300:
                Receiver.delivered[self.path] = Receiver.delivered.get(self.path, 0) + 1
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def set_answer(path, status, body):
    with Receiver.lock:
        Receiver.answers[path] = (status, body)


def delivered(path):
    with Receiver.lock:
        return Receiver.delivered.get(path, 0)


class Gateway:
    def __init__(self, binary, receiver_port):
        self.dir = tempfile.TemporaryDirectory()
        self.ingest = f"127.0.0.1:{free_port()}"
        self.admin = f"127.0.0.1:{free_port()}"
        config = os.path.join(self.dir.name, "hookgate.toml")
        with open(config, "w") as f:
            f.write(
                f"""[server]
listen = "{self.ingest}"
admin_listen = "{self.admin}"
admin_tokens = ["{ADMIN_TOKEN}"]
admin_read_tokens = ["{READ_TOKEN}"]
shutdown_grace = "2s"
allow_private_destinations = true

[storage]
path = "{os.path.join(self.dir.name, 'hookgate.db')}"

[[sources]]
name = "shop"

[[sources]]
name = "batch"

[[sources]]
name = "sms"
verify = {{ type = "twilio", secret = "{TWILIO_TOKEN}", url = "{TWILIO_URL}" }}

[[sources]]
name = "gh"
verify = {{ type = "github", secret = "e2e-github-secret" }}

[[sources]]
name = "watch"

[[destinations]]
name = "app"
url = "http://127.0.0.1:{receiver_port}/app"

[[destinations]]
name = "batch"
url = "http://127.0.0.1:{receiver_port}/batch"

[[routes]]
source = "shop"
to = "app"

[[routes]]
source = "batch"
to = "batch"

[[destinations]]
name = "hooks"
url = "http://127.0.0.1:{receiver_port}/hooks"

[[routes]]
source = "gh"
to = "hooks"
"""
            )
        self.log = open(os.path.join(self.dir.name, "hookgate.log"), "w+")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", config], stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hookgate exited early:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.admin}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"hookgate did not start:\n{self.log_text()}")
            time.sleep(0.05)

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()

    @property
    def url(self):
        return f"http://{self.admin}"

    def send(self, source, body, headers=None):
        req = urllib.request.Request(
            f"http://{self.ingest}/in/{source}",
            data=body.encode(),
            method="POST",
            headers={"content-type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status
            return r.headers["hookgate-message-id"]

    def send_refused(self, source, body, headers):
        """Sends a request the gateway must refuse; returns the status."""
        req = urllib.request.Request(
            f"http://{self.ingest}/in/{source}", data=body.encode(), method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raise AssertionError(f"accepted with {r.status}")
        except urllib.error.HTTPError as e:
            return e.code

    def api(self, path):
        req = urllib.request.Request(
            f"http://{self.admin}{path}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def until(self, what, check, timeout=20.0):
        """Polls the API until `check()` is true: waiting on state, not time."""
        deadline = time.time() + timeout
        while not check():
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def message_status(self, id):
        return self.api(f"/api/v1/messages/{id}")["status"]

    def destination(self, name):
        return next(d for d in self.api("/api/v1/destinations")["data"] if d["name"] == name)


class Run:
    def __init__(self, gw, browser, shots):
        self.gw = gw
        self.browser = browser
        self.shots = shots
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        self.ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.url)
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(15000)
        expect.set_options(timeout=15000)
        self.dialogs = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.first_id = None

    def login(self, page, token):
        page.goto(f"{self.gw.url}/login")
        self.fill_login(page, token)

    def fill_login(self, page, token):
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Log in").click()

    # --- the checks, in order -------------------------------------------------

    def security_headers_and_login(self):
        p = self.page
        r = p.goto(f"{self.gw.url}/messages")
        # Not logged in: the login form.
        expect(p).to_have_url(f"{self.gw.url}/login?next=%2Fmessages")
        h = r.all_headers()
        csp = h["content-security-policy"]
        for part in ["default-src 'none'", "script-src 'self'", "style-src 'self'",
                     "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]:
            assert part in csp, csp
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        # A wrong token is refused.
        self.fill_login(p, "wrong-token")
        expect(p.get_by_role("alert")).to_have_text("That token is not accepted.")
        assert "wrong-token" not in p.content()
        # The right one logs in, back to where we were going.
        self.fill_login(p, ADMIN_TOKEN)
        expect(p).to_have_url(f"{self.gw.url}/messages")
        expect(p.get_by_role("heading", name="Messages")).to_be_visible()
        cookie = next(c for c in self.ctx.cookies() if c["name"] == "hookgate_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/", cookie

    def message_arrives_live(self):
        p = self.page
        p.goto(f"{self.gw.url}/messages")
        p.evaluate("window.__notReloaded = true")
        id = self.gw.send(
            "shop",
            json.dumps({"order": 1, "amount": None}),
            {"x-hub-signature-256": SIGNATURE, "authorization": "Bearer e2e-bearer-secret"},
        )
        self.first_id = id
        row = p.locator(f"tbody tr[data-id='{id}']")
        expect(row).to_be_visible()
        expect(row.get_by_role("link", name=id)).to_be_visible()
        expect(p.locator("#live")).to_have_text("1 new row.")
        assert p.evaluate("window.__notReloaded") is True, "the page was reloaded"
        # Header cells and the search box are there by role and name.
        expect(p.get_by_role("columnheader", name="Status")).to_be_visible()
        expect(p.get_by_role("searchbox", name="Search")).to_be_visible()
        # Status shown as text, and updated live too.
        self.gw.until("the attempt to fail", lambda: self.gw.message_status(id) == "dead")
        expect(row.get_by_text("dead", exact=True)).to_be_visible()

    def sources_page(self):
        p = self.page
        p.get_by_role("link", name="Sources").click()
        row = p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="shop", exact=True))
        expect(row.get_by_role("cell").nth(0)).to_have_text(f"http://{self.gw.ingest}/in/shop")
        expect(row.get_by_role("cell").nth(1)).to_have_text("none: anyone can send")
        expect(row.get_by_role("cell").nth(2)).to_have_text("1")
        p.get_by_role("link", name="Messages").click()

    def rejected_twilio_request_with_its_reason(self):
        """A Twilio request signed over the URL hookgate listens on instead of the
        public URL Twilio was given: refused, and the Rejected page says why."""
        p = self.page
        with open(os.path.join(FIXTURES, "twilio-sms-received.json")) as f:
            form = json.load(f)["body"]
        signed_url = f"http://{self.gw.ingest}/in/sms"
        text = signed_url + "".join(k + v for k, v in sorted(urllib.parse.parse_qsl(form)))
        sig = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), text.encode(), hashlib.sha1).digest()).decode()
        status = self.gw.send_refused(
            "sms", form, {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": sig}
        )
        assert status == 401, status
        p.get_by_role("link", name="Rejected").click()
        expect(p.get_by_role("heading", name="Rejected requests")).to_be_visible()
        p.get_by_label("Source").select_option("sms")
        p.get_by_role("button", name="Filter").click()
        expect(p).to_have_url(f"{self.gw.url}/rejected?source=sms")
        row = p.locator("#rejected-list tbody tr.rejected").first
        expect(row.get_by_text("401 Unauthorized")).to_be_visible()
        expect(row.get_by_text(f"computed over the URL {TWILIO_URL}", exact=False)).to_be_visible()
        expect(row.locator("p.reason code", has_text="url").first).to_be_visible()
        row.locator("summary").click()
        header = row.get_by_role("row").filter(has=p.get_by_role("rowheader", name="x-twilio-signature"))
        expect(header.get_by_role("cell")).to_have_text("(masked)")
        expect(row.get_by_text("MessageSid=SM", exact=False)).to_be_visible()
        html = p.content()
        assert sig not in html and TWILIO_TOKEN not in html
        if self.shots:
            p.screenshot(path=os.path.join(self.shots, "console-rejected.png"), full_page=True)
        p.get_by_role("link", name="Messages").click()

    def open_message_and_see_the_failed_attempt(self):
        p = self.page
        p.get_by_role("link", name=self.first_id).click()
        expect(p.get_by_role("heading", name=self.first_id)).to_be_visible()
        expect(p.locator("pre.response")).to_have_text("invalid payload: field <amount> is missing")
        expect(p.get_by_text("HTTP 422")).to_be_visible()
        # The signature and the bearer token are masked, not shown.
        content = p.content()
        assert "e2e-very-secret-signature" not in content and "e2e-bearer-secret" not in content
        expect(p.get_by_role("row", name="x-hub-signature-256 (masked)")).to_be_visible()

    def copy_as_curl_has_no_secret(self):
        p = self.page
        p.get_by_role("button", name="Copy as curl").click()
        expect(p.get_by_role("status").filter(has_text="Copied.")).to_be_visible()
        text = p.evaluate("navigator.clipboard.readText()")
        assert text.startswith(f"curl -X POST 'http://{self.gw.ingest}/in/shop'"), text
        assert "e2e-very-secret" not in text and "e2e-bearer-secret" not in text, text
        assert "x-hub-signature-256: (masked)" in text, text

    def replay_and_see_it_delivered(self):
        p = self.page
        set_answer("/app", 200, "ok")
        p.get_by_role("button", name="Replay", exact=True).click()
        expect(p.get_by_role("status").filter(has_text="Replay queued")).to_be_visible()
        self.gw.until("the replay to be delivered",
                      lambda: self.gw.message_status(self.first_id) == "delivered")
        p.reload()
        expect(p.locator("dl.summary").get_by_text("delivered", exact=True)).to_be_visible()
        expect(p.locator("li.a-succeeded").get_by_text("HTTP 200")).to_be_visible()
        assert delivered("/app") == 1
        if self.shots:
            p.screenshot(path=os.path.join(self.shots, "console-message-detail.png"), full_page=True)

    def create_try_and_delete_a_transform(self):
        p = self.page
        id = self.gw.send("shop", '{"n": 21}')
        p.get_by_role("link", name="Transforms").click()
        new = p.get_by_role("region", name="New transform")
        new.get_by_label("Name").fill("double")
        new.get_by_label("Script").fill("function transform(r) { r.body = {doubled: r.body.n * 2}; return r; }")
        new.get_by_role("button", name="Create transform").click()
        made = p.get_by_role("region", name="double")
        expect(made).to_be_visible()
        made.get_by_label("Message id").fill(id)
        made.get_by_role("button", name="Try it").click()
        result = p.get_by_role("status").filter(has_text="Would deliver")
        expect(result).to_contain_text('{"doubled":42}')
        p.get_by_role("link", name="Back to transforms").click()
        p.get_by_role("button", name="Delete double").click()
        expect(p.get_by_role("heading", name="double", exact=True)).to_have_count(0)

    def pause_and_resume(self):
        p = self.page
        p.get_by_role("link", name="Destinations").click()
        row = p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="app", exact=True))
        expect(row.get_by_text("running", exact=True)).to_be_visible()
        expect(row).to_contain_text("1 delivered, 0 retried, 1 dead (50% succeeded)")
        row.get_by_role("button", name="Pause").click()
        expect(p.get_by_role("status").filter(has_text="Destination paused")).to_be_visible()
        expect(row.get_by_text("paused", exact=True)).to_be_visible()
        assert self.gw.destination("app")["paused"] is True
        if self.shots:
            p.screenshot(path=os.path.join(self.shots, "console-destinations.png"))
        row.get_by_role("button", name="Resume").click()
        expect(row.get_by_text("running", exact=True)).to_be_visible()
        assert self.gw.destination("app")["paused"] is False

    def send_test_webhook_from_a_source_page(self):
        p = self.page
        p.get_by_role("link", name="Sources").click()
        row = p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="gh", exact=True))
        row.get_by_role("button", name="Send test webhook").click()
        expect(p.get_by_role("status").filter(has_text="Accepted")).to_contain_text("ingest answered 200")
        link = p.get_by_role("link", name="msg_")
        id = link.text_content()
        link.click()
        expect(p.get_by_role("heading", name=id)).to_be_visible()
        expect(p.get_by_role("row", name="x-hub-signature-256 (masked)")).to_be_visible()
        assert "e2e-github-secret" not in p.content()
        self.gw.until("the test webhook delivered", lambda: self.gw.message_status(id) == "delivered")
        p.get_by_role("link", name="Messages").click()
        expect(p.get_by_role("link", name=id)).to_be_visible()

    def create_rotate_and_delete_a_destination(self):
        p = self.page
        p.get_by_role("link", name="Destinations").click()
        p.get_by_role("link", name="New destination").click()
        p.get_by_role("textbox", name="Name").fill("runtime")
        p.get_by_role("textbox", name="URL").fill("ftp://example.com/<b>")
        p.get_by_role("button", name="Create destination").click()
        expect(p.get_by_role("alert")).to_contain_text("not saved")
        expect(p.get_by_role("textbox", name="Name")).to_have_value("runtime")
        receiver = self.gw.destination("hooks")["url"].replace("/hooks", "/runtime")
        p.get_by_role("textbox", name="URL").fill(receiver)
        p.get_by_role("button", name="Create destination").click()
        expect(p.get_by_role("status").filter(has_text="not shown again")).to_be_visible()
        first = p.get_by_role("textbox", name="Signing secret (Standard Webhooks)").input_value()
        assert first.startswith("whsec_"), first
        p.get_by_role("button", name="Copy secret").click()
        expect(p.get_by_role("status").filter(has_text="Copied.")).to_be_visible()
        assert p.evaluate("navigator.clipboard.readText()") == first
        p.get_by_role("link", name="Back to destinations").click()
        row = p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="runtime", exact=True))
        row.get_by_role("link", name="Rotate secret").click()
        p.get_by_role("button", name="Rotate secret").click()
        second = p.get_by_role("textbox", name="Signing secret (Standard Webhooks)").input_value()
        assert second.startswith("whsec_") and second != first
        p.get_by_role("link", name="Back to destinations").click()
        assert first not in p.content() and second not in p.content()
        row = p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="runtime", exact=True))
        row.get_by_role("button", name="Send test event").click()
        expect(p.get_by_role("status").filter(has_text="Test event stored")).to_be_visible()
        self.gw.until("the test event delivered", lambda: delivered("/runtime") >= 1)
        p.get_by_role("link", name="Destinations").click()
        row = p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="runtime", exact=True))
        row.get_by_role("link", name="Delete").click()
        p.get_by_role("button", name="Delete").click()
        expect(p.get_by_role("status").filter(has_text="Destination deleted")).to_be_visible()
        expect(p.get_by_role("rowheader", name="runtime", exact=True)).to_have_count(0)

    def bulk_replay_dead_letters(self):
        p = self.page
        for i in range(3):
            self.gw.send("batch", json.dumps({"n": i}))
        self.gw.until("three dead letters", lambda: self.gw.destination("batch")["dead"] == 3)
        set_answer("/batch", 200, "ok")
        p.get_by_role("link", name="Dead letters").click()
        p.get_by_label("Destination").select_option("batch")
        p.get_by_role("button", name="Filter").click()
        expect(p.locator("#dead-list tbody tr")).to_have_count(3)
        p.get_by_role("link", name="Replay these dead letters…").click()
        expect(p.locator("#count")).to_have_text("Replay 3 dead letters to batch?")
        p.get_by_role("button", name="Replay").click()
        expect(p.get_by_role("status").filter(has_text="Bulk replay started")).to_be_visible()
        self.gw.until("the dead letters delivered", lambda: delivered("/batch") == 3)
        self.gw.until("no dead letters", lambda: self.gw.destination("batch")["dead"] == 0)
        p.reload()
        expect(p.get_by_text("No dead letters.")).to_be_visible()
        if self.shots:
            p.get_by_role("link", name="Messages").click()
            expect(p.locator("tbody tr")).to_have_count(4)
            p.screenshot(path=os.path.join(self.shots, "console-messages.png"))

    def script_payload_is_shown_not_run(self):
        p = self.page
        body = json.dumps({"name": "<script>window.__xss = 1; alert('xss')</script>",
                           "img": "<img src=x onerror=\"window.__xss = 2\">"})
        id = self.gw.send("shop", body, {"x-note": "<script>window.__xss = 3</script>"})
        p.goto(f"{self.gw.url}/messages/{id}")
        expect(p.locator("#body")).to_contain_text("<script>window.__xss = 1; alert('xss')</script>")
        expect(p.get_by_role("cell", name="<script>window.__xss = 3</script>")).to_be_visible()
        assert p.evaluate("window.__xss") is None
        assert p.locator("main script").count() == 0
        assert not self.dialogs, self.dialogs

    def post_without_csrf_is_refused(self):
        r = self.page.request.post(f"{self.gw.url}/destinations/app/pause", form={"x": "1"})
        assert r.status == 403, r.status
        r = self.page.request.post(f"{self.gw.url}/messages/{self.first_id}/replay", form={})
        assert r.status == 403, r.status
        assert self.gw.destination("app")["paused"] is False

    def read_only_gets_403_on_replay(self):
        ctx = self.browser.new_context()
        p = ctx.new_page()
        self.login(p, READ_TOKEN)
        expect(p.get_by_text("Read-only", exact=True)).to_be_visible()
        p.goto(f"{self.gw.url}/messages/{self.first_id}")
        with p.expect_response(lambda r: r.request.method == "POST") as info:
            p.get_by_role("button", name="Replay", exact=True).click()
        assert info.value.status == 403, info.value.status
        expect(p.get_by_role("alert")).to_contain_text("read-only")
        p.goto(f"{self.gw.url}/destinations")
        with p.expect_response(lambda r: r.request.method == "POST") as info:
            p.get_by_role("row").filter(has=p.get_by_role("rowheader", name="app", exact=True)) \
                .get_by_role("button", name="Pause").click()
        assert info.value.status == 403
        assert self.gw.destination("app")["paused"] is False
        ctx.close()

    def overview_updates_live(self):
        # A fresh login without a target lands on the overview.
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 900})
        p = ctx.new_page()
        p.goto(f"{self.gw.url}/")
        expect(p).to_have_url(f"{self.gw.url}/login?next=%2F")
        self.login(p, READ_TOKEN)
        expect(p).to_have_url(f"{self.gw.url}/")
        expect(p.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        expect(p.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
        # Every chart is an image named by its figures, which are written out too.
        card = p.locator("article[data-source='watch']")
        received = card.get_by_role("img", name=re.compile(r"^Received, last hour: \d+ in the last hour"))
        expect(received).to_have_count(1)
        charts = p.locator("svg.chart")
        assert charts.count() >= 2 * 3 + 4 * 2, charts.count()
        for i in range(charts.count()):
            name = charts.nth(i).get_attribute("aria-label")
            assert name and "last hour" in name and charts.nth(i).get_attribute("role") == "img", name
        figure = card.locator("[data-metric='received'] .figure")
        expect(figure).to_contain_text("0 in the last hour")
        dest = p.locator("article[data-destination='app']")
        expect(dest.get_by_text("running", exact=True)).to_be_visible()
        expect(dest.get_by_role("link", name=re.compile(r"^\d+$"))).to_have_attribute(
            "href", "/dead?destination=app")
        # A message arrives: the figure follows without a reload (the sampler
        # takes a point every 10 s, the page asks every 10 s).
        p.evaluate("window.__notReloaded = true")
        self.gw.send("watch", json.dumps({"seen": True}))
        expect(figure).to_contain_text("1 in the last hour", timeout=35000)
        expect(card.get_by_role("img", name=re.compile(r"^Received, last hour: 1 in the last hour"))).to_have_count(1)
        assert p.evaluate("window.__notReloaded") is True, "the page was reloaded"
        if self.shots:
            p.screenshot(path=os.path.join(self.shots, "console-overview.png"), full_page=True)
        ctx.close()

    def readable_on_a_phone(self):
        ctx = self.browser.new_context(viewport={"width": 390, "height": 844})
        p = ctx.new_page()
        self.login(p, ADMIN_TOKEN)
        for path in ["/", "/messages", f"/messages/{self.first_id}", "/dead", "/destinations", "/destinations/new", "/sources", "/rejected", "/alerts"]:
            p.goto(f"{self.gw.url}{path}")
            width = p.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide at 390 px"
            if self.shots and path.startswith("/messages/"):
                p.screenshot(path=os.path.join(self.shots, "console-message-detail-phone.png"))
            if self.shots and path == "/rejected":
                p.screenshot(path=os.path.join(self.shots, "console-rejected-phone.png"), full_page=True)
        ctx.close()

    def logout(self):
        p = self.page
        p.get_by_role("button", name="Log out").click()
        expect(p).to_have_url(f"{self.gw.url}/login")
        p.goto(f"{self.gw.url}/destinations")
        expect(p).to_have_url(f"{self.gw.url}/login?next=%2Fdestinations")


def main():
    binary = sys.argv[1]
    shots = sys.argv[2] if len(sys.argv) > 2 else None
    if shots:
        os.makedirs(shots, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gw = Gateway(binary, server.server_address[1])
    passed = failed = 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            run = Run(gw, browser, shots)
            for name in [
                "security_headers_and_login",
                "message_arrives_live",
                "sources_page",
                "rejected_twilio_request_with_its_reason",
                "open_message_and_see_the_failed_attempt",
                "copy_as_curl_has_no_secret",
                "replay_and_see_it_delivered",
                "pause_and_resume",
                "send_test_webhook_from_a_source_page",
                "create_rotate_and_delete_a_destination",
                "create_try_and_delete_a_transform",
                "bulk_replay_dead_letters",
                "script_payload_is_shown_not_run",
                "post_without_csrf_is_refused",
                "read_only_gets_403_on_replay",
                "overview_updates_live",
                "readable_on_a_phone",
                "logout",
            ]:
                try:
                    getattr(run, name)()
                    passed += 1
                    print(f"ok   {name}", flush=True)
                except Exception:
                    failed += 1
                    print(f"FAIL {name}", flush=True)
                    traceback.print_exc()
            browser.close()
    finally:
        if failed:
            print("--- hookgate log ---")
            print(gw.log_text()[-4000:])
        gw.stop()
        server.shutdown()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
