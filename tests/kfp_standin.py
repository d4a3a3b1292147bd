"""A stand-in for the Kubeflow Pipelines API server: answers what `kfp.Client` asks and records it.

No KFP API server can run here (it needs a Kubernetes cluster). This server answers the four
calls a run submission makes — health, find the experiment, create it, create the run — with the
shapes of the KFP v2beta1 REST API, and keeps every request (and its Authorization header) so a
test can count the runs that were submitted and read their parameters and credentials.
docs/drift.md describes the real path.

In a cluster it runs as a pod (`python kfp_standin.py --port 8888`, tests/test_cluster.py): the
recorded requests are then read back with `GET /recorded`.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse


@dataclass
class Recorded:
    """Requests the stand-in received."""

    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # Authorization header of each request
    experiments: dict[str, str] = field(default_factory=dict)  # display name → id

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Bodies of the run-creation requests."""
        return [body for method, path, body in self.requests if method == "POST" and path.endswith("/runs")]


def _handler(recorded: Recorded) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _answer(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> tuple[str, dict[str, Any]]:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = urlparse(self.path).path
            recorded.requests.append((self.command, path, body))
            recorded.authorizations.append(self.headers.get("Authorization"))
            return path, body

        def do_GET(self) -> None:
            path, _ = self._record()
            if path == "/apis/v2beta1/healthz":
                self._answer({"multi_user": False})
            elif path == "/recorded":  # what a test in the cluster reads back (python kfp_standin.py)
                recorded.requests.pop()
                recorded.authorizations.pop()
                self._answer({"requests": recorded.requests, "authorizations": recorded.authorizations})
            elif path == "/apis/v2beta1/experiments":
                self._answer(
                    {
                        "experiments": [
                            {"experiment_id": eid, "display_name": name}
                            for name, eid in recorded.experiments.items()
                        ]
                    }
                )
            else:
                self._answer({"error": f"not found: {path}"}, 404)

        def do_POST(self) -> None:
            path, body = self._record()
            if path == "/apis/v2beta1/experiments":
                eid = f"exp-{len(recorded.experiments) + 1}"
                recorded.experiments[body["display_name"]] = eid
                self._answer({"experiment_id": eid, "display_name": body["display_name"]})
            elif path == "/apis/v2beta1/runs":
                run_id = f"run-{len(recorded.runs)}"
                self._answer({"run_id": run_id, "display_name": body.get("display_name"), "state": "PENDING"})
            else:
                self._answer({"error": f"not found: {path}"}, 404)

    return Handler


class KfpStandIn:
    """`with KfpStandIn() as kfp:` serves on 127.0.0.1; `kfp.url`, `kfp.recorded`."""

    def __enter__(self) -> KfpStandIn:
        """Start serving on a free loopback port."""
        self.recorded = Recorded()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.recorded))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the KFP stand-in.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), _handler(Recorded())).serve_forever()
