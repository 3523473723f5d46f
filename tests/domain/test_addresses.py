from __future__ import annotations

import pytest

from portway.domain.addresses import (
    AddressError,
    HostPort,
    client_url,
    parse_host_port,
    parse_port,
    parse_port_range,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:5432", HostPort("localhost", 5432)),
        ("10.0.0.5:1", HostPort("10.0.0.5", 1)),
        ("[::1]:65535", HostPort("::1", 65535)),
        ("db.internal.example:6379", HostPort("db.internal.example", 6379)),
    ],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    "text",
    ["localhost", "localhost:0", "localhost:65536", "::1:5432", "[::1]5432", "[zz]:1", ":5432",
     "a b:80", "host:port", "x" * 254 + ":80"],
)  # fmt: skip
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(AddressError):
        parse_host_port(text)


def test_port_zero_only_for_listeners() -> None:
    assert parse_host_port("127.0.0.1:0", allow_zero_port=True).port == 0
    assert parse_port("0", allow_zero=True) == 0
    with pytest.raises(AddressError):
        parse_port(0)


def test_host_length_edge() -> None:
    assert parse_host_port("h" * 253 + ":80").host == "h" * 253


def test_str_brackets_ipv6() -> None:
    assert str(HostPort("::1", 80)) == "[::1]:80"
    assert str(HostPort("example.com", 80)) == "example.com:80"


def test_port_range() -> None:
    assert parse_port_range("20000-20999") == (20000, 20999)
    assert parse_port_range("5-5") == (5, 5)
    for bad in ("20999-20000", "20000", "a-b", "0-10", "1-70000"):
        with pytest.raises(AddressError):
            parse_port_range(bad)


def test_client_url_shows_loopback_for_wildcards() -> None:
    assert client_url("http", "0.0.0.0", 7080) == "http://127.0.0.1:7080"
    assert client_url("http", "::", 7080) == "http://[::1]:7080"
    assert client_url("http", "10.1.2.3", 80) == "http://10.1.2.3:80"
