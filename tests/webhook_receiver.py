"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 in a background thread.

It checks every request's Standard Webhooks signature with the independent `standardwebhooks`
package, records what it got, and answers as its script says: a status code, `SLOW` (answer
200 only after `slow_seconds`, so the sender times out first) or `HANG` (answer only when the
receiver is released or closed). Once the script is used up it answers 200.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SLOW = "slow"
HANG = "hang"


@dataclass
class Received:
    """One request as the receiver saw it."""

    message_id: str
    timestamp: str
    signature: str
    host: str
    body: str
    verified: bool
    error: str | None
    answered: int | str
    at: float = field(default_factory=time.monotonic)

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """`with Receiver() as hook:` then `hook.url`; set `hook.secret` once the webhook exists.

    `check_time=False` verifies the signature without the library's five-minute window, for
    senders driven by a frozen clock.
    """

    def __init__(self, *, check_time: bool = True, slow_seconds: float = 5.0) -> None:
        self.secret: str | None = None
        self.check_time = check_time
        self.slow_seconds = slow_seconds
        self.script: list[int | str] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def release(self) -> None:
        """Let every `HANG`ing request answer (200)."""
        self._release.set()

    def answer(self, *actions: int | str) -> None:
        with self._lock:
            self.script.extend(actions)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx, in arrival order."""
        return [r for r in self.requests() if isinstance(r.answered, int) and r.answered < 300]

    def _verify(self, headers: dict[str, str], body: str) -> tuple[bool, str | None]:
        assert self.secret is not None, "set the receiver's secret first"
        webhook = Webhook(self.secret)
        try:
            if self.check_time:
                webhook.verify(body, headers)
            else:
                moment = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
                expected = webhook.sign(headers["webhook-id"], moment, body)
                if expected not in headers["webhook-signature"].split(" "):
                    raise WebhookVerificationError("No matching signature found")
        except (WebhookVerificationError, KeyError, ValueError) as exc:
            return False, str(exc)
        return True, None

    def _next_action(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if self.script else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified, error = receiver._verify(headers, body)
                action = receiver._next_action()
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            message_id=headers.get("webhook-id", ""),
                            timestamp=headers.get("webhook-timestamp", ""),
                            signature=headers.get("webhook-signature", ""),
                            host=headers.get("host", ""),
                            body=body,
                            verified=verified,
                            error=error,
                            answered=action,
                        )
                    )
                if action == SLOW:
                    receiver._release.wait(receiver.slow_seconds)
                elif action == HANG:
                    receiver._release.wait(60)
                status = action if isinstance(action, int) else 200
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def message_ids(requests: list[Received]) -> Iterator[str]:
    """Each message id once, in the order first seen."""
    return iter(dict.fromkeys(r.message_id for r in requests))
