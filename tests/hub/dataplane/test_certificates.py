"""Tunnel certificates: one per session and served tunnel, kept, renewed half way, forgotten."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import cast

from cryptography import x509

from portway.domain.clock import FrozenClock
from portway.hub.dataplane.certificates import RENEW_AFTER, TunnelCertificates
from portway.hub.dataplane.sessions import AgentSession
from portway.net import identity
from portway.net.framed import FramedConnection

T1, T2 = str(uuid.uuid4()), str(uuid.uuid4())


def _session(key: bytes | None) -> AgentSession:
    session = AgentSession(
        agent_id=uuid.uuid4(), workspace_id=uuid.uuid4(), agent_name="box",
        control=cast(FramedConnection, None), features=frozenset(),
    )  # fmt: skip
    if key is not None:
        session.request = identity.parse_request(identity.request_for(key))
    return session


def test_each_served_tunnel_gets_a_certificate_naming_it_for_the_agent_key(tmp_path: Path) -> None:
    ca = identity.HubIdentityCa.load(tmp_path)
    key = identity.new_key()
    session = _session(key)
    issued = TunnelCertificates(ca, FrozenClock()).of(session, (T1, T2))
    assert [c.tunnel for c in issued] == [T1, T2]
    for given in issued:
        identity.certified(key, given.certificate, ca.certificate_pem)  # our key, the hub's CA
        cert = x509.load_pem_x509_certificate(given.certificate.encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [identity.tunnel_hostname(given.tunnel)]
        assert set(san.get_values_for_type(x509.UniformResourceIdentifier)) == {
            identity.agent_uri(session.agent_id),
            identity.workspace_uri(session.workspace_id),
        }


def test_certificates_are_kept_until_half_their_life_then_renewed(tmp_path: Path) -> None:
    clock = FrozenClock(datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC))
    certificates = TunnelCertificates(identity.HubIdentityCa.load(tmp_path), clock)
    session = _session(identity.new_key())
    first = certificates.of(session, (T1,))
    clock.advance(seconds=RENEW_AFTER.total_seconds() - 1)
    assert certificates.of(session, (T1,)) == first  # equal desired states: no push
    clock.advance(seconds=1)
    renewed = certificates.of(session, (T1,))
    assert renewed[0].tunnel == T1 and renewed != first


def test_a_tunnel_no_longer_served_and_a_forgotten_session_lose_theirs(tmp_path: Path) -> None:
    certificates = TunnelCertificates(identity.HubIdentityCa.load(tmp_path), FrozenClock())
    session = _session(identity.new_key())
    both = certificates.of(session, (T1, T2))
    assert certificates.of(session, (T2,)) == both[1:]
    assert certificates.of(session, (T1, T2))[0] != both[0]  # T1 came back: a new one
    certificates.forget(session)
    assert certificates.of(session, (T2,)) != both[1:]


def test_a_session_without_a_request_gets_none(tmp_path: Path) -> None:
    certificates = TunnelCertificates(identity.HubIdentityCa.load(tmp_path), FrozenClock())
    assert certificates.of(_session(None), (T1,)) == ()
