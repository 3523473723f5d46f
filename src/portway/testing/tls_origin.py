"""An HTTPS origin with a `trustme` certificate, and a choice of how it treats plaintext.

Used by the probe tests: TLS clients get `http_origin`'s HTTP/1.1 handler over TLS; what a client
that does not start with a TLS handshake gets depends on `on_plaintext`, modelled on real servers:

* ``"close"``: hang up without a word, as OpenSSL-based servers (Python's ssl included) do;
* ``"nginx"``: nginx's way: a plain-HTTP request gets ``400`` whose body says "The plain HTTP
  request was sent to HTTPS port" (no body for HEAD), anything else a bare ``400 Bad Request``;
* ``"alert"``: a fatal TLS alert record, as TLS stacks that answer garbage with an alert do.

    with TlsOrigin(on_plaintext="nginx") as origin:
        ...  # 127.0.0.1:origin.port, certificate for CN=localhost issued by origin.ca
"""

from __future__ import annotations

import socket
import ssl
from datetime import datetime
from typing import Literal

import trustme

from portway.testing.http_origin import HttpOrigin, _Handler

Plaintext = Literal["close", "nginx", "alert"]

PLAIN_TO_TLS_BODY = (
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
    b"<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
    b"<center>The plain HTTP request was sent to HTTPS port</center>\r\n</body>\r\n</html>\r\n"
)
TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x46"  # fatal protocol_version, TLS 1.2 record


class _TlsHandler(_Handler):
    """Peeks at the first byte: 0x16 (a TLS handshake record) gets TLS, the rest `on_plaintext`."""

    context: ssl.SSLContext
    on_plaintext: Plaintext
    plaintext = False

    def setup(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)  # a client that never speaks must not hold a thread forever
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if first == b"\x16":
            self.request = self.context.wrap_socket(sock, server_side=True)
        else:
            self.plaintext = True
        super().setup()

    def finish(self) -> None:
        super().finish()
        if not self.plaintext:
            # socketserver closes the socket it accepted, which wrap_socket detached from its fd.
            self.request.close()

    def handle(self) -> None:
        if not self.plaintext:
            super().handle()
            return
        sock: socket.socket = self.request
        try:
            data = sock.recv(8192)
            if not data or self.on_plaintext == "close":
                return
            if self.on_plaintext == "alert":
                sock.sendall(TLS_ALERT)
                return
            sock.sendall(self._nginx_answer(sock, data))
        except OSError:
            return

    @staticmethod
    def _nginx_answer(sock: socket.socket, data: bytes) -> bytes:
        method = data.split(b" ", 1)[0]
        if not (method.isalpha() and method.isupper()):
            body = b"<html><body><center><h1>400 Bad Request</h1></center></body></html>\r\n"
        else:
            while b"\r\n\r\n" not in data and len(data) < 8192:
                more = sock.recv(8192)
                if not more:
                    break
                data += more
            body = PLAIN_TO_TLS_BODY
        head = (
            b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        )
        return head if method == b"HEAD" else head + body


class TlsOrigin(HttpOrigin):
    """`HttpOrigin` over TLS with a certificate for localhost/127.0.0.1 from a fresh trustme CA."""

    def __init__(
        self, *, on_plaintext: Plaintext = "close", not_after: datetime | None = None
    ) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert(
            "localhost", "127.0.0.1", common_name="localhost", not_after=not_after
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.configure_cert(context)

        class Handler(_TlsHandler):  # one class per origin: socketserver instantiates it
            pass

        Handler.context, Handler.on_plaintext = context, on_plaintext
        self.handler = Handler
        super().__init__()
