from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portway.domain import share_rules as rules

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_methods_are_upper_cased_and_deduplicated_in_order() -> None:
    assert rules.normalise_methods(["post", "GET", "Post", " options "]) == [
        "POST",
        "GET",
        "OPTIONS",
    ]
    assert rules.normalise_methods(rules.HTTP_METHODS) == list(rules.HTTP_METHODS)


@pytest.mark.parametrize("methods", [[], ["TRACE"], ["CONNECT"], ["GET", "get it"], [""]])
def test_methods_refused(methods: list[str]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the culprit
        rules.normalise_methods(methods)


@pytest.mark.parametrize(
    "path", ["/", "/api", "/api/", "/a/b.c/d", "/" + "x" * 1023, "/café", "/a/..b", "/%2e%2e"]
)
def test_path_prefixes(path: str) -> None:
    assert rules.check_path_prefix(path) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("api", "start with '/'"),
        ("", "start with '/'"),
        ("/" + "x" * 1024, "longer than 1024"),
        ("/a b", "spaces"),
        ("/a\tb", "control"),
        ("/a?x=1", "'?'"),
        ("/a#top", "'#'"),
        ("/a\\b", "'\\\\'"),
        ("/a/../b", "'..'"),
        ("/./a", "'.'"),
        ("/a/..", "'..'"),
    ],
)
def test_path_prefixes_refused(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.check_path_prefix(path)


def test_paths_deduplicated_and_bounded() -> None:
    assert rules.normalise_paths(["/a", "/b", "/a"]) == ["/a", "/b"]
    assert len(rules.normalise_paths([f"/{i}" for i in range(50)])) == 50
    # Duplicates do not count against the limit.
    assert rules.normalise_paths(["/a"] * 60) == ["/a"]
    with pytest.raises(ValueError, match="at most 50"):
        rules.normalise_paths([f"/{i}" for i in range(51)])
    with pytest.raises(ValueError, match="at least one"):
        rules.normalise_paths([])


@pytest.mark.parametrize(
    ("revoked", "expires", "status"),
    [
        (None, None, "active"),
        (None, NOW + timedelta(seconds=1), "active"),
        (None, NOW, "expired"),
        (None, NOW - timedelta(days=1), "expired"),
        (NOW, None, "revoked"),
        (NOW - timedelta(days=2), NOW - timedelta(days=1), "revoked"),
    ],
)
def test_share_status(revoked: datetime | None, expires: datetime | None, status: str) -> None:
    assert rules.share_status(revoked, expires, NOW) == status


def test_share_urls() -> None:
    common = {"public_domain": "tunnels.example", "edge_port": 7081, "api_url": "http://hub:7080/"}
    assert rules.share_url("pws_t", "http", **common) == "http://tunnels.example:7081/s/pws_t/"  # type: ignore[arg-type]
    assert rules.share_url("pws_t", "https", **common) == "http://tunnels.example:7081/s/pws_t/"  # type: ignore[arg-type]
    assert rules.share_url("pws_t", "tcp", **common) == "http://hub:7080/v1/join/pws_t"  # type: ignore[arg-type]
    assert rules.share_url("pws_t", "udp", **common) == "http://hub:7080/v1/join/pws_t"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "ok"), [("a\nb\r\n\tc", True), ("a\x00b", False), ("\x1b[31m", False)]
)
def test_description_text(text: str, ok: bool) -> None:
    if ok:
        assert rules.check_description(text) == text
    else:
        with pytest.raises(ValueError, match="control characters"):
            rules.check_description(text)
