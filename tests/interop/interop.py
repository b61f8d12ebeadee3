#!/usr/bin/env python3
"""Interoperability: the providers' official SDKs sign requests, the running
hookgate binary must accept them and deliver each once, and must refuse the same
requests altered (401).

    python tests/interop/interop.py [path/to/hookgate]     (or HOOKGATE_BIN)

The SDKs (pinned in requirements.txt) are twilio, stripe, slack_sdk,
standardwebhooks and svix. Each signature is also checked with the SDK's own
verifier first, so a failure here points at the gateway, not at the test.
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime, timezone

import slack_sdk.signature
import standardwebhooks
import stripe
import svix.webhooks
from multidict import MultiDict
from twilio.request_validator import RequestValidator

TWILIO_TOKEN = "interop-twilio-auth-token"
TWILIO_URL = "https://hooks.example.com/twilio"
STRIPE_SECRET = "whsec_interop_stripe_secret"
SLACK_SECRET = "interop-slack-signing-secret"
SW_SECRET = "whsec_" + base64.b64encode(b"interop standard webhooks key!!!").decode()
SVIX_SECRET = "whsec_" + base64.b64encode(b"interop svix signing key 32 by.").decode()

RESULTS = {"passed": 0, "failed": 0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver(http.server.ThreadingHTTPServer):
    """Counts deliveries per message id and source."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.got.append(
                        (self.headers.get("webhook-id"), self.headers.get("hookgate-source"), body)
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name} {detail}")


def sdk_accepts(verify, body, headers):
    """Whether an SDK's verify function accepts (they raise when they do not)."""
    try:
        verify(body, headers)
        return True
    except Exception as e:  # noqa: BLE001 - any refusal is a refusal
        print(f"     SDK refused: {e}")
        return False


def post(port, path, body, headers, method="POST"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    result = (r.status, r.getheader("Hookgate-Message-Id"), data, r.getheader("Content-Type"))
    c.close()
    return result


def expect(name, port, path, body, headers, accepted):
    status, msg_id, data, ctype = post(port, path, body, headers)
    if accepted:
        check(name, status == 200 and msg_id, f"got {status} {data[:200]!r}")
    else:
        check(name, status == 401 and not data and not msg_id, f"got {status} {data[:200]!r}")
    return msg_id, data, ctype


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HOOKGATE_BIN")
    if not binary or not os.path.exists(binary):
        sys.exit("usage: interop.py path/to/hookgate (or set HOOKGATE_BIN)")
    rx = Receiver()
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    ingest, admin = free_port(), free_port()
    tmp = tempfile.TemporaryDirectory()
    config = os.path.join(tmp.name, "hookgate.toml")
    sources = {
        "twilio": f'{{ type = "twilio", secret = "{TWILIO_TOKEN}", url = "{TWILIO_URL}" }}',
        "twilio-host": f'{{ type = "twilio", secret = "{TWILIO_TOKEN}" }}',
        "stripe": f'{{ type = "stripe", secret = "{STRIPE_SECRET}" }}',
        "slack": f'{{ type = "slack", secret = "{SLACK_SECRET}" }}',
        "standard-webhooks": f'{{ type = "standard-webhooks", secret = "{SW_SECRET}" }}',
        "svix": f'{{ type = "svix", secret = "{SVIX_SECRET}" }}',
    }
    with open(config, "w") as f:
        f.write(
            f'[server]\nlisten = "127.0.0.1:{ingest}"\nadmin_listen = "127.0.0.1:{admin}"\n\n'
            f'[storage]\npath = "{os.path.join(tmp.name, "hookgate.db")}"\n\n'
        )
        for name, verify in sources.items():
            f.write(f'[[sources]]\nname = "{name}"\nverify = {verify}\n\n')
        f.write(
            f'[[destinations]]\nname = "rx"\nurl = "http://127.0.0.1:{rx.server_address[1]}/"\n'
            'retry = { schedule = ["0s", "200ms"] }\n\n'
        )
        for name in sources:
            f.write(f'[[routes]]\nsource = "{name}"\nto = "rx"\n\n')
    log = open(os.path.join(tmp.name, "hookgate.log"), "w+")
    proc = subprocess.Popen(
        [binary, "serve", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "HOOKGATE_LOG": "warn"},
    )
    try:
        deadline = time.time() + 20
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                sys.exit(f"hookgate did not start:\n{log.read()}")
            time.sleep(0.05)
        accepted = run_cases(ingest)
        # Every accepted message is delivered exactly once.
        deadline = time.time() + 15
        while time.time() < deadline:
            with rx.lock:
                if len(rx.got) >= len(accepted):
                    break
            time.sleep(0.05)
        time.sleep(0.3)
        with rx.lock:
            got = list(rx.got)
        ids = [g[0] for g in got]
        check(
            "each accepted message delivered once",
            sorted(ids) == sorted(accepted),
            f"accepted {sorted(accepted)}, delivered {sorted(ids)}",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        rx.shutdown()
        log.seek(0)
        text = log.read()
        for secret in [TWILIO_TOKEN, STRIPE_SECRET, SLACK_SECRET, SW_SECRET, SVIX_SECRET]:
            check("no secret in the log", secret not in text)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


def run_cases(port):
    """Sends every case; returns the message ids that must be delivered."""
    accepted = []
    form_ct = {"Content-Type": "application/x-www-form-urlencoded"}

    # --- Twilio: RequestValidator.compute_signature over the public URL + params.
    v = RequestValidator(TWILIO_TOKEN)
    params = MultiDict(
        [
            ("MessageSid", "SM11111111111111111111111111111111"),
            ("From", "whatsapp:+14155238886"),
            ("To", "whatsapp:+15005550006"),
            ("Body", "Ahoy! caf\u00e9 \U0001F600 a+b=c&d"),
            ("MediaUrl0", "https://api.twilio.com/b"),
            ("MediaUrl0", "https://api.twilio.com/a"),
            ("NumMedia", "2"),
            ("Empty", ""),
        ]
    )
    body = urllib.parse.urlencode(list(params.items())).encode()
    url = TWILIO_URL + "?src=sdk"
    sig = v.compute_signature(url, params)
    check("twilio SDK validates its own signature", v.validate(url, params, sig))
    first_body, first_sig = body, sig
    mid, data, ctype = expect(
        "twilio form (repeated keys, unicode) accepted",
        port, "/in/twilio?src=sdk", body, {**form_ct, "X-Twilio-Signature": sig}, True,
    )
    accepted.append(mid)
    check("twilio answer is TwiML", data == b"<Response></Response>" and ctype == "text/xml", f"{data!r} {ctype}")
    expect("twilio altered param refused", port, "/in/twilio?src=sdk",
           body.replace(b"NumMedia=2", b"NumMedia=3"), {**form_ct, "X-Twilio-Signature": sig}, False)
    expect("twilio other query refused", port, "/in/twilio?src=evil", body,
           {**form_ct, "X-Twilio-Signature": sig}, False)
    other = RequestValidator("another-token").compute_signature(url, params)
    expect("twilio other token refused", port, "/in/twilio?src=sdk", body,
           {**form_ct, "X-Twilio-Signature": other}, False)

    # Without `url`: the SDK signs the URL as the gateway sees it (Host with port).
    host_url = f"http://127.0.0.1:{port}/in/twilio-host"
    sig = v.compute_signature(host_url, params)
    mid, _, _ = expect("twilio URL from Host accepted", port, "/in/twilio-host", body,
                       {**form_ct, "X-Twilio-Signature": sig}, True)
    accepted.append(mid)

    # JSON body through bodySHA256.
    jbody = json.dumps({"event": "status", "sid": "SM2", "note": "caf\u00e9"}).encode()
    jurl = TWILIO_URL + "?bodySHA256=" + v.compute_hash(jbody.decode())
    jsig = v.compute_signature(jurl, {})
    check("twilio SDK validates its JSON signature", v.validate(jurl, jbody.decode(), jsig))
    q = jurl.split("?", 1)[1]
    mid, _, _ = expect("twilio JSON (bodySHA256) accepted", port, f"/in/twilio?{q}", jbody,
                       {"Content-Type": "application/json", "X-Twilio-Signature": jsig}, True)
    accepted.append(mid)
    expect("twilio JSON altered refused", port, f"/in/twilio?{q}", jbody.replace(b"SM2", b"SM3"),
           {"Content-Type": "application/json", "X-Twilio-Signature": jsig}, False)

    # HMAC-SHA256 with the signature settings header, when this SDK knows it.
    try:
        sig256 = v.compute_signature(url, params, "HMAC_SHA256")
    except TypeError:
        sig256 = None
    if sig256:
        # Another MessageSid: the preset dedups on it, and this is another message.
        params = MultiDict([("MessageSid", "SM22222222222222222222222222222222"), ("Body", "sha-256")])
        body = urllib.parse.urlencode(list(params.items())).encode()
        sig256 = v.compute_signature(url, params, "HMAC_SHA256")
        settings = "key=webhooks_sharedkey_interop,algorithm=HMAC_SHA256"
        check("twilio SDK validates its SHA-256 signature", v.validate(url, params, sig256, "HMAC_SHA256"))
        mid, _, _ = expect(
            "twilio HMAC_SHA256 accepted", port, "/in/twilio?src=sdk", body,
            {**form_ct, "X-Twilio-Signature": sig256, "X-Twilio-Webhooks-Signature-Settings": settings},
            True,
        )
        accepted.append(mid)
        expect("twilio SHA-1 signature under a SHA-256 claim refused", port, "/in/twilio?src=sdk", body,
               {**form_ct, "X-Twilio-Signature": v.compute_signature(url, params),
                "X-Twilio-Webhooks-Signature-Settings": settings}, False)

    # A retry of the first message (same MessageSid) is the same message.
    mid2, data, _ = expect("twilio retry accepted as a duplicate", port, "/in/twilio?src=sdk", first_body,
                           {**form_ct, "X-Twilio-Signature": first_sig}, True)
    check("twilio retry gets the first id and answer", mid2 == accepted[0] and data == b"<Response></Response>")

    # --- Stripe: the SDK's own test-header helper, checked with construct_event.
    payload = json.dumps(
        {"id": "evt_interop_1", "object": "event", "type": "payment_intent.succeeded",
         "data": {"object": {"id": "pi_1", "description": "caf\u00e9"}}}
    )
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET)
    check("stripe SDK accepts its own header",
          sdk_accepts(lambda p, h: stripe.Webhook.construct_event(p, h, STRIPE_SECRET), payload, header))
    mid, _, _ = expect("stripe accepted", port, "/in/stripe", payload.encode(),
                       {"Content-Type": "application/json", "Stripe-Signature": header}, True)
    accepted.append(mid)
    expect("stripe altered refused", port, "/in/stripe", payload.replace("pi_1", "pi_2").encode(),
           {"Content-Type": "application/json", "Stripe-Signature": header}, False)
    old = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET, timestamp=int(time.time()) - 600)
    expect("stripe stale refused", port, "/in/stripe", payload.encode(),
           {"Content-Type": "application/json", "Stripe-Signature": old}, False)
    wrong = stripe.WebhookSignature.generate_signature_header(payload, "whsec_wrong")
    expect("stripe other secret refused", port, "/in/stripe", payload.encode(),
           {"Content-Type": "application/json", "Stripe-Signature": wrong}, False)

    # --- Slack: SignatureVerifier.generate_signature.
    sv = slack_sdk.signature.SignatureVerifier(SLACK_SECRET)
    sbody = json.dumps({"type": "event_callback", "event_id": "Ev_interop", "event": {"type": "message", "text": "hi"}})
    ts = str(int(time.time()))
    ssig = sv.generate_signature(timestamp=ts, body=sbody)
    check("slack SDK validates its own signature",
          sv.is_valid_request(sbody, {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": ssig}))
    shead = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": ssig}
    mid, _, _ = expect("slack accepted", port, "/in/slack", sbody.encode(), shead, True)
    accepted.append(mid)
    expect("slack altered refused", port, "/in/slack", sbody.replace("hi", "ho").encode(), shead, False)
    # url_verification: answered with the challenge, never delivered.
    ubody = json.dumps({"token": "t", "challenge": "interop-challenge-42", "type": "url_verification"})
    usig = sv.generate_signature(timestamp=ts, body=ubody)
    status, msg_id, data, _ = post(port, "/in/slack", ubody.encode(),
                                   {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
                                    "X-Slack-Signature": usig})
    check("slack url_verification answered", status == 200 and data == b"interop-challenge-42" and not msg_id,
          f"{status} {data!r}")

    # --- Standard Webhooks: Webhook.sign.
    wh = standardwebhooks.Webhook(SW_SECRET)
    now = datetime.now(tz=timezone.utc)
    swbody = json.dumps({"type": "contact.created", "data": {"name": "caf\u00e9"}})
    swsig = wh.sign("msg_interop_sw", now, swbody)
    swhead = {"Content-Type": "application/json", "webhook-id": "msg_interop_sw",
              "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": swsig}
    check("standardwebhooks SDK verifies its own signature", sdk_accepts(wh.verify, swbody, swhead))
    mid, _, _ = expect("standard-webhooks accepted", port, "/in/standard-webhooks", swbody.encode(), swhead, True)
    accepted.append(mid)
    expect("standard-webhooks altered refused", port, "/in/standard-webhooks",
           swbody.replace("contact", "kontakt").encode(), swhead, False)
    expect("standard-webhooks other id refused", port, "/in/standard-webhooks", swbody.encode(),
           {**swhead, "webhook-id": "msg_other"}, False)
    future = datetime.fromtimestamp(now.timestamp() + 600, tz=timezone.utc)
    fsig = wh.sign("msg_interop_sw2", future, swbody)
    expect("standard-webhooks future timestamp refused", port, "/in/standard-webhooks", swbody.encode(),
           {**swhead, "webhook-id": "msg_interop_sw2", "webhook-timestamp": str(int(future.timestamp())),
            "webhook-signature": fsig}, False)

    # --- Svix: svix.webhooks.Webhook.sign, sent under svix-* names.
    sx = svix.webhooks.Webhook(SVIX_SECRET)
    sxsig = sx.sign("msg_interop_svix", now, swbody)
    sxhead = {"Content-Type": "application/json", "svix-id": "msg_interop_svix",
              "svix-timestamp": str(int(now.timestamp())), "svix-signature": sxsig}
    check("svix SDK verifies its own signature", sdk_accepts(sx.verify, swbody, sxhead))
    mid, _, _ = expect("svix accepted", port, "/in/svix", swbody.encode(), sxhead, True)
    accepted.append(mid)
    expect("svix altered refused", port, "/in/svix", (swbody + " ").encode(), sxhead, False)
    expect("svix signature for another secret refused", port, "/in/svix", swbody.encode(),
           {**sxhead, "svix-signature": wh.sign("msg_interop_svix", now, swbody)}, False)
    return accepted


if __name__ == "__main__":
    main()
