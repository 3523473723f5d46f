"""How the agent port presents itself: TLS material, and what `GET /v1/hub` tells clients."""

from __future__ import annotations

import ssl

from portway.domain.addresses import display_host
from portway.hub.core.config import HubConfig
from portway.net import tls
from portway.services import AgentEndpoint

_PEM_START = "-----BEGIN CERTIFICATE-----"


def agent_endpoint(config: HubConfig) -> tuple[ssl.SSLContext | None, AgentEndpoint]:
    """The agent port's server context and description, per `--agent-tls*`.

    Called once per hub start: the hub's own CA is created on first start and reused after,
    so the pin agents hold stays valid. With an operator's certificate, agents pin the last
    certificate of its chain (the issuing CA when the chain includes it).
    """
    host = display_host(config.agent_listen.host)
    if config.agent_tls == "off":
        return None, AgentEndpoint(host, config.agent_listen.port, False, None, None)
    if config.agent_tls_cert and config.agent_tls_key:
        cert, key = config.agent_tls_cert, config.agent_tls_key
        ca_pem = _PEM_START + cert.read_text().split(_PEM_START)[-1]
        fingerprint = tls.fingerprint(ca_pem)
    else:
        made = tls.ensure_hub_certificates(config.data_dir / "tls")
        cert, key, fingerprint = made.cert, made.key, made.fingerprint
        ca_pem = made.ca_cert.read_text()
    endpoint = AgentEndpoint(host, config.agent_listen.port, True, fingerprint, ca_pem)
    return tls.server_context(cert, key), endpoint
