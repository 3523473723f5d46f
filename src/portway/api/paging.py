"""Turning a bad cursor into a 422 that names the `cursor` parameter."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from portway.api.problems import Unprocessable
from portway.store.pages import BadCursor, Page

T = TypeVar("T")


async def read_page(query: Awaitable[Page[T]]) -> Page[T]:
    try:
        return await query
    except BadCursor as exc:
        raise Unprocessable(
            f"cursor: {exc}", details=[{"field": "cursor", "message": str(exc), "type": "cursor"}]
        ) from None
