"""Fixtures for the asyncio layer: every test runs on asyncio's own loop and on uvloop (which
the hub uses when installed), and gets a harness that closes everything it opened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from portway.net import tls

from .e2e_pair import Hub, Pki, bridging_hub, make_pki
from .harness import Harness, Tls

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:  # a dependency everywhere but Windows
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop
except ImportError:
    pass


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return LOOPS


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tls.HubCertificates:
    return tls.ensure_hub_certificates(Path(tmp_path_factory.mktemp("hub-tls")))


@pytest.fixture
def tls_pair(certs: tls.HubCertificates) -> Tls:
    """Fresh contexts per test (a client context caches sessions)."""
    return Tls(
        server=tls.server_context(certs.cert, certs.key),
        client=tls.client_context(certs.ca_pem(), certs.fingerprint, check_hostname=True),
    )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        await h.aclose()


@pytest.fixture(scope="module")
def pki() -> Pki:
    """The end-to-end tests' certificates (`e2e_pair.make_pki`), made once per module."""
    return make_pki()


@pytest.fixture
async def hub(harness: Harness) -> Hub:
    """A hub bridging a reaching agent's streams to an exposing agent (`e2e_pair`)."""
    return await bridging_hub(harness)
