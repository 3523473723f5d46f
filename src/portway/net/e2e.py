"""End-to-end TLS 1.3 between two agents inside the streams the hub relays (protocol.md §17-19).

The reaching agent is the TLS client (server name ``identity.tunnel_hostname``), the exposing
agent the server; each shows a certificate of the hub's CA (`portway.net.identity`) and trusts
nothing else. An agent builds :func:`peer_context` once per certificate, calls :func:`secure`
on a stream's transport right after ``assign_ok`` and hands the :class:`SecureTransport` it
returns to its relay (a :class:`~portway.net.splice.Splice` leg); :func:`peer_uris` names the
peer.

Not ``loop.start_tls``: uvloop takes only its own transports; asyncio wants the private
``_start_tls_compatible`` flag, and its ``SSLProtocol`` is a ``BufferedProtocol`` (a stream
transport calls ``data_received``) that calls the private ``_force_close`` on errors and takes
no bytes already read. Its TLS transport cannot half-close either. This ``ssl.MemoryBIO`` layer
works on both loops and can: TLS 1.3 ends each direction with its own close_notify (RFC 8446
§6.1), so ``write_eof`` sends ours, the peer's is ``eof_received``, a FIN without one is a
truncation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any, cast

from portway.errors import Forbidden, Unavailable
from portway.net.identity import uris_of
from portway.net.mux_transport import StreamResetError, StreamTransport
from portway.wire.codes import Reason
from portway.wire.frames import Bytes

ALPN = "portway-e2e/1"
HANDSHAKE_TIMEOUT = 10.0
READ_SIZE = 256 * 1024  # plaintext per data_received, a socket read's size


class PeerRejected(Forbidden):
    """The peer's certificate is missing, of another CA or tunnel, or names another agent; it
    speaks no ``portway-e2e/1``; or it refused ours. Raised by :func:`secure` once the stream is
    reset with ``denied`` (§19 step 4): ``portway reach`` prints it, the exposing agent logs it."""

    code = "e2e_peer_rejected"


class E2eFailed(Unavailable, ConnectionResetError):
    """End-to-end TLS did not come up (timeout, the stream ended meanwhile) or broke later (a
    record that does not decrypt, a FIN without close_notify). Raised by :func:`secure`, and what
    a :class:`SecureTransport`'s protocol gets in ``connection_lost`` (a lost peer, still)."""

    code = "e2e_failed"


def peer_context(
    cert_chain_pem: bytes, key_pem: bytes, trust_pem: bytes, *, server: bool
) -> ssl.SSLContext:
    """One side's context: TLS 1.3 only, ALPN ``portway-e2e/1``, our certificate and key,
    trusting exactly ``trust_pem`` (the hub's CA) and requiring the peer's certificate. The
    client checks the server's name; a client has none to check (:func:`secure`'s
    ``expect_uri`` checks its URI). Built once, used for every connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols([ALPN])
    context.check_hostname = not server
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=trust_pem.decode("ascii"))
    if server:
        context.num_tickets = 0  # nobody resumes: spare each connection two tickets
    # `ssl` loads a certificate and key from a path only: a file only we may read, in a
    # directory only we may list (mkdtemp makes it 0700), gone as soon as OpenSSL read it.
    with tempfile.TemporaryDirectory(prefix="portway-e2e-") as directory:
        path = Path(directory) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem.rstrip(b"\n") + b"\n" + cert_chain_pem)
        context.load_cert_chain(path)
    return context


def peer_uris(transport: asyncio.BaseTransport) -> frozenset[str]:
    """The ``URI:`` subject alternative names of the peer's certificate (``urn:portway:agent:
    <id>``, ...); empty before a handshake or on a transport without TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return uris_of(der) if der else frozenset()


async def secure(
    transport: asyncio.Transport,
    protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    initial: bytes = b"",
    expect_uri: str | None = None,
) -> SecureTransport:
    """Run the handshake over ``transport`` (a stream's, just detached from its framed reader;
    ``initial``: the bytes read past ``assign_ok``) and return the transport of plaintext, whose
    peer has ``expect_uri`` among its :func:`peer_uris` if given. Raises :class:`PeerRejected`
    or :class:`E2eFailed`, the stream reset.

    Plaintext goes to ``protocol`` from the callback after the one this returns in (no
    ``connection_made``, as with ``start_tls``): hand the result to its relay before any
    ``await``. In TLS 1.3 the client is done before the server checked its certificate, so a
    refusal reaches the client later: ``connection_lost`` with a ``denied`` StreamResetError."""
    role = "reaching side (TLS client)" if server_side else "exposing side (TLS server)"
    if transport.is_closing():
        raise E2eFailed(f"the stream to the {role} closed before the end-to-end handshake")
    layer = SecureTransport(transport, protocol, context, role, server_side, server_hostname)
    layer.data_received(initial)  # or, for the client, its hello
    try:
        async with asyncio.timeout(handshake_timeout):
            await layer.handshake
    except TimeoutError:
        late = E2eFailed(f"no end-to-end handshake with the {role} in {handshake_timeout:g} s")
        layer._fail(late, Reason.RESET)
        raise late from None
    except asyncio.CancelledError:
        layer.abort()
        raise
    uris = peer_uris(layer)
    if layer.ssl_object.selected_alpn_protocol() != ALPN:
        problem = f"it does not speak {ALPN}"
    elif expect_uri is not None and expect_uri not in uris:
        problem = f"its certificate names {', '.join(sorted(uris)) or 'no URI'}, not {expect_uri}"
    elif layer._lost:  # reset while this task woke up: nothing to hand over
        raise layer._lost_error()
    else:
        layer._hand_over()
        return layer
    error = PeerRejected(f"end-to-end TLS: the {role} is refused: {problem}")
    layer._fail(error)
    raise error


class SecureTransport(asyncio.Transport, asyncio.Protocol):
    """Plaintext over TLS 1.3 over ``lower`` (a stream's transport); made by :func:`secure`, it
    is the protocol of ``lower`` and the transport of ``app``.

    Nothing is buffered here but what OpenSSL holds between a read and its decryption: writes
    become records for ``lower`` at once, ``lower``'s ``pause_writing`` reaches ``app`` as it
    is, ``app``'s ``pause_reading`` pauses ``lower`` (a stream then withholds its credit).
    ``write_eof`` sends close_notify; the stream's FIN waits for the peer's close_notify, since a
    stream that got the peer's FIN while it held bytes for a paused reader drops them once we
    FIN too. ``close`` sends both at once; ``abort`` and failures reset the stream. There is no
    ``sslcontext`` extra: a Splice takes it to mean a TLS transport that cannot half-close.
    """

    def __init__(
        self,
        lower: asyncio.Transport,
        app: asyncio.Protocol,
        context: ssl.SSLContext,
        role: str,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        super().__init__()
        self._lower, self._app, self._role = lower, app, role
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self._handed = False  # secure() returned it: plaintext goes to app from now on
        self._paused = False  # app paused reading
        self._write_paused = False  # lower is above its high-water mark
        self._eof_in = self._eof_out = False  # the peer's close_notify was read; ours was sent
        self._closing = self._lost = False
        self._lost_exc: Exception | None = None
        self._error: Exception | None = None  # our own failure, told to app in connection_lost
        lower.set_protocol(self)

    # -- transport API, called by app ------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.ssl_object
        if name == "peercert":
            return self.ssl_object.getpeercert()
        if name in ("sslcontext", "socket"):  # see above; and no socket to send a TCP RST on
            return default
        return self._lower.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._paused

    def pause_reading(self) -> None:
        if not self._paused:
            self._paused = True
            self._lower.pause_reading()

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._lower.resume_reading()
            self._loop.call_soon(self._pump)  # what OpenSSL holds, after the current callback

    def write(self, data: Bytes) -> None:
        if self._eof_out or self._closing or not data:
            return
        try:
            self.ssl_object.write(data)
        except ssl.SSLError as exc:
            self._fail(self._failure(exc))
            return
        self._flush()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_out or self._closing:
            return
        self._eof_out = True
        with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: the peer's is still to come
            self.ssl_object.unwrap()
        self._flush()
        if self._eof_in:
            self._lower.write_eof()

    def close(self) -> None:
        if not self._closing:
            self.write_eof()
            self._closing = True
            self._lower.close()  # done once the peer's FIN or RST comes; what comes is dropped

    def abort(self) -> None:
        self.reset(Reason.RESET)

    def reset(self, reason: Reason) -> None:
        """Abort both ways: a stream is reset with ``reason``, another transport aborted."""
        if not self._lost:
            self._closing = True
            if isinstance(self._lower, StreamTransport):
                self._lower.reset(reason)
            else:
                self._lower.abort()

    def get_write_buffer_size(self) -> int:
        return self._lower.get_write_buffer_size()  # our records went to it at once

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._lower.set_write_buffer_limits(high, low)

    # -- protocol of lower -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        self._pump()

    def eof_received(self) -> bool:
        # OpenSSL tells a FIN behind the peer's close_notify (its direction ended) from one
        # without (a truncation: SSLEOFError) as it reads up to it.
        self._incoming.write_eof()
        self._pump()
        return True  # our direction ends with our own close_notify

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._closing = True
        self._lost_exc = exc
        if not self.handshake.done():
            self.handshake.set_exception(self._lost_error())
        elif self._handed:
            self._app.connection_lost(self._error or exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._handed:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._handed:
            self._app.resume_writing()

    # -- internals -------------------------------------------------------------------------------

    def _hand_over(self) -> None:
        self._handed = True
        if self._write_paused:
            self._app.pause_writing()
        self._lower.resume_reading()
        self._loop.call_soon(self._pump)  # the bytes that came behind the peer's Finished

    def _pump(self) -> None:
        """Advance the handshake, or decrypt for app while it reads; send what OpenSSL wrote."""
        if self._closing:
            return
        try:
            if not self.handshake.done():
                self.ssl_object.do_handshake()
                # Done: hold what came behind the peer's Finished until secure() hands us over.
                self._lower.pause_reading()
                self.handshake.set_result(None)
            elif self._handed:
                self._decrypt()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._fail(self._failure(exc))
            return
        self._flush()

    def _decrypt(self) -> None:
        while not (self._paused or self._closing or self._eof_in):
            try:
                data = self.ssl_object.read(READ_SIZE)
            except ssl.SSLZeroReturnError:  # close_notify, once ours went too
                data = b""
            if not data:  # the peer's close_notify: its direction is done
                self._eof_in = True
                if self._eof_out:
                    self._lower.write_eof()
                if not self._app.eof_received():
                    self.close()
                return
            self._app.data_received(data)

    def _failure(self, exc: ssl.SSLError) -> Exception:
        role, shaking = self._role, not self.handshake.done()
        if isinstance(exc, ssl.SSLEOFError):
            how = "during the handshake" if shaking else "without close_notify (truncated)"
            return E2eFailed(f"the end-to-end TLS stream from the {role} ended {how}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PeerRejected(f"end-to-end TLS: the {role} is refused: {exc.verify_message}")
        reason = str(exc.reason or exc).lower().replace("_", " ")
        if shaking or "alert" in reason:  # a refusal, ours or the peer's
            return PeerRejected(f"end-to-end TLS with the {role} failed: {reason}")
        return E2eFailed(f"end-to-end TLS with the {role} broke: {reason}")

    def _lost_error(self) -> Exception:
        exc, role = self._lost_exc, self._role
        if isinstance(exc, StreamResetError) and exc.reason is Reason.DENIED:
            return PeerRejected(f"end-to-end TLS: the {role} refused us (stream reset: denied)")
        return E2eFailed(f"the stream to the {role} ended in the handshake ({exc or 'closed'})")

    def _fail(self, error: Exception, reason: Reason | None = None) -> None:
        """Reset the stream (``denied`` for a refusal, §19) and fail with ``error``."""
        if self._lost or self._error is not None:
            return
        self._error = error
        if reason is None:
            reason = Reason.DENIED if isinstance(error, PeerRejected) else Reason.PROTOCOL_ERROR
        self.reset(reason)
        if not self.handshake.done():
            self.handshake.set_exception(error)

    def _flush(self) -> None:
        if (data := self._outgoing.read()) and not self._lost:
            self._lower.write(data)
