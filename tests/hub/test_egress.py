"""The SSRF guard: names are resolved, every address must be public, the checked one is used."""

from __future__ import annotations

import asyncio
import socket

import pytest

from portway.hub import egress


def resolver(*addresses: str) -> egress.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(addresses)

    return resolve


async def test_public_name_is_pinned_to_the_checked_address() -> None:
    found = await egress.check(
        "https://hooks.example.com:8443/in?x=1",
        allow_private=False,
        resolve=resolver("93.184.215.14", "93.184.215.14"),
    )
    assert found.url == "https://93.184.215.14:8443/in?x=1"
    assert found.host_header == "hooks.example.com:8443"
    assert found.sni_hostname == "hooks.example.com"
    v6 = await egress.check(
        "http://hooks.example.com/in", allow_private=False, resolve=resolver("2606:4700::1111")
    )
    assert v6.url == "http://[2606:4700::1111]/in"
    assert v6.host_header == "hooks.example.com" and v6.sni_hostname is None


async def test_public_literal_is_used_as_is() -> None:
    found = await egress.check("http://8.8.8.8/x", allow_private=False, resolve=resolver())
    assert found == egress.Destination("http://8.8.8.8/x")


@pytest.mark.parametrize(
    ("url", "addresses", "needle"),
    [
        ("http://127.0.0.1:8080/", (), "127.0.0.1 is a loopback address"),
        ("http://[::1]/", (), "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data", (), "link-local"),
        ("http://intranet.example/", ("10.0.0.7",), "resolves to 10.0.0.7, a private address"),
        ("http://mixed.example/", ("93.184.215.14", "192.168.0.1"), "192.168.0.1"),
        ("http://v6.example/", ("fd00::5",), "unique-local"),
    ],
)
async def test_private_destinations_are_refused(
    url: str, addresses: tuple[str, ...], needle: str
) -> None:
    with pytest.raises(egress.ForbiddenAddress, match=needle) as refused:
        await egress.check(url, allow_private=False, resolve=resolver(*addresses))
    assert "--webhooks-allow-private" in str(refused.value)


async def test_localhost_is_refused_by_the_system_resolver() -> None:
    with pytest.raises(egress.ForbiddenAddress, match=r"localhost resolves to .*loopback"):
        await egress.check("http://localhost:9/", allow_private=False)


async def test_unresolvable_names() -> None:
    with pytest.raises(egress.Unresolvable, match=r"cannot resolve nowhere\.invalid"):
        await egress.check("http://nowhere.invalid/", allow_private=False, resolve=resolver())

    async def slow(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    with pytest.raises(egress.Unresolvable, match="timed out"):
        await egress.check("http://slow.example/", allow_private=False, resolve=slow, timeout=0.01)


async def test_allow_private_skips_the_guard() -> None:
    found = await egress.check("http://127.0.0.1:9/hook", allow_private=True, resolve=resolver())
    assert found == egress.Destination("http://127.0.0.1:9/hook")
