"""A local HTTP server for download tests: serves a fixture tree from 127.0.0.1.

``FixtureServer(root)`` serves ``root/<path>`` (and in-memory ``routes``) with Range
support (``206`` + ``Content-Range``), ``HEAD``, an S3-style MD5 ``ETag``, and a minimal
S3 ``ListObjectsV2`` (``?list-type=2&prefix=…&delimiter=/``) for folders. Per path it can
be told to misbehave (:class:`Rule`):

* ``fail``: answer ``500`` that many times, then serve normally;
* ``truncate``: that many times, announce the full ``Content-Length`` but send only half
  of the body and close the connection;
* ``cut_after``: on the first request only, send that many bytes and close;
* ``wrong_etag`` / ``ignore_range`` / ``status``: a wrong MD5 ETag; answer ``200`` with the
  whole file to a Range request; always answer that HTTP status.

Every request is recorded in ``server.requests`` as ``(method, path, headers)``.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape


@dataclass
class Rule:
    fail: int = 0
    truncate: int = 0
    cut_after: int | None = None
    wrong_etag: bool = False
    ignore_range: bool = False
    status: int | None = None


class FixtureServer:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.routes: dict[str, bytes] = {}
        self.rules: dict[str, Rule] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                server._serve(self, head=True)

            def do_GET(self):
                server._serve(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FixtureServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def rule(self, path: str, **kw) -> Rule:
        r = self.rules.setdefault(path if path.startswith("/") else "/" + path, Rule())
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    def count(self, path: str, method: str = "GET") -> int:
        path = path if path.startswith("/") else "/" + path
        return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def headers_for(self, path: str) -> list[dict]:
        path = path if path.startswith("/") else "/" + path
        return [h for m, p, h in self.requests if m == "GET" and p == path]

    # -- serving

    def _body(self, path: str, query: str) -> bytes | None:
        if path + ("?" + query if query else "") in self.routes:
            return self.routes[path + "?" + query]
        if path in self.routes:
            return self.routes[path]
        q = urllib.parse.parse_qs(query)
        if q.get("list-type") == ["2"]:
            return self._list(path, q)
        f = self.root / urllib.parse.unquote(path).lstrip("/")
        if f.is_file():
            return f.read_bytes()
        return None

    def _list(self, path: str, q: dict) -> bytes:
        prefix = q.get("prefix", [""])[0]
        folder = self.root / urllib.parse.unquote(path).lstrip("/") / prefix
        subs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        items = "".join(f"<CommonPrefixes><Prefix>{escape(prefix + s)}/</Prefix></CommonPrefixes>"
                        for s in subs)
        return ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns='
                '"http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>'
                f"{items}</ListBucketResult>").encode()

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parts = urllib.parse.urlsplit(h.path)
        path = parts.path
        with self._lock:
            self.requests.append(("HEAD" if head else "GET", path, dict(h.headers)))
            rule = self.rules.get(path, Rule())
            if rule.status is not None:
                return self._error(h, rule.status)
            if rule.fail > 0 and not head:
                rule.fail -= 1
                return self._error(h, 500)
            truncate = False
            if rule.truncate > 0 and not head:
                rule.truncate -= 1
                truncate = True
            cut = None
            if rule.cut_after is not None and not head:
                cut, rule.cut_after = rule.cut_after, None
        body = self._body(path, parts.query)
        if body is None:
            return self._error(h, 404)
        md5 = hashlib.md5(body).hexdigest()
        etag = '"' + ("0" * 32 if rule.wrong_etag else md5) + '"'
        start, status = 0, 200
        rng = h.headers.get("Range")
        if rng and not rule.ignore_range and rng.startswith("bytes="):
            a = rng[6:].split("-", 1)[0]
            start = int(a)
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        payload = body[start:]
        h.send_response(status)
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if truncate or cut is not None:
            h.send_header("Connection", "close")
        h.end_headers()
        if head:
            return
        if truncate:
            payload = payload[: len(payload) // 2]
        elif cut is not None:
            payload = payload[:cut]
        try:
            h.wfile.write(payload)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if truncate or cut is not None:
            h.close_connection = True

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, code: int) -> None:
        msg = f"error {code}".encode()
        h.send_response(code)
        h.send_header("Content-Length", str(len(msg)))
        h.end_headers()
        h.wfile.write(msg)
