"""Tunnel certificates: what an exposing agent serves to the end-to-end peers of each tunnel.

`DesiredStates` asks for the certificates of the tunnels a session serves when it builds that
session's desired state; each is issued once per session and tunnel, for the key of the
session's own certificate request (`docs/protocol.md` §18), and issued again once it is half
way through its life. The data plane pushes every session's desired state now and then
(`RENEW_CHECK_SECONDS`), so a renewed certificate reaches its agent long before the old expires.
"""

from __future__ import annotations

import datetime

from portway.domain.clock import Clock
from portway.hub.dataplane.sessions import AgentSession
from portway.net import identity
from portway.wire.control_messages import TunnelCertificate

RENEW_AFTER = identity.CERTIFICATE_VALIDITY / 2
RENEW_CHECK_SECONDS = 600.0


class TunnelCertificates:
    def __init__(self, ca: identity.HubIdentityCa, clock: Clock) -> None:
        self._ca = ca
        self._clock = clock
        # session id -> tunnel id -> (the certificate, when it was issued)
        self._issued: dict[str, dict[str, tuple[TunnelCertificate, datetime.datetime]]] = {}

    def of(self, session: AgentSession, tunnels: tuple[str, ...]) -> tuple[TunnelCertificate, ...]:
        """One certificate per tunnel id in `tunnels`, in that order; none for a session that
        sent no certificate request (it does not do end-to-end reach)."""
        if session.request is None:
            return ()
        now = self._clock.now()
        held = self._issued.get(session.id, {})
        kept: dict[str, tuple[TunnelCertificate, datetime.datetime]] = {}
        for tunnel in tunnels:
            found = held.get(tunnel)
            if found is None or now - found[1] >= RENEW_AFTER:
                pem = self._ca.issue(
                    session.request,
                    uris=(
                        identity.agent_uri(session.agent_id),
                        identity.workspace_uri(session.workspace_id),
                    ),
                    hostnames=(identity.tunnel_hostname(tunnel),),
                    now=now,
                )
                found = (TunnelCertificate(tunnel, pem), now)
            kept[tunnel] = found
        self._issued[session.id] = kept  # a tunnel no longer served loses its certificate
        return tuple(cert for cert, _ in kept.values())

    def forget(self, session: AgentSession) -> None:
        self._issued.pop(session.id, None)
