"""Share path normalisation and the sliding-window rate limiter, second by second."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.domain import paths
from portway.domain.ratelimit import SlidingWindow


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("/api", True),
        ("/api/", True),
        ("/api/x?q=1", True),
        ("/api/x/../y", True),
        ("/api-admin", False),
        ("/api/../admin", False),
        ("/api/%2e%2e/admin", False),
        ("/api/%2E%2E/admin", False),
        ("/api/.%2e/admin", False),
        ("/api%2f..%2fadmin", False),
        ("/api/..%5cadmin", False),
        ("/api\\..\\admin", False),
        ("/api/%zz", False),
        ("/%61pi/x", True),
        ("/./api/x", True),
        ("api", False),
        ("/", False),
    ],
)
def test_allowed_paths(raw: str, ok: bool) -> None:
    assert paths.allowed(raw, ["/api"]) is ok


def test_root_prefix_and_no_policy() -> None:
    assert paths.allowed("/anything/../x", ["/"])
    assert paths.allowed("/whatever", None)
    assert paths.allowed("/health", ["/api/", "/health"])


@given(st.lists(st.sampled_from(["a", "api", "..", ".", "%2e%2e", "%2e", "admin", ""]), max_size=8))
def test_normalised_paths_have_no_dot_segments(segments: list[str]) -> None:
    result = paths.normalise("/" + "/".join(segments))
    assert result is not None and result.startswith("/")
    assert not any(part in (".", "..") for part in result.split("/"))
    assert paths.normalise(result) == result


def test_exactly_n_pass_then_429_and_the_window_slides() -> None:
    limiter = SlidingWindow()
    decisions = [limiter.hit("s", 3, t) for t in (0.0, 10.0, 20.0)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [2, 1, 0]
    refused = limiter.hit("s", 3, 59.9)
    assert not refused.allowed and refused.retry_after == 1 and refused.remaining == 0
    assert limiter.hit("s", 3, 60.0).allowed  # the hit at 0 left the window
    assert not limiter.hit("s", 3, 69.9).allowed
    assert limiter.hit("s", 3, 70.0).allowed
    assert limiter.hit("other", 3, 70.0).remaining == 2


@given(st.lists(st.floats(min_value=0, max_value=300), max_size=60), st.integers(1, 5))
def test_no_window_ever_holds_more_than_the_limit(times: list[float], limit: int) -> None:
    limiter = SlidingWindow()
    passed = [t for t in sorted(times) if limiter.hit("k", limit, t).allowed]
    for start in passed:
        assert sum(1 for t in passed if start <= t < start + 60) <= limit
