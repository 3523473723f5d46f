"""Hypothesis helpers shared by the codec tests: cut a byte string at arbitrary points."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st


@st.composite
def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` split into consecutive pieces at random positions (possibly empty pieces)."""
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
