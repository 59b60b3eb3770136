"""An HTTP proxy in front of moto that makes chosen S3 requests fail once: injected transient faults.

The first request of each (method, object key) matching a rule gets the rule's fault: a 503
SlowDown, a 500 InternalError, or the connection closed with no answer. Everything else, and
every later attempt, is relayed to moto unchanged, so a retried request succeeds.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te"})
ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
    "<Message>injected transient fault</Message></Error>"
)


@dataclass(frozen=True)
class Rule:
    method: str
    key: re.Pattern[str]
    fault: str  # "SlowDown" (503), "InternalError" (500) or "reset"


@dataclass
class FaultyS3:
    upstream: str  # http://127.0.0.1:PORT of moto
    rules: list[Rule]
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fault_for(self, method: str, key: str) -> str | None:
        for rule in self.rules:
            if rule.method == method and rule.key.search(key):
                with self._lock:
                    if (method, key) in self._seen:
                        return None
                    self._seen.add((method, key))
                    self.injected[(method, rule.fault)] += 1
                return rule.fault
        return None


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _handler(faults: FaultyS3) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(faults.upstream)

    class Relay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def relay(self) -> None:
            body = _read_body(self)
            fault = faults.fault_for(self.command, unquote(urlsplit(self.path).path))
            if fault == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None:
                payload = ERROR_XML.format(code=fault).encode()
                self.send_response(503 if fault == "SlowDown" else 500)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                lower = name.lower()
                if lower in HOP_HEADERS or (lower == "content-length" and self.command != "HEAD"):
                    continue
                self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

    return Relay


class FaultyS3Proxy:
    """Run ``FaultyS3`` on a loopback port for the length of a ``with`` block."""

    def __init__(self, faults: FaultyS3) -> None:
        self.faults = faults
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(faults))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultyS3Proxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
