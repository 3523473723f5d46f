"""`detect()`: find out what really runs behind a tunnel's target by speaking to it.

Called by the exposing agent when a tunnel starts serving and on demand (diagnostics), with an
opener that dials the target through the agent's egress policy. The protocol knowledge is in the
sans-IO modules (protocols.py, databases.py, mongo.py, http.py); this module only moves bytes:

1. Open a connection and wait GREETING_WAIT for a server that speaks first. A MySQL/MariaDB
   handshake is `mysql`; any other banner is `tcp` with its first line. Either ends detection.
2. Run the client-first probes, each on a fresh connection, the hinted one first, and stop at
   the first that recognises its protocol.
3. Send a TLS ClientHello only once the target showed it speaks TLS: PostgreSQL answered 'S' (the
   handshake then happens on that connection, as libpq does it), a plaintext probe got a TLS alert
   or a web server's "plain HTTP to HTTPS port" answer, or the hint is https (`hint_from` never
   makes it https for a well-known database port). Nothing else earns a ClientHello, so a plain
   database never sees one.
4. Nothing recognised: `tcp`.

Every step is bounded by `timeout`. Errors from the opener (OSError, the agent's DialError)
propagate, as does TimeoutError when connecting takes longer than `timeout`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from portway.probe.databases import POSTGRES, REDIS
from portway.probe.http import head_request, http_probe, parse_head
from portway.probe.mongo import MONGODB
from portway.probe.protocols import (
    GREETING_WAIT,
    NOTHING,
    Answer,
    Parser,
    Probe,
    normalize_hint,
    parse_greeting,
    probe_order,
)
from portway.probe.results import Detection, ProbeError, TlsDetails, tls_details

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

_READ_SIZE = 16 * 1024


async def detect(
    open_target: Opener,
    *,
    hint: str | None = None,
    server_name: str | None = None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a bound per step, not one for the whole call
) -> Detection:
    """What speaks behind `open_target`; see the module docstring for the order of probes.

    `hint` is a protocol name (postgres, mysql, redis, mongodb, http, https; see `hint_from`),
    `server_name` goes into TLS SNI and the HTTP Host header. A silent target costs at most
    GREETING_WAIT plus `timeout` per probe.
    """
    hinted = normalize_hint(hint)
    # A target said to be MySQL gets the whole step to greet (a slow or distant server); anything
    # else only GREETING_WAIT, since most servers wait for the client and would cost us a step.
    greeting = await _greeting(open_target, timeout, wait=timeout if hinted == "mysql" else None)
    if greeting is not None:
        return greeting
    probes = {probe.protocol: probe for probe in _client_probes(server_name)}
    tried_tls = False
    fallback: Detection | None = None
    for name in probe_order(hinted, list(probes)):
        if name == "https":
            answer = await _tls_probe(open_target, server_name, timeout)
            tried_tls = True
        else:
            answer = await _exchange(open_target, probes[name], server_name, timeout)
        if answer.tls_seen and not tried_tls:
            tried_tls = True
            found = await _tls_probe(open_target, server_name, timeout)
            if found.detection is not None:
                return found.detection
        if answer.detection is not None:
            if not answer.tls_seen:
                return answer.detection
            fallback = fallback or answer.detection
    return fallback or Detection("tcp", detail="no known protocol answered")


def _client_probes(server_name: str | None) -> list[Probe]:
    return [POSTGRES, REDIS, MONGODB, http_probe(server_name or "localhost")]


def _client_context() -> ssl.SSLContext:
    """Handshake with anything and verify nothing: a probe reports the certificate, whatever it
    is; trusting it is the business of whoever later connects."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _open(
    open_target: Opener, step: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(open_target(), step)
    except TimeoutError:
        raise TimeoutError(f"connecting to the target took longer than {step:g}s") from None


async def _close(writer: asyncio.StreamWriter, step: float) -> None:
    """Close and wait, bounded: a TLS peer that never answers close_notify must not hold us."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), step)
    except (OSError, TimeoutError, ssl.SSLError):
        writer.transport.abort()


async def _read(reader: asyncio.StreamReader, parse: Parser, step: float) -> Answer:
    """Feed what arrives to `parse` until it decides; EOF, errors and the deadline count as EOF."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + step
    data = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(_READ_SIZE), deadline - loop.time())
        except (OSError, TimeoutError, ssl.SSLError):
            chunk = b""
        data += chunk
        answer = parse(data, not chunk)
        if answer is not None:
            return answer


async def _greeting(open_target: Opener, step: float, wait: float | None) -> Detection | None:
    """Step 1: a server-first greeting, or None when the target waits for us to speak."""
    reader, writer = await _open(open_target, step)
    try:
        try:
            first = await asyncio.wait_for(
                reader.read(_READ_SIZE), wait or min(GREETING_WAIT, step)
            )
        except (OSError, TimeoutError):
            return None
        if not first:
            return None

        def parse(data: bytes, eof: bool) -> Answer | None:
            found = parse_greeting(first + data, eof)
            return None if found is None else Answer(found)

        answer = parse(b"", False) or await _read(reader, parse, step)
        return answer.detection
    finally:
        await _close(writer, step)


async def _exchange(
    open_target: Opener, probe: Probe, server_name: str | None, step: float
) -> Answer:
    """Step 2 for one probe, on its own connection (plus PostgreSQL's in-place TLS upgrade)."""
    reader, writer = await _open(open_target, step)
    try:
        try:
            writer.write(probe.request)
            await asyncio.wait_for(writer.drain(), step)
        except (OSError, TimeoutError, RuntimeError):  # uvloop: RuntimeError once it closed
            return NOTHING
        answer = await _read(reader, probe.parse, step)
        if answer.upgrade_tls and answer.detection is not None:
            return Answer(await _postgres_tls(writer, server_name, step))
        return answer
    finally:
        await _close(writer, step)


async def _start_tls(
    writer: asyncio.StreamWriter, server_name: str | None, step: float
) -> TlsDetails:
    """Handshake on an open connection and read the peer's certificate; raises on failure."""
    await writer.start_tls(
        _client_context(), server_hostname=server_name, ssl_handshake_timeout=step
    )
    tls: ssl.SSLObject | None = writer.get_extra_info("ssl_object")
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if tls is None or der is None:
        raise ProbeError("the TLS handshake gave no peer certificate")
    return tls_details(der, tls.version() or "TLS")


async def _postgres_tls(
    writer: asyncio.StreamWriter, server_name: str | None, step: float
) -> Detection:
    """PostgreSQL said 'S': the handshake follows on the same connection."""
    try:
        tls = await _start_tls(writer, server_name, step)
    except (OSError, TimeoutError, ssl.SSLError, ProbeError) as exc:
        reason = str(exc) or type(exc).__name__
        return Detection("postgres", detail=f"PostgreSQL, accepts TLS (handshake failed: {reason})")
    return Detection("postgres", tls=tls, detail=f"PostgreSQL, accepts TLS ({tls.version})")


async def _tls_probe(open_target: Opener, server_name: str | None, step: float) -> Answer:
    """Step 3: a TLS handshake, then HEAD / inside it to tell https from another TLS service."""
    reader, writer = await _open(open_target, step)
    try:
        try:
            tls = await _start_tls(writer, server_name, step)
        except (OSError, TimeoutError, ssl.SSLError, ProbeError):
            return NOTHING
        try:
            writer.write(head_request(server_name or "localhost"))
            await asyncio.wait_for(writer.drain(), step)
        except (OSError, TimeoutError, ssl.SSLError):
            pass  # the handshake alone already says TLS
        answer = await _read(
            reader, lambda data, eof: parse_head(data, eof, protocol="https"), step
        )
        if answer.detection is not None:
            found = answer.detection
            return Answer(Detection("https", found.version, tls, detail=found.detail))
        return Answer(Detection("tcp", tls=tls, detail=f"TLS service ({tls.version}), not HTTP"))
    finally:
        await _close(writer, step)
