"""The app portal in a real browser: the URL that
`POST /api/v1/auth/app-portal-access/{app_id}` answers, opened in Debian's
Chromium (Playwright), shows one tenant's endpoints and messages and nothing of
another tenant's, drops the key from the address bar, names every control,
and reaches neither another tenant's pages nor the operator's console.

Usage: python portal.py PATH/TO/hookgate

Exits non-zero when a check fails. Waits are on state (Playwright's `expect`,
or the admin API polled), never a fixed sleep.
"""

import json
import re
import sys
import threading
import time
import traceback
import urllib.request
from http.server import ThreadingHTTPServer

from playwright.sync_api import expect, sync_playwright

from e2e import ADMIN_TOKEN, CHROMIUM, CHROMIUM_ARGS, Gateway, Receiver


def api(gw, method, path, body=None):
    req = urllib.request.Request(
        f"{gw.url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def until(what, f, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# Every visible control has a name a screen reader can say.
UNNAMED = """() => Array.from(document.querySelectorAll('a, button, input:not([type=hidden]), select, textarea'))
  .filter(el => {
    const aria = (el.getAttribute('aria-label') || '').trim();
    if (el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA')
      return !aria && !(el.labels && el.labels.length);
    return !aria && !el.textContent.trim();
  })
  .map(el => el.outerHTML)"""


def main():
    binary = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    gw = Gateway(binary, port)
    ok = False
    try:
        ids = {}
        for name in ["a", "b"]:
            app = api(gw, "POST", "/api/v1/app", {"name": f"tenant {name}"})
            ep = api(
                gw,
                "POST",
                f"/api/v1/app/{app['id']}/endpoint",
                {"url": f"http://127.0.0.1:{port}/hooks", "description": f"endpoint of {name}"},
            )
            msg = api(
                gw,
                "POST",
                f"/api/v1/app/{app['id']}/msg",
                {"eventType": f"invoice.{name}", "payload": {"tenant": name}},
            )
            ids[name] = (app["id"], ep["id"], msg["id"])
        (a, ep_a, msg_a), (b, ep_b, msg_b) = ids["a"], ids["b"]
        until(
            "tenant a's attempt",
            lambda: api(gw, "GET", f"/api/v1/app/{a}/attempt/msg/{msg_a}")["data"],
        )
        access = api(gw, "POST", f"/api/v1/auth/app-portal-access/{a}", {})
        key = access["token"]
        assert access["url"] == f"{gw.url}/portal#key={key}", access["url"]

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            requested = []
            page.on("request", lambda r: requested.append(r.url + " " + json.dumps(r.headers)))
            page.goto(access["url"])
            # The key was exchanged for a cookie and is gone from the address bar.
            expect(page).to_have_url(f"{gw.url}/portal")
            expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
            assert not [u for u in requested if key in u.split(" ")[0]], "key in a request URL"
            assert not [u for u in requested if key in u.split(" ", 1)[1]], "key in a header"
            expect(page.get_by_role("link", name=ep_a)).to_be_visible()
            expect(page.get_by_text(ep_b)).to_have_count(0)
            expect(page.get_by_role("link", name="Destinations")).to_have_count(0)
            assert page.evaluate(UNNAMED) == [], page.evaluate(UNNAMED)

            page.get_by_role("link", name="Messages").click()
            expect(page.get_by_role("link", name=msg_a)).to_be_visible()
            expect(page.get_by_text(msg_b)).to_have_count(0)
            page.get_by_role("link", name=msg_a).click()
            expect(page.get_by_role("button", name=f"Resend to {ep_a}")).to_be_visible()
            assert page.evaluate(UNNAMED) == [], page.evaluate(UNNAMED)
            attempts = len(api(gw, "GET", f"/api/v1/app/{a}/attempt/msg/{msg_a}")["data"])
            page.get_by_role("button", name=f"Resend to {ep_a}").click()
            expect(page.get_by_role("heading", name=f"Message {msg_a}")).to_be_visible()
            until(
                "the resent attempt",
                lambda: len(api(gw, "GET", f"/api/v1/app/{a}/attempt/msg/{msg_a}")["data"]) > attempts,
            )

            page.goto(f"{gw.url}/portal/endpoints/{ep_a}")
            assert page.evaluate(UNNAMED) == [], page.evaluate(UNNAMED)
            expect(page.get_by_label("URL")).to_have_value(f"http://127.0.0.1:{port}/hooks")

            # Another tenant's pages: 404.
            for path in [f"/portal/messages/{msg_b}", f"/portal/endpoints/{ep_b}"]:
                r = page.goto(f"{gw.url}{path}")
                assert r.status == 404, (path, r.status)
            # The operator's console: the portal cookie (Path=/portal) is not
            # even sent there, so each page asks for an operator login.
            for path in ["/", "/messages", "/destinations", f"/messages/{msg_b}"]:
                page.goto(f"{gw.url}{path}")
                expect(page).to_have_url(re.compile(r"/login\?next="))
                expect(page.get_by_text(msg_b)).to_have_count(0)
            browser.close()
        ok = True
        print("ok   portal opens one tenant's view in Chromium")
    except Exception:
        traceback.print_exc()
        print("--- hookgate log ---")
        print(gw.log_text()[-4000:])
    finally:
        gw.stop()
        server.shutdown()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
