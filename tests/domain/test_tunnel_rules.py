from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.domain import tunnel_rules as rules
from portway.domain.addresses import AddressError


@pytest.mark.parametrize(
    ("port", "protocol"),
    [(5432, "tcp"), (80, "http"), (3000, "http"), (5000, "http"), (8000, "http"), (8080, "http"),
     (443, "https"), (8443, "https"), (81, "tcp"), (1, "tcp"), (65535, "tcp"), (53, "tcp")],
)  # fmt: skip
def test_auto_resolves_from_the_port(port: int, protocol: str) -> None:
    assert rules.resolve_protocol("auto", port) == protocol


@pytest.mark.parametrize("requested", ["tcp", "udp", "http", "https"])
def test_explicit_protocol_wins(requested: rules.RequestedProtocol) -> None:
    assert rules.resolve_protocol(requested, 5432) == requested
    assert rules.resolve_protocol(requested, 443) == requested


@pytest.mark.parametrize(
    ("protocol", "port", "detected", "kind"),
    [
        ("tcp", 5432, None, "postgres"),
        ("tcp", 3306, None, "mysql"),
        ("tcp", 6379, None, "redis"),
        ("tcp", 27017, None, "mongodb"),
        ("tcp", 22, None, "tcp"),
        ("udp", 5432, None, "udp"),
        ("http", 5432, None, "http"),
        ("https", 80, None, "https"),
        ("tcp", 15432, "postgres", "postgres"),
        ("tcp", 5432, "redis", "redis"),
        ("tcp", 5432, "nonsense", "postgres"),
        ("sctp", 5432, None, "tcp"),
    ],
)
def test_service_kind(protocol: str, port: int, detected: str | None, kind: str) -> None:
    assert rules.service_kind(protocol, port, detected) == kind


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("postgres", "postgresql://localhost:15432/postgres"),
        ("mysql", "mysql://localhost:15432"),
        ("redis", "redis://localhost:15432"),
        ("mongodb", "mongodb://localhost:15432"),
        ("http", "http://localhost:15432"),
        ("https", "https://localhost:15432"),
        ("udp", "udp://localhost:15432"),
        ("tcp", "tcp://localhost:15432"),
    ],
)
def test_connection_strings_use_the_local_port(kind: rules.ServiceKind, expected: str) -> None:
    assert rules.connection_string(kind, 15432) == expected


@pytest.mark.parametrize(
    ("kind", "metadata", "expected"),
    [
        ("postgres", {"username": "ro", "database": "app"}, "postgresql://ro@localhost:5432/app"),
        ("postgres", {"username": "ro"}, "postgresql://ro@localhost:5432/postgres"),
        ("mysql", {"username": "root", "database": "shop"}, "mysql://root@localhost:5432/shop"),
        ("redis", {"database": 2}, "redis://localhost:5432/2"),
        ("mongodb", {"database": "logs"}, "mongodb://localhost:5432/logs"),
        (
            "postgres",
            {"username": "a@b/c", "database": "x/y"},
            "postgresql://a%40b%2Fc@localhost:5432/x%2Fy",
        ),
        ("postgres", {"username": 5, "database": True}, "postgresql://localhost:5432/postgres"),
        ("http", {"username": "ro", "database": "app"}, "http://localhost:5432"),
    ],
)
def test_connection_strings_honour_metadata(
    kind: rules.ServiceKind, metadata: dict[str, object], expected: str
) -> None:
    assert rules.connection_string(kind, 5432, metadata) == expected


def test_generated_names() -> None:
    names = {rules.generated_name("postgres") for _ in range(50)}
    assert all(re.fullmatch(r"postgres-[a-z0-9]{4}", n) for n in names)
    assert len(names) > 40


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", fullmatch=True))
def test_public_slugs_are_dns_labels(name: str) -> None:
    slug = rules.public_slug(name)
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", slug), slug
    assert len(slug) <= rules.SLUG_MAX_LENGTH
    assert "--" not in slug


@pytest.mark.parametrize(
    ("name", "base"),
    [("Prod_DB.v2", "prod-db-v2"), ("---", "tunnel"), ("a" * 100, "a" * 56), ("x-" * 40, None)],
)
def test_public_slug_keeps_the_name_readable(name: str, base: str | None) -> None:
    slug = rules.public_slug(name)
    stem, suffix = slug.rsplit("-", 1)
    assert len(suffix) == rules.SLUG_SUFFIX_LENGTH
    if base is not None:
        assert stem == base
    assert not stem.endswith("-")


def test_public_url() -> None:
    common = {"slug": "web-abc123", "public_domain": "tunnels.example", "edge_port": 7081}
    assert (
        rules.public_url(protocol="http", public=True, hub_port=None, **common)  # type: ignore[arg-type]
        == "http://web-abc123.tunnels.example:7081"
    )
    assert rules.public_url(protocol="https", public=True, hub_port=None, **common) == (  # type: ignore[arg-type]
        "http://web-abc123.tunnels.example:7081"
    )
    assert rules.public_url(protocol="tcp", public=True, hub_port=20001, **common) == (  # type: ignore[arg-type]
        "tcp://tunnels.example:20001"
    )
    assert rules.public_url(protocol="udp", public=True, hub_port=20002, **common) == (  # type: ignore[arg-type]
        "udp://tunnels.example:20002"
    )
    assert rules.public_url(protocol="http", public=False, hub_port=None, **common) is None  # type: ignore[arg-type]
    assert rules.public_url(protocol="tcp", public=True, hub_port=None, **common) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("port", "protocol", "public", "message"),
    [
        (20000, "tcp", True, None),
        (20999, "udp", True, None),
        (19999, "tcp", True, "range 20000-20999"),
        (21000, "tcp", True, "range 20000-20999"),
        (20000, "tcp", False, "public"),
        (20000, "http", True, "TCP and UDP"),
    ],
)
def test_check_hub_port(port: int, protocol: str, public: bool, message: str | None) -> None:
    if message is None:
        rules.check_hub_port(port, (20000, 20999), protocol, public)
        return
    with pytest.raises(rules.HubPortError, match=message):
        rules.check_hub_port(port, (20000, 20999), protocol, public)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        ("never", None),
        (None, None),
        (1, timedelta(seconds=1)),
        (31536000, timedelta(days=365)),
    ],
)
def test_ttl(value: str | int | None, expected: timedelta | None) -> None:
    assert rules.ttl(value) == expected


def test_ttl_default() -> None:
    assert rules.ttl(None, default="24h") == timedelta(hours=24)
    assert rules.ttl("1h", default="24h") == timedelta(hours=1)


@pytest.mark.parametrize("value", [0, -1, 31536001, "2h", "1H", "", True, "3600"])
def test_ttl_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="expiresIn"):
        rules.ttl(value)  # type: ignore[arg-type]


def test_expires_at() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert rules.expires_at(now, None) is None
    assert rules.expires_at(now, timedelta(hours=1)) == datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_metadata_size_is_compact_utf8() -> None:
    exact = {"k": "x" * (rules.METADATA_MAX_BYTES - 8)}
    assert rules.check_metadata(exact) is exact
    with pytest.raises(ValueError, match="16385 bytes"):
        rules.check_metadata({"k": "x" * (rules.METADATA_MAX_BYTES - 7)})
    with pytest.raises(ValueError, match="bytes serialized"):
        rules.check_metadata({"k": "é" * (rules.METADATA_MAX_BYTES // 2)})


@pytest.mark.parametrize("value", [{"x": float("nan")}, {"x": float("inf")}, {"x": "\ud800"}])
def test_metadata_must_be_plain_json(value: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="plain JSON"):
        rules.check_metadata(value)


@pytest.mark.parametrize("host", ["localhost", "10.0.0.5", "::1", "h" * 253, "bücher.example"])
def test_target_hosts(host: str) -> None:
    assert rules.check_target_host(host) == host


@pytest.mark.parametrize("host", ["", "h" * 254, "a b", "[::1]", "a\x00b", "a\x7fb", "1::2::3"])
def test_target_hosts_refused(host: str) -> None:
    with pytest.raises(AddressError):
        rules.check_target_host(host)
