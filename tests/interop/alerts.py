"""Alerts interop: a signed webhook alert verifies with the official Standard
Webhooks library (and an altered one does not); the Slack and Telegram alerts
carry only the fields those APIs document, with the documented types:
Slack incoming webhooks (https://api.slack.com/messaging/webhooks: `text`),
Telegram's sendMessage (https://core.telegram.org/bots/api#sendmessage:
`chat_id` Integer or String, `text` String of 1-4096 characters,
`link_preview_options` a LinkPreviewOptions object). A webhook channel made
through the admin API (`POST /api/v1/alert-channels`, with a secret of its
own) signs its alerts the same way.

Usage: python alerts.py PATH/TO/hookgate
"""

import json
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks

from gateway import free_port, running

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
TOKEN = "123456:interop-token"

# https://api.slack.com/messaging/webhooks and chat.postMessage's arguments
SLACK_FIELDS = {"text": str, "blocks": list, "attachments": list, "mrkdwn": bool, "thread_ts": str}
# https://core.telegram.org/bots/api#sendmessage
TELEGRAM_FIELDS = {
    "business_connection_id": str, "chat_id": (int, str), "message_thread_id": int, "text": str,
    "parse_mode": str, "entities": list, "link_preview_options": dict,
    "disable_notification": bool, "protect_content": bool, "reply_parameters": dict,
    "reply_markup": dict,
}
LINK_PREVIEW_FIELDS = {"is_disabled": bool, "url": str, "prefer_small_media": bool,
                       "prefer_large_media": bool, "show_above_text": bool}


class Receiver(BaseHTTPRequestHandler):
    got = []
    lock = threading.Lock()
    down = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        status = 200
        if self.path == "/svc":
            status = 500 if Receiver.down else 200
        else:
            with Receiver.lock:
                Receiver.got.append((self.path, dict(self.headers.items()), body))
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(pred, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with Receiver.lock:
            got = list(Receiver.got)
        if pred(got):
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {got}")


def check_fields(body, fields, what):
    for k, v in body.items():
        assert k in fields, f"{what}: {k} is not a documented field"
        assert isinstance(v, fields[k]), f"{what}: {k} has the wrong type"


def main():
    binary = sys.argv[1]
    rx = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{rx.server_address[1]}"
    ingest, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    events = 'events = ["destination.failing", "destination.recovered"]\nwindow = "2s"\nmin_attempts = 2\n'
    with tempfile.TemporaryDirectory() as d, running(binary, d, (
        f'[server]\nlisten = "{ingest}"\nadmin_listen = "{admin}"\nadmin_tokens = ["t"]\n'
        f'allow_private_destinations = true\n'
        f'[storage]\npath = "{d}/hg.db"\n'
        f'[[sources]]\nname = "app"\n'
        f'[[destinations]]\nname = "svc"\nurl = "{base}/svc"\n'
        f'retry = {{ schedule = ["0s", "200ms", "200ms", "200ms", "200ms", "200ms"] }}\n'
        f'[[routes]]\nsource = "app"\nto = "svc"\n'
        f'[[alerts]]\nname = "hook"\nformat = "webhook"\nurl = "{base}/webhook"\nsecret = "{SECRET}"\n{events}'
        f'[[alerts]]\nname = "slack"\nformat = "slack"\nurl = "{base}/slack"\n{events}'
        f'[[alerts]]\nname = "tg"\nformat = "telegram"\nbot_token = "{TOKEN}"\nchat_id = "-100123"\n'
        f'api_url = "{base}/tg"\n{events}'
    ), admin):
        try:
            channel = {"name": "api-hook", "format": "webhook", "url": f"{base}/api-webhook",
                       "secret": API_SECRET, "events": ["destination.failing"],
                       "window": "2s", "min_attempts": 2}
            req = urllib.request.Request(f"http://{admin}/api/v1/alert-channels", method="POST",
                                         data=json.dumps(channel).encode(),
                                         headers={"content-type": "application/json",
                                                  "authorization": "Bearer t"})
            made = json.load(urllib.request.urlopen(req, timeout=10))
            assert made["origin"] == "api" and made["secret_set"], made
            assert API_SECRET not in json.dumps(made), "the secret is never echoed"
            for _ in range(3):
                req = urllib.request.Request(f"http://{ingest}/in/app", data=b'{"a":1}', method="POST",
                                             headers={"content-type": "application/json"})
                urllib.request.urlopen(req, timeout=10)
            got = wait_for(lambda g: {p for p, _, _ in g} >= {"/webhook", "/api-webhook", "/slack",
                                                              f"/tg/bot{TOKEN}/sendMessage"},
                           "an alert on every channel")
            for path, headers, body in got:
                if path in ("/webhook", "/api-webhook"):
                    secret = SECRET if path == "/webhook" else API_SECRET
                    event = standardwebhooks.Webhook(secret).verify(body, headers)
                    assert event["type"] == "destination.failing", event
                    assert event["data"]["destination"] == "svc"
                    try:
                        standardwebhooks.Webhook(secret).verify(body + b" ", headers)
                        raise AssertionError("an altered alert must not verify")
                    except standardwebhooks.WebhookVerificationError:
                        pass
                elif path == "/slack":
                    msg = json.loads(body)
                    check_fields(msg, SLACK_FIELDS, "slack")
                    assert "destination.failing" in msg["text"]
                else:
                    msg = json.loads(body)
                    check_fields(msg, TELEGRAM_FIELDS, "telegram")
                    check_fields(msg["link_preview_options"], LINK_PREVIEW_FIELDS, "telegram link_preview_options")
                    assert 1 <= len(msg["text"]) <= 4096
                    assert msg["chat_id"] == "-100123"
            print("alerts interop: the signed alerts (a config channel's and an API channel's) verify with "
                  "standardwebhooks; slack and telegram bodies have the documented fields")
        finally:
            rx.shutdown()


if __name__ == "__main__":
    main()
