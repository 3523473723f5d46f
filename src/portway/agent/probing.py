"""The exposing agent's look at a tunnel's target: protocol probes and step-by-step diagnoses.

`AgentRuntime` calls `detect_target` when it starts serving a tunnel or a failing target comes
back (the result rides on the next `status`), and `diagnose` when the hub assigns a channel
with `mode: diagnose` (the result is the channel's one `diagnosis` frame). Every dial goes
through the agent's `Dialer`, so probes obey the same egress policy as visitors.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from portway.agent.dialer import PROBE_TIMEOUT, Dialer, DialError
from portway.domain import detection
from portway.probe import Detection, Opener, detect, hint_from
from portway.wire.assignment_messages import Assign, Diagnosis, DiagnosticStep
from portway.wire.control_messages import Detected, Protocol, TunnelSpec

DETECT_TIMEOUT = 3.0  # per probe attempt; `detect` bounds the whole run by a few of these
CERT_WARN_DAYS = 14
STREAM_LIMIT = 64 * 1024

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def opener(dialer: Dialer, host: str, port: int) -> Opener:
    """A fresh stream to the target for each probe attempt, dialled under the agent's policy
    (raises `DialError`)."""

    async def open_target() -> Streams:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        transport = await dialer.connect(
            host, port, lambda: asyncio.StreamReaderProtocol(reader), timeout=PROBE_TIMEOUT
        )
        writer = asyncio.StreamWriter(transport, transport.get_protocol(), reader, loop)
        return reader, writer

    return open_target


def as_wire(found: Detection) -> Detected:
    tls = found.tls
    return Detected(
        protocol=found.protocol, version=found.version,
        tls_subject=tls.subject if tls else None, tls_issuer=tls.issuer if tls else None,
        tls_not_after=tls.not_after if tls else None, tls_version=tls.version if tls else None,
        auth_required=found.auth_required, detail=found.detail,
    )  # fmt: skip


async def detect_target(
    dialer: Dialer, spec: TunnelSpec, *, connected: Streams | None = None
) -> Detected | None:
    """What answers behind `spec`, or None when nothing could be probed (the liveness check
    reports that failure on its own).

    `connected`, a connection to the target already open (a diagnosis's `tcp` step), is the
    first one `detect` asks for, its wait for a server-first greeting; each probe after that
    dials afresh, as the runner requires."""
    spare = [connected] if connected is not None else []
    dial = opener(dialer, spec.host, spec.port)

    async def open_target() -> Streams:
        return spare.pop() if spare else await dial()

    try:
        found = await detect(
            open_target, hint=hint_from(spec.protocol.value, spec.port),
            server_name=spec.host, timeout=DETECT_TIMEOUT,
        )  # fmt: skip
    except (DialError, OSError, TimeoutError):
        return None
    finally:
        for _reader, writer in spare:  # handed in, never asked for: close it here
            writer.close()
    return as_wire(found)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def diagnose(dialer: Dialer, assign: Assign) -> Diagnosis:
    """Check `assign`'s target as the agent sees it: DNS, TCP, TLS where used, handshake.

    A failed step marks the ones after it `skip`; nothing here waits longer than the dial and
    probe timeouts, so a silent target gives a `fail`, never a hang.
    """
    begun = time.perf_counter()
    steps: list[DiagnosticStep] = []

    def finish(detected: Detected | None = None) -> Diagnosis:
        done = {s.name for s in steps}
        steps.extend(
            DiagnosticStep(name, "skip", None, "not run: an earlier step failed")
            for name in ("dns", "tcp", "tls", "handshake")
            if name not in done
        )
        return Diagnosis(assign.conn, tuple(steps), _ms(begun), detected)

    host, port = assign.host, assign.port
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            addresses = await dialer.addresses(host, port)
    except (DialError, TimeoutError) as exc:
        detail = exc.message if isinstance(exc, DialError) else f"{host} did not resolve in time"
        steps.append(DiagnosticStep("dns", "fail", _ms(started), detail))
        return finish()
    steps.append(DiagnosticStep("dns", "ok", _ms(started), f"{host} → {', '.join(addresses)}"))
    if assign.protocol is Protocol.UDP:
        why = "UDP has no handshake: only a real datagram exchange shows the target answers"
        steps.extend(
            DiagnosticStep(name, "skip", None, why) for name in ("tcp", "tls", "handshake")
        )
        return finish()

    started = time.perf_counter()
    try:
        connected = await opener(dialer, host, port)()
    except DialError as exc:
        steps.append(DiagnosticStep("tcp", "fail", _ms(started), exc.message))
        return finish()
    steps.append(DiagnosticStep("tcp", "ok", _ms(started), f"connected to {host}:{port}"))

    started = time.perf_counter()
    spec = TunnelSpec(assign.tunnel, assign.tunnel, assign.protocol, host, port)
    found = await detect_target(dialer, spec, connected=connected)
    handshake_ms = _ms(started)
    if found is None:
        steps.append(DiagnosticStep("tls", "skip", None, "no handshake took place"))
        steps.append(
            DiagnosticStep("handshake", "fail", handshake_ms, "the target closed every probe")
        )
        return finish()
    steps.append(_tls_step(assign.protocol.value, found))
    steps.append(_handshake_step(assign.protocol.value, found, handshake_ms))
    return finish(found)


def _tls_step(protocol: str, found: Detected) -> DiagnosticStep:
    if found.tls_not_after is None:
        if protocol == "https":
            return DiagnosticStep("tls", "fail", None, "the target did not speak TLS")
        return DiagnosticStep("tls", "skip", None, f"{detection.label(found.protocol)} without TLS")
    detail = (
        f"{found.tls_version or 'TLS'}, subject {found.tls_subject}, issuer {found.tls_issuer}, "
        f"valid until {found.tls_not_after}"
    )
    try:
        expires = datetime.fromisoformat(found.tls_not_after.replace("Z", "+00:00"))
    except ValueError:
        return DiagnosticStep("tls", "ok", None, detail)
    now = datetime.now(UTC)
    if expires <= now:
        return DiagnosticStep("tls", "fail", None, f"the certificate has expired: {detail}")
    if expires - now < timedelta(days=CERT_WARN_DAYS):
        return DiagnosticStep("tls", "warn", None, f"the certificate expires soon: {detail}")
    return DiagnosticStep("tls", "ok", None, detail)


def _handshake_step(protocol: str, found: Detected, ms: float) -> DiagnosticStep:
    what = found.detail or detection.label(found.protocol)
    conflict = detection.contradiction(protocol, found.protocol)
    if conflict is not None:
        return DiagnosticStep("handshake", "fail", ms, f"{what}; {conflict}")
    if found.auth_required:
        return DiagnosticStep("handshake", "ok", ms, f"{what} (asks for a password)")
    return DiagnosticStep("handshake", "ok", ms, what)
