"""Path identifiers: a malformed id is simply an id that does not exist (404, never 422)."""

from __future__ import annotations

import uuid

from portway.errors import NotFound


def parse_id(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind.replace('_', ' ')} not found", code=f"{kind}_not_found") from None
