"""A small local stand-in of the KFP v2beta1 REST API that records every request.

It answers the calls ``kfp.Client`` makes to upload pipelines and versions,
create experiments, runs and recurring runs, and list and delete recurring
runs, with the shapes the real API returns. It is not KFP: it checks nothing
a real server would, and exists so tests can see exactly what was sent.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import itertools
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, body) -> None:
    """Answer a request with ``body`` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    """A server on a free local port, answering with ``handler`` from a daemon thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Request:
    method: str
    path: str
    query: dict
    body: dict
    files: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


class KfpStandIn:
    """Start with ``with KfpStandIn() as api: ...``; ``api.url`` is the host for kfp.Client."""

    def __init__(self, refuse: set[str] | None = None, echo_auth: bool = False):
        self.requests: list[Request] = []
        self.pipelines: dict[str, str] = {}
        self.experiments: dict[str, str] = {}
        self.recurring: dict[str, dict] = {}
        self.namespaces: dict[str, str] = {}  # pipeline name: the namespace it was uploaded to
        self.refuse = refuse or set()
        self.echo_auth = echo_auth  # refusals quote the Authorization header, as some proxies do
        self._ids = itertools.count(1)
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body, files = {}, {}
                kind = self.headers.get("Content-Type", "")
                if kind.startswith("multipart/"):
                    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        f"Content-Type: {kind}\r\n\r\n".encode() + raw
                    )
                    for part in message.iter_parts():
                        files[part.get_param("name", header="content-disposition")] = (
                            part.get_content()
                        )
                elif raw:
                    body = json.loads(raw)
                request = Request(
                    self.command,
                    url.path,
                    parse_qs(url.query),
                    body,
                    files,
                    {k.lower(): v for k, v in self.headers.items()},
                )
                stand_in.requests.append(request)
                send_json(self, *stand_in.answer(request))

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> KfpStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    @staticmethod
    def _filtered_name(request: Request) -> str | None:
        raw = request.query.get("filter", [None])[0]
        if not raw:
            return None
        return json.loads(raw)["predicates"][0][
            "string_value" if "string_value" in raw else "stringValue"
        ]

    def answer(self, r: Request) -> tuple[int, dict]:
        path = r.path.removeprefix("/apis/v2beta1/")
        if path.split("/")[0] in self.refuse:
            return 403, {
                "error": "permission denied",
                "code": 7,
                "message": "refused by the stand-in"
                + (f" for {r.headers.get('authorization')}" if self.echo_auth else ""),
            }
        if r.method == "DELETE" and path.startswith("recurringruns/"):
            self.recurring.pop(path.split("/")[1], None)
            return 200, {}
        routes = {
            ("GET", "healthz"): lambda r: {
                "commit_sha": "0" * 40,
                "tag_name": "2.4.1",
                "multi_user": False,
            },
            ("GET", "pipelines"): lambda r: self._listed(r, self.pipelines, "pipeline"),
            ("POST", "pipelines/upload"): self._upload,
            ("POST", "pipelines/upload_version"): lambda r: {
                "pipeline_id": r.query["pipelineid"][0],
                "pipeline_version_id": self._id("version"),
                "display_name": r.query["name"][0],
            },
            ("GET", "experiments"): lambda r: self._listed(r, self.experiments, "experiment"),
            ("POST", "experiments"): self._create_experiment,
            ("POST", "runs"): lambda r: {**r.body, "run_id": self._id("run"), "state": "PENDING"},
            ("POST", "recurringruns"): self._create_recurring,
            ("GET", "recurringruns"): self._list_recurring,
        }
        route = routes.get((r.method, path))
        if route is None:
            return 404, {"error": f"the stand-in does not serve {r.method} {r.path}", "code": 5}
        return 200, route(r)

    def _listed(self, r: Request, store: dict[str, str], kind: str) -> dict:
        name = self._filtered_name(r)
        found = [{f"{kind}_id": i, "display_name": n} for n, i in store.items() if n == name]
        return {f"{kind}s": found, "total_size": len(found)} if found else {}

    def _upload(self, r: Request) -> dict:
        name = r.query["name"][0]
        if r.query.get("namespace"):
            self.namespaces[name] = r.query["namespace"][0]
        self.pipelines[name] = self._id("pipeline")
        return {"pipeline_id": self.pipelines[name], "display_name": name}

    def _create_experiment(self, r: Request) -> dict:
        name = r.body["display_name"]
        self.experiments[name] = self._id("experiment")
        return {"experiment_id": self.experiments[name], "display_name": name}

    def _create_recurring(self, r: Request) -> dict:
        rid = self._id("recurring")
        self.recurring[rid] = {**r.body, "recurring_run_id": rid}
        return self.recurring[rid]

    def _list_recurring(self, r: Request) -> dict:
        # filtered by experiment, paged by page_size and an offset token, named as the
        # real API names them; the name filter is left to the client
        wanted = r.query.get("experiment_id", [None])[0]
        found = [v for v in self.recurring.values() if wanted in (None, v["experiment_id"])]
        size = int(r.query.get("page_size", ["10"])[0])
        start = int(r.query.get("page_token", ["0"])[0] or 0)
        page = {"recurringRuns": found[start : start + size], "total_size": len(found)}
        if start + size < len(found):
            page["next_page_token"] = str(start + size)
        return page

    def find(self, method: str, path: str) -> list[Request]:
        return [
            r for r in self.requests if r.method == method and r.path == "/apis/v2beta1/" + path
        ]
