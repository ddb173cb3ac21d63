"""A JSON-RPC forwarder in front of a real chain node that answers chosen requests with the
node errors a loaded node gives, so a test can fail one bucket name's chain reads.

Everything goes through to the chain unchanged except the `eth_call`s whose call data carry a
name queued with `fail_views(name, times)`: the next `times` of those are answered with
`{"code": -32000, "message": "header not found"}` (what geth answers a read it cannot serve
yet) instead of the chain's result. The executor's view of the bucket is such a call, so each
fault costs that job one attempt; the chain itself never sees the refused request.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NODE_ERROR = {"code": -32000, "message": "header not found"}


class RpcFaults:
    """Forwards http://127.0.0.1:<port> to `target_url`; `start()` it, then `stop()` it."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # hex of a name's bytes -> faults still to give
        self._given: dict[str, int] = {}
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the executor's client expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = faults._answer(json.loads(body))
                out = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def fail_views(self, name: str, times: int) -> None:
        """Answer the next `times` chain reads of bucket `name` with a node error."""
        with self._lock:
            self._pending[name.encode().hex()] = times

    def given(self, name: str) -> int:
        """How many of `name`'s reads were answered with the error."""
        with self._lock:
            return self._given.get(name.encode().hex(), 0)

    def _answer(self, request: Any) -> Any:
        requests = request if isinstance(request, list) else [request]
        refused = {id(r) for r in requests if self._take_fault(r)}
        passed = [r for r in requests if id(r) not in refused]
        answers: dict[Any, Any] = {}
        if passed:
            forwarded = self._forward(passed if isinstance(request, list) else passed[0])
            for answer in forwarded if isinstance(forwarded, list) else [forwarded]:
                answers[answer.get("id")] = answer
        out = [
            {"jsonrpc": "2.0", "id": r.get("id"), "error": NODE_ERROR}
            if id(r) in refused
            else answers[r.get("id")]
            for r in requests
        ]
        return out if isinstance(request, list) else out[0]

    def _take_fault(self, request: dict[str, Any]) -> bool:
        if request.get("method") != "eth_call":
            return False
        data = str((request.get("params") or [{}])[0].get("data", "")).lower()
        with self._lock:
            for name, left in self._pending.items():
                if left > 0 and name in data:
                    self._pending[name] = left - 1
                    self._given[name] = self._given.get(name, 0) + 1
                    return True
        return False

    def _forward(self, request: Any) -> Any:
        forwarded = urllib.request.Request(
            self.target_url,
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(forwarded, timeout=30) as response:
            return json.loads(response.read())
