#!/usr/bin/env python3
"""Loopback helpers of the container test, run by `run` inside the container's network namespace
(nsenter), where 127.0.0.1 is the container's own loopback and nothing else is reachable.

  loopback.py bot-api PORT TOKEN LOG   a Telegram Bot API stand-in: answers getMe, getUpdates
                                       (empty long polls), sendMessage and the edits the pager
                                       makes, and appends every sendMessage to LOG as JSON lines
  loopback.py smtp PORT                sends one journaled message whose To: shows addresses of
                                       three outside domains (email.exposed_recipients)
  loopback.py get URL                  prints the HTTP status, then the body
"""

import json
import smtplib
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT = {
    "id": 7000001,
    "is_bot": True,
    "first_name": "tocsin",
    "username": "tocsin_bot",
}


def bot_api(port: int, token: str, log: str) -> None:
    next_id = [1]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.answer()

        def do_GET(self) -> None:  # noqa: N802
            self.answer()

        def answer(self) -> None:
            prefix = f"/bot{token}/"
            if not self.path.startswith(prefix):
                return self.send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            method = self.path[len(prefix):].split("?")[0].lower()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                params = json.loads(raw) if raw else {}
            except ValueError:
                params = {}
            if method == "getme":
                result = dict(BOT, can_join_groups=True, can_read_all_group_messages=False,
                              supports_inline_queries=False, can_connect_to_business=False,
                              has_main_web_app=False)
            elif method == "getupdates":
                # A long poll that sees nothing: wait (at most 2 s, so a stop is quick), then [].
                time.sleep(min(float(params.get("timeout") or 0), 2.0))
                result = []
            elif method in ("sendmessage", "editmessagetext", "editmessagereplymarkup"):
                if method == "sendmessage":
                    message_id = next_id[0]
                    next_id[0] += 1
                    with open(log, "a", encoding="utf-8") as f:
                        f.write(json.dumps(params) + "\n")
                else:
                    message_id = int(params.get("message_id") or 0)
                chat_id = int(params.get("chat_id") or 0)
                result = {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "supergroup", "title": "on-call"},
                    "from": BOT,
                    "text": params.get("text") or "",
                }
                if params.get("reply_markup"):
                    result["reply_markup"] = params["reply_markup"]
            else:
                result = True
            self.send(200, {"ok": True, "result": result})

        def send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def smtp(port: int) -> None:
    msg = EmailMessage()
    msg["From"] = "news@example.com"
    msg["To"] = "ann@one.example, bob@two.example, cy@three.example"
    msg["Subject"] = "Spring offers"
    msg["Message-ID"] = f"<container-test-{int(time.time())}@example.com>"
    msg.set_content("offers")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.send_message(msg)


def get(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    print(status)
    print(body.decode(errors="replace"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "bot-api":
        bot_api(int(args[0]), args[1], args[2])
    elif cmd == "smtp":
        smtp(int(args[0]))
    elif cmd == "get":
        get(args[0])
    else:
        sys.exit(f"unknown command {cmd}")
